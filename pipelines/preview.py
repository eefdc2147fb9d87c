"""The side-by-side preview of ``vidinv edit --preview PATH.mp4``.

One frame per frame of the clip, at the clip's timestamps (and with its audio): for each edited face (target
track; one row each, at most ``MAX_ROWS``, in target order) three aligned face crops side by side,
``original | inversion | edit``, each ``PREVIEW_SIZE`` px square: the source crop the encoder saw, the rendered
inversion and the rendered edit (the inversion again without edits). Where a face is absent its row is black.
The crops are the evaluation pass's (``ReconstructStage``), run on the same executor as the edit.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from pipelines.cache import ChunkCache, Progress, cached_map, chunk_ranges

log = logging.getLogger(__name__)

PREVIEW_SIZE = 256
MAX_ROWS = 4  # faces shown; a clip with more edited faces previews the first ones (the log says so)
PANELS = ("source", "inversion", "edit")


def preview_info(info, size: int = PREVIEW_SIZE, rows: int = 1):
    """The clip's ``VideoInfo`` with the preview's frame size (``rows`` faces of 3 panels of ``size``), upright."""
    return dataclasses.replace(info, width=3 * size, height=rows * size, display_width=3 * size,
                               display_height=rows * size, rotation=0)


def compose(res: dict, start: int, stop: int, size: int = PREVIEW_SIZE, rows: int = 1) -> np.ndarray:
    """uint8 ``[stop-start, rows*size, 3*size, 3]`` from a ``ReconstructStage`` result of ``[start, stop)``;
    a crop of target ``k`` goes to row ``k``."""
    out = np.zeros((stop - start, rows * size, 3 * size, 3), np.uint8)
    targets = res.get("targets") or [0] * len(res["frames"])
    for i, (t, k) in enumerate(zip(res["frames"], targets)):
        for p, key in enumerate(PANELS):
            crop = res[key] if res[key] is not None else res["inversion"]
            out[t - start, k * size : (k + 1) * size, p * size : (p + 1) * size] = crop[i]
    return out


def write_preview(pipe, src: Path, path, info, targets: list, per_target: dict, spec: dict, cache: ChunkCache,
                  facts: dict, size: int = PREVIEW_SIZE, tuning: dict | None = None) -> int:
    """Render and write the preview of the first ``MAX_ROWS`` targets; returns the number of frames written.
    ``tuning``: the render stage's tuned weights (:func:`pipelines.tuning.render_tuning`), rendered with them."""
    from pipelines.stages import ReconstructStage
    from vidinv.io.writer import VideoWriter

    rows = max(1, min(len(targets), MAX_ROWS))
    if len(targets) > MAX_ROWS:
        log.info("preview: the first %d of %d edited faces", MAX_ROWS, len(targets))
    shown = {k: v for k, v in per_target.items() if k < rows}

    def make_item(a: int, b: int) -> dict:
        return dict(path=str(src), start=a, stop=b, jobs=pipe.frame_jobs(targets[:rows], shown, a, b))

    pts = np.asarray(facts["pts"], np.int64)
    bar = Progress(info.n_frames, "preview", pipe.quiet)
    n = 0
    enc = pipe.cfg.output
    ranges = chunk_ranges(info.n_frames, pipe.cfg.execution.chunk_size)
    kw = dict(spec=spec, out_size=size) if tuning is None else dict(spec=spec, out_size=size, tuning=tuning)
    results = cached_map(pipe.executor, ReconstructStage, kw, ranges, make_item,
                         cache, "preview", gpu=True, progress=bar)
    pinfo = preview_info(info, size, rows)
    with VideoWriter(path, pinfo, crf=enc.crf, preset=enc.preset, audio_from=src) as writer:
        for (a, b), res in zip(ranges, results):
            frames = compose(res, a, b, size, rows)
            writer.write(frames, pts[a:b])
            n += len(frames)
    bar.close()
    return n
