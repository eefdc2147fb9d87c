"""Many clips: each clip is one task (on Ray, or in this process) that runs the whole pipeline on its worker.

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


def _edit_one(cfg_dict: dict, src: str, dst: str, edits: list, offline: bool | None, allow_no_face: bool,
              preview: str | None = None) -> dict:
    from pipelines.edit import EditPipeline
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config
    from vidinv.errors import VidinvError

    cfg = load_config(overrides=cfg_dict)
    try:
        res = EditPipeline(cfg, executor=LocalExecutor(), quiet=True, offline=offline)(src, dst, edits, allow_no_face,
                                                                                      preview=preview)
        row = {"input": src, "status": "ok", "output": res.output, "frames": res.n_frames,
               "faces": res.faces_edited, "report": res.report}
        return row if preview is None or res.copied_through else dict(row, preview=preview)
    except VidinvError as exc:
        return {"input": src, "status": "failed", "error": str(exc)}
    except Exception as exc:  # one bad clip never stops the others
        return {"input": src, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def map_clips(fn: Callable, args_list: list[tuple], cfg: PipelineConfig, quiet: bool = False, gpu: bool = True) -> list[Any]:
    """``fn(*args)`` for each clip through the configured executor (Ray tasks, at most ``num_workers`` at
    once, or this process), with a progress bar; a clip whose task fails becomes a ``failed`` row."""
    from tqdm.auto import tqdm

    from pipelines.executors import make_executor

    executor = make_executor(cfg.execution)
    results: list[Any] = [None] * len(args_list)
    with tqdm(total=len(args_list), desc="clips", unit="clip", disable=quiet) as bar:
        for i, res in executor.map_tasks(fn, args_list, gpu=gpu):
            if isinstance(res, BaseException):
                error = f"{type(res).__name__}: {res}"
                res = {"input": str(args_list[i][1]), "status": "failed", "error": error}
            results[i] = res
            bar.update(1)
    return results


def edit_many(inputs: list[Path], out_dir: Path, edits: list, cfg: PipelineConfig, quiet: bool = False,
              offline: bool | None = None, allow_no_face: bool = False, root: Path | None = None,
              preview_dir: Path | None = None) -> list[dict]:
    """Edit every clip into ``out_dir``, mirroring each clip's folder relative to ``root`` (default: the
    inputs' common folder; see :func:`pipelines.outputs.mirrored_outputs`); returns one summary row per clip.
    ``preview_dir``: each clip's preview too, mirrored the same way under it. An existing output (or preview)
    without ``output.overwrite`` is an error before any work."""
    from pipelines.outputs import existing_output, mirrored_outputs

    outs = mirrored_outputs(inputs, out_dir, edits, root)
    previews = mirrored_outputs(inputs, preview_dir, edits, root) if preview_dir is not None else [None] * len(outs)
    for o, pv in zip(outs, previews):
        existing_output(o, cfg.output.overwrite)
        if pv is not None:
            existing_output(pv, cfg.output.overwrite, "preview")
    for o in sorted({o.parent for o in [*outs, *previews] if o is not None}):
        o.mkdir(parents=True, exist_ok=True)

    # weights are resolved once here, so that a missing file fails before any work
    from pipelines.components import resolve_model_spec

    spec = resolve_model_spec(cfg.models, offline=offline)
    cfg = replace(cfg, models=replace(cfg.models, generator=spec["generator"], encoder=spec["encoder"]))
    cfg_dict = asdict(cfg)
    args = [(cfg_dict, str(p), str(o), edits, offline, allow_no_face, None if pv is None else str(pv))
            for p, o, pv in zip(inputs, outs, previews)]
    return map_clips(_edit_one, args, cfg, quiet=quiet)
