"""CPU cost per frame of the pipeline's non-model stages, for the throughput model (docs/THROUGHPUT.md).

A shared clip is scaled (letterboxed) to each size and re-encoded (H.264, as a user's clip would be); then,
per frame, with the pipeline's own code and default settings:

- decode         ``VideoReader.read_range`` (what every pass does for its chunk)
- detect         ``AnalyzeStage`` minus the decode (detector with the config's defaults + colour histogram)
- flow refine    ``RefineStage`` minus the decode (--flow-refine)
- align          one ``align_faces`` warp to the 1024 crop
- mask           ``RenderStage.masks`` (landmark hull at 256, feathered, resized to 1024)
- paste          ``RenderStage.paste`` (unalign + mask + blend into the frame, the configured blend)
- encode         ``VideoWriter.write`` (libx264, the configured crf/preset)

    .venv/bin/python benchmarks/bench_stages.py [--sizes 590x590,1280x720,1920x1080] [--frames 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDINV_SHARED", REPO.parent / "shared"))


def make_clip(src: Path, dst: Path, size: tuple[int, int], n: int) -> None:
    """The first n frames of src, scaled to fit ``size`` (w, h) and centred on black, as H.264 (crf 18)."""
    import cv2
    import numpy as np

    from vidinv.io.video import VideoReader, VideoWriter, probe

    info = probe(src)
    chunk = VideoReader(src).read_range(0, n)
    w, h = size
    out = np.zeros((len(chunk.frames), h, w, 3), np.uint8)
    s = min(w / chunk.frames.shape[2], h / chunk.frames.shape[1])
    fw, fh = int(chunk.frames.shape[2] * s) // 2 * 2, int(chunk.frames.shape[1] * s) // 2 * 2
    x0, y0 = (w - fw) // 2, (h - fh) // 2
    for i, f in enumerate(chunk.frames):
        out[i, y0:y0 + fh, x0:x0 + fw] = cv2.resize(f, (fw, fh), interpolation=cv2.INTER_LINEAR)
    from dataclasses import replace

    info = replace(info, width=w, height=h, display_width=w, display_height=h, rotation=0)
    with VideoWriter(dst, info, crf=18, audio_from=None) as wr:
        wr.write(out, chunk.pts)


def per_frame(fn, n: int, repeats: int = 2) -> float:
    """Best of ``repeats`` of ``fn()`` (which handles n frames), in ms per frame."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / n


def bench_size(clip: Path, n: int, cfg) -> dict[str, float]:
    import numpy as np
    import torch

    from pipelines.stages import AnalyzeStage, RefineStage, RenderStage
    from vidinv.faces.align import align_faces, ffhq_quad, quad_to_matrix, transform_points
    from vidinv.io.video import VideoReader, VideoWriter, probe

    item = dict(path=str(clip), start=0, stop=n)
    row = {"decode": per_frame(lambda: VideoReader(clip).read_range(0, n), n)}
    an = AnalyzeStage(cfg.faces.detector, cfg.faces.detect_max_side, cfg.faces.detect_upsample)
    res = None

    def analyze():
        nonlocal res
        res = an(item)

    row["detect"] = per_frame(analyze, n) - row["decode"]
    faces = [f for f in res["faces"] if f]
    if not faces:
        raise SystemExit(f"{clip}: no face detected; cannot time the face stages")
    lm = np.stack([f[0]["landmarks"] for f in faces])[:n]
    lm = np.concatenate([lm, np.repeat(lm[-1:], n - len(lm), 0)])
    valid = np.ones(n, bool)
    ref = RefineStage()
    row["flow refine"] = per_frame(lambda: ref(dict(item, landmarks=[lm], valid=[valid])), n) - row["decode"]
    frames = VideoReader(clip).read_range(0, n).frames
    M = np.stack([quad_to_matrix(ffhq_quad(x), 1024) for x in lm]).astype(np.float32)
    x = torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1
    Mt = torch.from_numpy(M[:1])
    row["align"] = per_frame(lambda: align_faces(x, Mt, 1024), 1, repeats=3)
    rs = object.__new__(RenderStage)  # the render stage's mask and paste code, without its models
    rs.blend, rs.parser, rs.batch = {"method": cfg.blend.method, "dilate": cfg.blend.dilate,
                                     "feather": cfg.blend.feather}, None, 1
    lm_crop = transform_points(lm[:1], M[:1])  # M maps frame pixels to crop pixels
    face = (align_faces(x, Mt, 1024).clamp(-1, 1) + 1) / 2
    row["mask"] = per_frame(lambda: rs.masks(face, lm_crop), 1, repeats=3)
    mask = rs.masks(face, lm_crop)
    job = [dict(frame=0, M=M[0])]
    row["paste"] = per_frame(lambda: rs.paste(frames[:1].copy(), 0, job, face, mask), 1, repeats=3)
    info = probe(clip)
    with tempfile.TemporaryDirectory() as td:
        def encode():
            with VideoWriter(Path(td) / "o.mp4", info, crf=cfg.output.crf, preset=cfg.output.preset,
                             audio_from=None) as wr:
                wr.write(frames, np.arange(n))
        row["encode"] = per_frame(encode, n)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(SHARED / "media/videos/retalking_face3_aoc.mp4"))
    ap.add_argument("--sizes", default="590x590,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    import torch

    from vidinv.allocator import allocator_state, tune_allocator
    from vidinv.config import load_config

    tune_allocator()  # as the vidinv command does
    cfg = load_config(overrides={"faces": {"detector": "dlib"}})
    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, detector dlib "
          f"(max_side {cfg.faces.detect_max_side}), blend {cfg.blend.method}, allocator {allocator_state()}; "
          "load average %.2f %.2f %.2f" % os.getloadavg())
    rows = {}
    with tempfile.TemporaryDirectory() as td:
        for s in args.sizes.split(","):
            w, h = map(int, s.split("x"))
            clip = Path(td) / f"{s}.mp4"
            make_clip(Path(args.clip), clip, (w, h), args.frames)
            rows[s] = bench_size(clip, args.frames, cfg)
    names = list(next(iter(rows.values())))
    print(f"{'ms per frame':<14}" + "".join(f"{s:>12}" for s in rows))
    for k in names:
        print(f"{k:<14}" + "".join(f"{rows[s][k]:12.1f}" for s in rows))
    print("load average %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
