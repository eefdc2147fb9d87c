"""The side-by-side preview of ``vidinv edit --preview PATH.mp4``.

One frame per frame of the clip, at the clip's timestamps (and with its audio): three aligned face crops of
the edited face (the first target track) side by side, ``original | inversion | edit``, each
``PREVIEW_SIZE`` px square: the source crop the encoder saw, the rendered inversion and the rendered edit
(the inversion again without edits). Frames where that face is absent are black. The crops are the
evaluation pass's (``ReconstructStage``), run on the same executor as the edit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipelines.cache import ChunkCache, Progress, cached_map, chunk_ranges

PREVIEW_SIZE = 256
PANELS = ("source", "inversion", "edit")


def preview_info(info, size: int = PREVIEW_SIZE):
    """The clip's ``VideoInfo`` with the preview's frame size (3 panels of ``size``), upright."""
    return dataclasses.replace(info, width=3 * size, height=size, display_width=3 * size, display_height=size,
                               rotation=0)


def compose(res: dict, start: int, stop: int, size: int = PREVIEW_SIZE) -> np.ndarray:
    """uint8 ``[stop-start, size, 3*size, 3]`` from a ``ReconstructStage`` result of ``[start, stop)``."""
    out = np.zeros((stop - start, size, 3 * size, 3), np.uint8)
    for i, t in enumerate(res["frames"]):
        for p, key in enumerate(PANELS):
            crop = res[key] if res[key] is not None else res["inversion"]
            out[t - start, :, p * size : (p + 1) * size] = crop[i]
    return out


def write_preview(pipe, src: Path, path, info, targets: list, per_target: dict, spec: dict, cache: ChunkCache,
                  facts: dict, size: int = PREVIEW_SIZE, tuning: dict | None = None) -> int:
    """Render and write the preview of ``targets[0]``; returns the number of frames written. ``tuning``: the
    render stage's tuned weights (:func:`pipelines.tuning.render_tuning`), rendered with them."""
    from pipelines.stages import ReconstructStage
    from vidinv.io.writer import VideoWriter

    first = {0: per_target[0]} if 0 in per_target else {}

    def make_item(a: int, b: int) -> dict:
        return dict(path=str(src), start=a, stop=b, jobs=pipe.frame_jobs(targets[:1], first, a, b))

    pts = np.asarray(facts["pts"], np.int64)
    bar = Progress(info.n_frames, "preview", pipe.quiet)
    n = 0
    enc = pipe.cfg.output
    ranges = chunk_ranges(info.n_frames, pipe.cfg.execution.chunk_size)
    kw = dict(spec=spec, out_size=size) if tuning is None else dict(spec=spec, out_size=size, tuning=tuning)
    results = cached_map(pipe.executor, ReconstructStage, kw, ranges, make_item,
                         cache, "preview", gpu=True, progress=bar)
    pinfo = preview_info(info, size)
    with VideoWriter(path, pinfo, crf=enc.crf, preset=enc.preset, audio_from=src) as writer:
        for (a, b), res in zip(ranges, results):
            frames = compose(res, a, b, size)
            writer.write(frames, pts[a:b])
            n += len(frames)
    bar.close()
    return n
