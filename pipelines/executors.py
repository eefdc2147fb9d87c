"""Executors: run a Ray-agnostic stage over a stream of work items, in-process or on Ray.

A *stage* is a plain class: ``__init__(**kwargs)`` loads its models once and
``__call__(item) -> result`` is pure. ``LocalExecutor`` builds one instance in this
process; ``RayExecutor`` starts one pool of Ray actors per run (one model copy per worker, one GPU
each when GPUs exist) and maps the items of every pass over it: each actor hosts every stage of the
run, built on first use and kept until the run ends, so no model is loaded twice in a worker.
``make_executor`` picks one (``auto``: in-process unless Ray can help, see :func:`choose_executor`).

Why Ray core actors (``ray.util.ActorPool``) rather than Ray Data ``map_batches``: our
work items are chunks of one clip whose results must reach a single writer in order,
with a bounded number in flight, and the clip-wide passes (tracking, smoothing) sit
between parallel passes. ``ActorPool.map`` gives ordered results, submits a new item
only when an actor is free (backpressure: memory is bounded by workers x chunk size,
not by clip length), and actors created with ``max_restarts``/``max_task_retries`` are
restarted by Ray and their task retried when a worker dies. Ray Data would add a
dataset materialisation per pass and its own block sizing for no gain here.

This module is the only place (with ``pipelines/``) that imports ``ray``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)
_END = object()


class LocalExecutor:
    """In-process execution: debugging, tiny clips, tests."""

    name = "local"

    def __init__(self) -> None:
        self._stages: dict[tuple, Any] = {}
        self._pending: dict[tuple, Future] = {}

    @property
    def num_workers(self) -> int:
        return 1

    def prefetch(self, stage_cls: type, stage_kwargs: dict) -> None:
        """Build a stage in a background thread (its models load while earlier passes run); ``map`` waits for
        it, and an error in the build is raised there, as if the stage had been built then."""
        key = stage_key(stage_cls, stage_kwargs)
        if key in self._stages or key in self._pending:
            return
        fut: Future = Future()

        def build() -> None:
            try:
                fut.set_result(stage_cls(**stage_kwargs))
            except BaseException as exc:  # re-raised by map() in the caller's thread
                fut.set_exception(exc)

        self._pending[key] = fut
        threading.Thread(target=build, name=f"prefetch-{stage_cls.__name__}", daemon=True).start()

    def _stage(self, stage_cls: type, stage_kwargs: dict) -> Any:
        key = stage_key(stage_cls, stage_kwargs)
        if key not in self._stages:
            fut = self._pending.pop(key, None)
            self._stages[key] = fut.result() if fut is not None else stage_cls(**stage_kwargs)
        return self._stages[key]

    def map(self, stage_cls: type, stage_kwargs: dict, items: Iterable[Any], gpu: bool = False) -> Iterator[Any]:
        stage = self._stage(stage_cls, stage_kwargs)
        for item in items:
            yield stage(item)

    def map_tasks(self, fn: Callable, args_list: Sequence[tuple],
                  gpu: bool = False) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*args_list[i]))`` for each task, in order; a task that raises yields its exception."""
        for i, args in enumerate(args_list):
            try:
                result = fn(*args)
            except Exception as exc:  # one failed task never stops the others
                result = exc
            yield i, result

    def shutdown(self) -> None:
        self._stages.clear()
        self._pending.clear()


def _ray():
    import ray  # imported lazily: `import vidinv` never imports ray

    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://host:port``) or ``$RAY_ADDRESS``; with neither,
    start a private local instance (``address='local'``: never one recorded on the machine by another run)."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(address=address or "local", ignore_reinit_error=True,
                                  log_to_driver=not quiet)
    if not address:
        kwargs["include_dashboard"] = False
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
    log.info("ray: %s", f"joining {address}" if address else "starting a private local instance")
    ray.init(**kwargs)


def original_error(exc: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, out of Ray's ``RayTaskError`` wrapper (whose message is the
    remote traceback): a ``VidinvError`` in a worker reaches the user as the same one line as in-process."""
    from ray.exceptions import RayTaskError

    cause = getattr(exc, "cause", None)
    return cause if isinstance(exc, RayTaskError) and isinstance(cause, BaseException) else exc


def _fetch(get: Callable[[], Any]) -> Any:
    """``get()`` (a Ray result fetch), re-raising a remote error as the original exception."""
    try:
        return get()
    except Exception as exc:
        orig = original_error(exc)
        if orig is exc:
            raise
        raise orig from None


def stage_key(stage_cls: type, stage_kwargs: dict) -> tuple:
    """What identifies one stage instance: its class and its settings."""
    return (stage_cls.__module__, stage_cls.__qualname__, repr(sorted(stage_kwargs.items(), key=lambda kv: kv[0])))


class _StageHost:
    """The remote worker: hosts every stage of a run, each built on first use and kept until the run ends.

    One pool of these serves all the passes, so a worker loads its models once per run (the invert and
    render stages also share one model copy per process through :func:`pipelines.components.build_models`).
    A restarted worker (after its process died) rebuilds the stage it is asked for on its next item.
    """

    def __init__(self) -> None:
        from vidinv.allocator import tune_allocator

        tune_allocator()  # this worker process renders too: same allocator policy as the command line
        self.stages: dict[tuple, Any] = {}
        self.built = 0

    def run(self, stage_cls: type, stage_kwargs: dict, item: Any) -> Any:
        key = stage_key(stage_cls, stage_kwargs)
        stage = self.stages.get(key)
        if stage is None:
            stage = self.stages[key] = stage_cls(**stage_kwargs)
            self.built += 1
        return stage(item)

    def n_built(self) -> int:
        """How many stage instances this worker process has built (tests: one per stage per run)."""
        return self.built

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        return _ray().get_runtime_context().get_node_id()


def _tuned_call(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` in a Ray worker, with the allocator policy of the command line set first."""
    from vidinv.allocator import tune_allocator

    tune_allocator()
    return fn(*args)


class RayExecutor:
    """One pool of Ray actors for the whole run: each hosts every stage (one model copy per worker); ordered
    results; a worker that dies is restarted and its task retried."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1,
        max_restarts: int = 3,
        max_task_retries: int = 3,
        max_in_flight: int | None = None,
    ) -> None:
        init_ray(address)
        ray = _ray()
        res = ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if gpus >= 1 else 0.0
        if num_workers is None:
            if gpus_per_worker > 0:
                num_workers = max(1, int(gpus // gpus_per_worker))
            else:
                num_workers = max(1, int(res.get("CPU", 1) // max(cpus_per_worker, 1e-9)))
        self._num_workers = int(num_workers)
        self.gpus_per_worker = float(gpus_per_worker)
        self.cpus_per_worker = float(cpus_per_worker)
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.max_in_flight = max_in_flight
        self._pool: list | None = None
        log.info("ray: %d worker(s), %.2g GPU and %.2g CPU each", self._num_workers, gpus_per_worker, cpus_per_worker)

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def actors(self, stage_cls: type | None = None, stage_kwargs: dict | None = None, gpu: bool = False) -> list:
        """The run's pool of stage hosts, started on first use and kept until :meth:`shutdown` (every pass
        and every stage share it; when the cluster has GPUs each worker holds ``gpus_per_worker``)."""
        if self._pool is None:
            remote = _ray().remote(_StageHost).options(
                num_cpus=self.cpus_per_worker,
                num_gpus=self.gpus_per_worker,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_task_retries,
            )
            self._pool = [remote.remote() for _ in range(self._num_workers)]
        return self._pool

    def prefetch(self, stage_cls: type, stage_kwargs: dict) -> None:
        """Start the pool now (its workers come up while the driver works); each worker builds its stages on
        first use (a build queued ahead of the analysis items would only delay them: an actor runs one call
        at a time)."""
        self.actors()

    def map(self, stage_cls: type, stage_kwargs: dict, items: Iterable[Any], gpu: bool = False) -> Iterator[Any]:
        """Ordered results; at most ``max_in_flight`` items are taken from ``items`` ahead of the consumer.

        ``ActorPool`` hands an item to an actor as soon as one is free; the window bounds how many items
        (and results waiting for the in-order consumer) exist at once, so memory does not grow with the
        number of items.
        """
        from ray.util import ActorPool

        actors = self.actors(stage_cls, stage_kwargs, gpu)
        pool = ActorPool(actors)
        window = self.max_in_flight or 2 * len(actors)
        it = iter(items)
        submit = lambda actor, item: actor.run.remote(stage_cls, stage_kwargs, item)  # noqa: E731
        for item in itertools.islice(it, window):
            pool.submit(submit, item)
        while pool.has_next():
            result = _fetch(pool.get_next)
            nxt = next(it, _END)
            if nxt is not _END:
                pool.submit(submit, nxt)
            yield result

    def map_tasks(self, fn: Callable, args_list: Sequence[tuple],
                  gpu: bool = False) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*args_list[i]))`` as tasks finish (any order): independent Ray tasks, at most
        ``num_workers`` running at once, each retried by Ray if its worker dies; a task that fails yields
        its (original) exception."""
        ray = _ray()
        remote = ray.remote(_tuned_call).options(num_cpus=self.cpus_per_worker,
                                        num_gpus=self.gpus_per_worker if gpu else 0, max_retries=2)
        todo = iter(enumerate(args_list))
        pending: dict[Any, int] = {}
        for i, args in itertools.islice(todo, self._num_workers):
            pending[remote.remote(fn, *args)] = i
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                result = _fetch(lambda: ray.get(ref))
            except Exception as exc:  # one failed task never stops the others
                result = exc
            yield i, result
            for j, args in itertools.islice(todo, 1):
                pending[remote.remote(fn, *args)] = j

    def shutdown(self) -> None:
        """End the run's workers (and free their models, CPUs and GPUs)."""
        ray = _ray()
        for a in self._pool or []:
            try:
                ray.kill(a)
            except Exception:  # pragma: no cover - already dead
                pass
        self._pool = None


def local_gpu_count() -> int:
    """GPUs this machine's torch sees (0 without CUDA)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def choose_executor(cfg, n_frames: int | None = None) -> tuple[str, str]:
    """``(name, why)``: the executor an ``ExecutionConfig`` asks for.

    ``auto`` runs in this process unless Ray can help: it joins a cluster (``address`` or ``$RAY_ADDRESS``),
    or this machine has several GPUs and the clip has at least ``ray_min_frames`` frames. Otherwise Ray's
    start-up (~20 s on a small machine) and the object store would cost more than they bring: one process
    already uses every core through torch, and one GPU is one worker.
    """
    from vidinv.errors import VidinvError

    if cfg.executor in ("local", "ray"):
        return cfg.executor, f"--executor {cfg.executor}"
    if cfg.executor != "auto":
        raise VidinvError(f"unknown executor {cfg.executor!r}; choose auto, ray or local")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        return "ray", f"auto: joining the cluster at {address}"
    gpus = local_gpu_count()
    if gpus <= 1:
        return "local", f"auto: no cluster and {gpus} GPU on this machine"
    if n_frames is not None and n_frames < cfg.ray_min_frames:
        return "local", f"auto: a short clip ({n_frames} < {cfg.ray_min_frames} frames)"
    return "ray", f"auto: {gpus} GPUs on this machine"


def make_executor(cfg, n_frames: int | None = None) -> LocalExecutor | RayExecutor:
    """From an ``ExecutionConfig`` (``n_frames``: the clip's length, when known, for ``auto``)."""
    name, why = choose_executor(cfg, n_frames)
    log.info("executor: %s (%s)", name, why)
    if name == "local":
        return LocalExecutor()
    return RayExecutor(
        address=cfg.address,
        num_workers=cfg.num_workers,
        gpus_per_worker=cfg.gpus_per_worker,
        cpus_per_worker=cfg.cpus_per_worker,
        max_in_flight=cfg.max_in_flight,
    )
