"""Frames/s and peak memory of every inverter through the same edit pipeline, on the same clip.

Each inverter is loaded from its official checkpoint layout: the narrow golden checkpoints in
``../shared/golden`` (random weights, the same narrow sizes for all; 64 px generators), so the
figures compare the methods' pipeline cost at equal small sizes on a CPU. Each method runs in its own
process so that its peak RSS is its own.

    python benchmarks/bench_inverters.py --frames 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import trim_clip  # noqa: E402

SHARED = Path(os.environ.get("VIDINV_SHARED", REPO.parent / "shared"))
G1, G2 = SHARED / "golden" / "narrow", SHARED / "golden" / "inverters"

CHECKPOINTS = {  # method: (encoder / method checkpoint, generator)
    "fs": (G1 / "fs_encoder.pt", G1 / "generator_psp.pt"),
    "e4e": (G2 / "e4e" / "e4e_ckpt.pt", None),
    "hfgi": (G2 / "hfgi" / "hfgi_ckpt.pt", None),
    "hyperinverter": (G2 / "hyperinverter" / "hyper_inverter.pt", G2 / "hyperinverter" / "stylegan2_ada_ffhq.pt"),
    "padinv": (G2 / "padinv" / "padinv_checkpoint.pt", None),
}


def child(method: str, clip: str) -> None:
    from pipelines.edit import EditPipeline
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config

    enc, gen = CHECKPOINTS[method]
    cfg = load_config(overrides={"models": {"inverter": method, "encoder": str(enc), "generator": str(gen) if gen else "zoo",
                                            "batch_size": 8},
                                 "faces": {"detector": "dlib"}, "execution": {"executor": "local", "chunk_size": 16}})
    with tempfile.TemporaryDirectory() as td:
        pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)
        t0 = time.perf_counter()
        res = pipe(clip, Path(td) / "out.mp4", [])
        dt = time.perf_counter() - t0
    print(json.dumps({"method": method, "frames": res.n_frames, "s": dt, "timings": res.timings,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(SHARED / "media/videos/retalking_face3_aoc.mp4"))
    ap.add_argument("--frames", type=int, default=16)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        short = Path(td) / "clip.mp4"
        trim_clip(Path(a.clip), short, a.frames)
        print(f"{'inverter':<14} {'frames/s':>9} {'invert s':>9} {'render s':>9} {'peak RSS MB':>12}")
        for method in CHECKPOINTS:
            out = subprocess.run([sys.executable, __file__, "_child", method, str(short)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{method:<14} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{method:<14} {r['frames'] / r['s']:9.2f} {r['timings']['invert_s']:9.2f} "
                  f"{r['timings']['render_write_s']:9.2f} {r['peak_rss_mb']:12.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
