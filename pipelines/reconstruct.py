"""Evaluation crops of a clip: the aligned source faces, their inversion and (optionally) their edit.

Built from the public steps of :class:`~pipelines.edit.EditPipeline` (probe, analyse, plan, invert,
edit), with the evaluation pass (``ReconstructStage``) in place of the render + paste-back + encode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.cache import ChunkCache, CodeStore, Progress, cached_map, chunk_ranges
from vidinv.errors import VidinvError


def reconstruct_clip(pipe, src: str | os.PathLike, edits: list[tuple[str, float]] | None = None,
                     metric_size: int = 256) -> dict:
    """Source crops, inversion and edit of the clip's main face track, for evaluation.

    Returns ``{'frames': [T'] frame indices, 'source'/'inversion'/'edit': uint8 [T', s, s, 3] (edit None
    without edits), 'n_frames', 'track_id'}``; raises ``VidinvError`` when no face is found. With tuning
    configured (``tune.method: pti`` and/or ``tune.stitch``) also ``'tuned': {'inversion', 'edit'}`` from the
    tuned generator (stitched with ``tune.stitch``, then with ``'border'`` and ``'content'``: bool [T', s, s],
    the stitching regions), beside the untuned crops of the same frames.
    """
    src, _, info = pipe.probe(src)
    spec = pipe.model_spec()
    plan = pipe.resolve_edits(list(edits or []), spec)
    cache = ChunkCache(None, "")
    analysis = pipe.analyze(src, info, cache)
    targets, _, cuts = pipe.plan(src, info, analysis, spec, cache)
    targets = targets[:1]
    if not targets or not targets[0].valid.any():
        raise VidinvError(f"no face found in {src}")
    store = CodeStore(None)
    try:
        codes = pipe.invert(src, info, targets, spec, cache, store)
        per_target = pipe.edit_codes(targets, codes, plan, cuts, pipe.frame_times(analysis, info), store)
        parts = _crops(pipe, src, info, targets, per_target, spec, cache, metric_size)
        tuned = None
        if pipe.cfg.tune.enabled:
            tuning = pipe.tune(src, targets, per_target, cuts, spec, cache)
            tuned = _crops(pipe, src, info, targets, per_target, spec, cache, metric_size, tuning)
    finally:
        store.close()
    out: dict[str, Any] = {"frames": parts["frames"], "n_frames": info.n_frames,
                           "track_id": targets[0].track_id}
    for k in ("source", "inversion", "edit"):
        out[k] = np.concatenate(parts[k]) if parts[k] else None
    if tuned is not None:
        out["tuned"] = {k: np.concatenate(tuned[k]) if tuned[k] else None
                        for k in ("inversion", "edit", "border", "content")}
    return out


def _crops(pipe, src: Path, info, targets, per_target: dict, spec: dict, cache: ChunkCache,
           metric_size: int, tuning: dict | None = None) -> dict:
    """The evaluation pass over the clip's chunks: lists of per-chunk crops and their frame indices."""
    from pipelines.stages import ReconstructStage

    def make_item(a: int, b: int) -> dict:
        return dict(path=str(src), start=a, stop=b, jobs=pipe.frame_jobs(targets, per_target, a, b))

    parts: dict[str, list] = {k: [] for k in ("frames", "source", "inversion", "edit", "border", "content")}
    bar = Progress(info.n_frames, "reconstruct", pipe.quiet)
    kw = dict(spec=spec, out_size=metric_size) if tuning is None else dict(spec=spec, out_size=metric_size,
                                                                           tuning=tuning)
    for res in cached_map(pipe.executor, ReconstructStage, kw,
                          chunk_ranges(info.n_frames, pipe.cfg.execution.chunk_size), make_item, cache,
                          "reconstruct", gpu=True, progress=bar):
        if not res["frames"]:
            continue
        parts["frames"] += res["frames"]
        for k in ("source", "inversion", "edit", "border", "content"):
            if res.get(k) is not None:
                parts[k].append(res[k])
    bar.close()
    return parts
