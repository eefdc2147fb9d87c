"""Many clips: each clip is one Ray task that runs the whole pipeline in-process on its worker.

Clips are the natural unit of parallelism across a cluster (no clip-wide gather crosses
nodes); a clip that fails is reported in the summary and does not stop the others, and
Ray retries a clip whose worker died.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from vidinv.config import PipelineConfig

log = logging.getLogger(__name__)


def _edit_one(cfg_dict: dict, src: str, dst: str, edits: list, offline: bool | None, allow_no_face: bool) -> dict:
    from pipelines.edit import EditPipeline
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config
    from vidinv.errors import VidinvError

    cfg = load_config(overrides=cfg_dict)
    try:
        res = EditPipeline(cfg, executor=LocalExecutor(), quiet=True, offline=offline)(src, dst, edits, allow_no_face)
        return {"input": src, "status": "ok", "output": res.output, "frames": res.n_frames, "faces": res.faces_edited}
    except VidinvError as exc:
        return {"input": src, "status": "failed", "error": str(exc)}
    except Exception as exc:  # one bad clip never stops the others
        return {"input": src, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def map_clips(fn: Callable, args_list: list[tuple], cfg: PipelineConfig, quiet: bool = False, gpu: bool = True) -> list[Any]:
    """Run ``fn(*args)`` for each clip, on Ray tasks (``executor: ray``) or in this process, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(args_list), desc="clips", unit="clip", disable=quiet)
    results: list[Any] = [None] * len(args_list)
    if cfg.execution.executor == "ray":
        import ray

        from pipelines.executors import init_ray

        init_ray(cfg.execution.address)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        gpw = cfg.execution.gpus_per_worker
        if gpw is None:
            gpw = 1.0 if (gpu and gpus >= 1) else 0.0
        remote = ray.remote(fn).options(num_cpus=cfg.execution.cpus_per_worker, num_gpus=gpw, max_retries=2)
        pending = {remote.remote(*a): i for i, a in enumerate(args_list)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:
                    results[i] = {"input": str(args_list[i][1]), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                bar.update(1)
    else:
        for i, a in enumerate(args_list):
            results[i] = fn(*a)
            bar.update(1)
    bar.close()
    return results


def edit_many(inputs: list[Path], out_dir: Path, edits: list, cfg: PipelineConfig, quiet: bool = False,
              offline: bool | None = None, allow_no_face: bool = False) -> list[dict]:
    """Edit every clip into ``out_dir`` (same names); returns one summary row per clip."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from pipelines.edit import _edit_tag

    # weights are resolved once here, so that a missing file fails before any work
    from pipelines.components import resolve_model_spec

    spec = resolve_model_spec(cfg.models, offline=offline)
    cfg = replace(cfg, models=replace(cfg.models, generator=spec["generator"], encoder=spec["encoder"]))
    cfg_dict = asdict(cfg)
    tag = _edit_tag(edits)
    args = [(cfg_dict, str(p), str(out_dir / f"{p.stem}_{tag}.mp4"), edits, offline, allow_no_face) for p in inputs]
    return map_clips(_edit_one, args, cfg, quiet=quiet)
