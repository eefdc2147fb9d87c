"""Executors: local vs Ray give the same ordered results; a killed worker is restarted and its task retried;
a two-node ``ray.cluster_utils.Cluster`` receives work on both nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pipelines.executors import LocalExecutor, RayExecutor, make_executor
from pipelines.toy import SquareStage
from vidinv.config import ExecutionConfig
from vidinv.errors import VidinvError

REPO = Path(__file__).resolve().parents[1]


def test_local_smoke():
    ex = LocalExecutor()
    out = list(ex.map(SquareStage, {}, range(5)))
    assert [o["y"] for o in out] == [0, 1, 4, 9, 16]
    # the stage is built once and reused
    assert len({o["pid"] for o in out}) == 1


def test_make_executor_exception():
    with pytest.raises(VidinvError, match="unknown executor"):
        make_executor(ExecutionConfig(executor="spark"))


@pytest.mark.ray
def test_ray_ordered_same_as_local(ray_local):
    ex = RayExecutor(num_workers=2, cpus_per_worker=0.5)
    items = list(range(12))
    got = list(ex.map(SquareStage, {"delay": 0.01}, items))
    want = list(LocalExecutor().map(SquareStage, {"delay": 0.0}, items))
    assert [g["y"] for g in got] == [w["y"] for w in want]
    assert [g["x"] for g in got] == items  # ordered
    assert len({g["pid"] for g in got}) == 2  # both actors worked
    ex.shutdown()


@pytest.mark.ray
def test_ray_worker_killed_mid_run_is_retried(ray_local):
    ray = ray_local
    ex = RayExecutor(num_workers=2, cpus_per_worker=0.5, max_restarts=2, max_task_retries=3)
    actors = ex.actors(SquareStage, {"delay": 0.3})
    pids = ray.get([a.pid.remote() for a in actors])
    items = list(range(10))
    results = []

    def consume():
        for r in ex.map(SquareStage, {"delay": 0.3}, items):
            results.append(r)

    th = threading.Thread(target=consume)
    th.start()
    # wait until work is under way, then kill one worker process outright
    while len(results) < 2 and th.is_alive():
        th.join(0.05)
    os.kill(pids[0], signal.SIGKILL)
    th.join(120)
    assert not th.is_alive()
    assert [r["x"] for r in results] == items
    assert [r["y"] for r in results] == [i * i for i in items]
    new_pids = set(ray.get([a.pid.remote() for a in actors]))
    assert pids[0] not in new_pids  # the killed actor was restarted by Ray in a new process
    ex.shutdown()


def test_two_node_cluster_gets_work_on_both_nodes(tmp_path):
    """Runs in a subprocess: a driver can be connected to one Ray instance only."""
    script = tmp_path / "two_nodes.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import ray
        from ray.cluster_utils import Cluster
        from pipelines.executors import RayExecutor
        from pipelines.toy import SquareStage

        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        ex = RayExecutor(num_workers=2, cpus_per_worker=1)
        out = list(ex.map(SquareStage, {{"delay": 0.05}}, range(8)))
        assert [o["y"] for o in out] == [i * i for i in range(8)]
        nodes = {{o["node"] for o in out}}
        print("NODES", len(nodes), len(ray.nodes()))
        ray.shutdown()
        cluster.shutdown()
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("NODES")][-1]
    n_used, n_nodes = map(int, line.split()[1:])
    assert n_nodes == 2
    assert n_used == 2  # one actor per node: work landed on both


@pytest.mark.ray
def test_ray_map_takes_items_lazily(ray_local):
    """Backpressure: no more than the window of items is drawn ahead of the consumer."""
    ex = RayExecutor(num_workers=2, cpus_per_worker=0.5, max_in_flight=3)
    drawn = []

    def items():
        for i in range(20):
            drawn.append(i)
            yield i

    gen = ex.map(SquareStage, {}, items())
    first = next(gen)
    assert first["x"] == 0
    assert len(drawn) <= 4  # the window (3) plus the one submitted after the first result
    rest = list(gen)
    assert [r["x"] for r in rest] == list(range(1, 20))
    ex.shutdown()


@pytest.mark.ray
def test_many_clips_on_ray_failure_is_reported(ray_local, tmp_path):
    """`vidinv edit DIR --out OUTDIR` on Ray: one Ray task per clip; a bad clip is reported, the others finish."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_clips import face_frames, write_clip

    from pipelines.batch import edit_many
    from vidinv.config import load_config

    clips = [write_clip(tmp_path / "a.mp4", face_frames(4)), write_clip(tmp_path / "b.mp4", face_frames(4, seed=1))]
    bad = tmp_path / "c.mp4"
    bad.write_bytes(b"not a video")
    cfg = load_config(overrides={"models": {"generator": "tiny", "encoder": "tiny"}, "faces": {"detector": "dlib"},
                                 "execution": {"executor": "ray", "cpus_per_worker": 0.5}})
    rows = edit_many(clips + [bad], tmp_path / "out", [], cfg, quiet=True)
    status = {Path(r["input"]).name: r["status"] for r in rows}
    assert status == {"a.mp4": "ok", "b.mp4": "ok", "c.mp4": "failed"}
    assert all(Path(r["output"]).is_file() for r in rows if r["status"] == "ok")
    assert "c.mp4" in [Path(r["input"]).name for r in rows if "error" in r][0]


# ----------------------------------------------------------------------------- one executor choice, errors


class _RaisesVidinvError:
    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, item):
        from vidinv.errors import InputError

        raise InputError(f"{self.message} {item}")


def _slow_task(x: int) -> tuple[int, float, float]:
    import time

    t0 = time.time()
    time.sleep(0.3)
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * 2, t0, time.time()


@pytest.fixture
def by_value(ray_local):
    """Ray workers cannot import this test module: its functions and classes travel by value."""
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray_local
    ray_local.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_init_ray_starts_a_private_instance(monkeypatch):
    """No --address and no $RAY_ADDRESS: address='local' (never a cluster recorded on the machine)."""
    import ray

    from pipelines.executors import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init_ray(None, num_cpus=2)
    init_ray("auto")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    init_ray(None)
    assert [c["address"] for c in calls] == ["local", "auto", "ray://head:10001"]
    assert calls[0]["num_cpus"] == 2 and "num_cpus" not in calls[1]


@pytest.mark.ray
def test_ray_stage_error_reaches_caller_as_itself(by_value):
    from vidinv.errors import InputError

    ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)
    with pytest.raises(InputError) as info:
        list(ex.map(_RaisesVidinvError, {"message": "bad item"}, [7]))
    ex.shutdown()
    assert type(info.value) is InputError and str(info.value) == "bad item 7"  # one line, no remote traceback


@pytest.mark.ray
def test_ray_stage_error_is_one_line_in_the_cli(by_value, monkeypatch, capsys):
    import vidinv.commands.faces as faces_cmd
    from vidinv.cli import main

    def run(args):
        ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)
        try:
            return list(ex.map(_RaisesVidinvError, {"message": "no face in"}, ["clip.mp4"]))
        finally:
            ex.shutdown()

    monkeypatch.setattr(faces_cmd, "run", run)
    rc = main(["faces", "clip.mp4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["vidinv: error: no face in clip.mp4"]


def test_local_map_tasks_in_order_failures_as_values():
    out = list(LocalExecutor().map_tasks(_slow_task, [(1,), (-1,), (3,)]))
    assert [i for i, _ in out] == [0, 1, 2] and out[0][1][0] == 2 and out[2][1][0] == 6
    assert isinstance(out[1][1], ValueError)


@pytest.mark.ray
def test_ray_map_tasks_honours_num_workers(by_value):
    ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)
    out = dict(ex.map_tasks(_slow_task, [(1,), (2,), (-3,)]))
    assert out[0][0] == 2 and out[1][0] == 4
    assert isinstance(out[2], ValueError) and str(out[2]) == "negative -3"  # the original, not Ray's wrapper
    spans = sorted((t0, t1) for _, t0, t1 in (out[0], out[1]))
    assert spans[0][1] <= spans[1][0]  # one worker: the tasks never overlapped


# ----------------------------------------------------------------------------- one pool per run, auto choice


@pytest.mark.ray
def test_ray_one_pool_hosts_every_pass(ray_local):
    """Passes share the run's workers: the same processes serve every stage, each built once per worker."""
    from pipelines.toy import BusyStage

    ray = ray_local
    ex = RayExecutor(num_workers=2, cpus_per_worker=0.5)
    first = list(ex.map(SquareStage, {"delay": 0.05}, range(6)))
    pool = ex.actors()
    assert list(ex.map(BusyStage, {"size": 8, "reps": 1}, range(4))) == list(range(4))
    again = list(ex.map(SquareStage, {"delay": 0.05}, range(6)))
    assert ex.actors() is pool  # not thrown away between passes
    assert {o["pid"] for o in first} == {o["pid"] for o in again} == set(ray.get([a.pid.remote() for a in pool]))
    assert [o["y"] for o in again] == [i * i for i in range(6)]
    assert ray.get([a.n_built.remote() for a in pool]) == [2, 2]  # SquareStage + BusyStage, never rebuilt
    ex.shutdown()
    assert ex._pool is None


def _exec_cfg(**kw) -> ExecutionConfig:
    return ExecutionConfig(**kw)


def test_auto_executor_choice(monkeypatch):
    import pipelines.executors as executors
    from pipelines.executors import choose_executor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ExecutionConfig().executor == "auto"
    for gpus in (0, 1):
        monkeypatch.setattr(executors, "local_gpu_count", lambda g=gpus: g)
        assert choose_executor(_exec_cfg(), n_frames=10_000)[0] == "local"
        assert choose_executor(_exec_cfg(executor="ray"))[0] == "ray"  # forced
        assert choose_executor(_exec_cfg(address="auto"))[0] == "ray"  # a cluster to join
    monkeypatch.setattr(executors, "local_gpu_count", lambda: 4)
    assert choose_executor(_exec_cfg(), n_frames=25)[0] == "local"  # a short clip
    assert choose_executor(_exec_cfg(), n_frames=10_000)[0] == "ray"
    assert choose_executor(_exec_cfg(executor="local"), n_frames=10_000)[0] == "local"
    monkeypatch.setattr(executors, "local_gpu_count", lambda: 0)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    name, why = choose_executor(_exec_cfg())
    assert name == "ray" and "ray://head:10001" in why
    assert isinstance(make_executor(_exec_cfg(executor="local")), LocalExecutor)


def test_default_run_is_in_process_reports_executor_and_chunks(tmp_path, monkeypatch, caplog):
    """The default executor on a machine with no GPU runs in-process; the result says so; a rerun logs the
    reused chunks; the detector is built on the models' device."""
    import logging

    import pipelines.executors as executors
    import vidinv.faces.detect as detect

    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_clips import face_frames, write_clip

    from pipelines.edit import EditPipeline
    from vidinv.config import load_config

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(executors, "local_gpu_count", lambda: 1)
    devices = []
    real = detect.get_detector
    monkeypatch.setattr(detect, "get_detector", lambda name, device="cpu", **kw: devices.append(device)
                        or real(name, device=device, **kw))
    clip = write_clip(tmp_path / "a.mp4", face_frames(6))
    cfg = load_config(overrides={"models": {"generator": "tiny", "encoder": "tiny", "device": "cpu"},
                                 "faces": {"detector": "dlib"},
                                 "execution": {"chunk_size": 4, "cache_dir": str(tmp_path / "c"), "keep_cache": True}})
    res = EditPipeline(cfg, quiet=True)(clip, tmp_path / "out.mp4", [])
    assert res.executor == "local" and res.n_frames == 6
    assert devices and set(devices) == {"cpu"}
    with caplog.at_level(logging.INFO):
        res2 = EditPipeline(cfg, quiet=True)(clip, tmp_path / "out2.mp4", [])
    assert res2.chunks["render"] == {"reused": 2, "computed": 0}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chunks:")]
    assert lines and lines[-1].startswith("chunks: 6 reused, 0 computed")


def test_analyze_stage_resolves_auto_device(monkeypatch):
    import vidinv.faces.detect as detect
    from pipelines.stages import AnalyzeStage
    from vidinv.device import pick_device

    seen = []
    monkeypatch.setattr(detect, "get_detector", lambda name, device="cpu", **kw: seen.append(device)
                        or type("D", (), {"name": "fake"})())
    AnalyzeStage("fan", 0, 0, device="auto")
    AnalyzeStage("fan", 0, 0)
    assert seen == [str(pick_device("auto")), "cpu"]


class _SlowBuild:
    """A stage whose construction takes a while (a model load) and records the thread that built it."""

    def __init__(self, delay: float = 0.3, fail: bool = False) -> None:
        import time

        time.sleep(delay)
        if fail:
            raise VidinvError("bad checkpoint")
        self.thread = threading.current_thread().name

    def __call__(self, item):
        return (item, self.thread, id(self))


def test_local_prefetch_builds_in_the_background():
    import time

    ex = LocalExecutor()
    t0 = time.perf_counter()
    ex.prefetch(_SlowBuild, {"delay": 0.3})
    assert time.perf_counter() - t0 < 0.2  # returned at once: the build runs alongside
    out = list(ex.map(_SlowBuild, {"delay": 0.3}, [1, 2]))
    assert [o[0] for o in out] == [1, 2]
    assert out[0][1].startswith("prefetch-") and out[0][2] == out[1][2]  # the prefetched instance, built once
    again = list(ex.map(_SlowBuild, {"delay": 0.3}, [3]))
    assert again[0][2] == out[0][2]
    ex.prefetch(_SlowBuild, {"delay": 0.0, "fail": True})
    with pytest.raises(VidinvError, match="bad checkpoint"):  # the build's error reaches the pass that needs it
        list(ex.map(_SlowBuild, {"delay": 0.0, "fail": True}, [1]))
