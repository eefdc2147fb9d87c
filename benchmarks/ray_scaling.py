"""Frames/s and clips/s of the edit pipeline on Ray with 1 and 2 workers (this machine: 2 CPU cores).

Tiny random models by default, so that the figures show the pipeline and Ray overheads and the
scaling of the parallel passes; ``--full`` uses full-size random-weight models (slow on a CPU).

    python benchmarks/ray_scaling.py --frames 48 --clips 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()

    import ray

    from make_demo_clip import write_clip
    from pipelines.batch import edit_many
    from pipelines.edit import EditPipeline
    from pipelines.executors import RayExecutor
    from vidinv.config import load_config

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        clips = []
        for i in range(a.clips):
            p = tmp / f"clip{i}.mp4"
            write_clip(str(p), seconds=a.frames / 25, fps=25, size=a.size)
            clips.append(p)
        base = load_config(overrides={"models": {"generator": "tiny", "encoder": "tiny", "batch_size": 8},
                                      "faces": {"detector": "dlib"},
                                      "execution": {"executor": "ray", "chunk_size": 8}})
        print(f"one clip of {a.frames} frames at {a.size}x{a.size}, tiny models, Ray on {int(ray.cluster_resources()['CPU'])} CPUs")
        for n in (1, 2):
            ex = RayExecutor(num_workers=n, cpus_per_worker=1)
            pipe = EditPipeline(base, executor=ex, quiet=True)
            pipe(clips[0], tmp / f"warm{n}.mp4", [])  # actors built, models loaded
            t0 = time.perf_counter()
            res = pipe(clips[0], tmp / f"out{n}.mp4", [])
            dt = time.perf_counter() - t0
            print(f"  {n} worker(s): {res.n_frames / dt:6.2f} frames/s  "
                  + "  ".join(f"{k}={v:.2f}s" for k, v in res.timings.items()))
            ex.shutdown()
        print(f"{a.clips} clips, one clip per Ray task")
        for n in (1, 2):
            cfg = replace(base, execution=replace(base.execution, cpus_per_worker=2 / n))
            t0 = time.perf_counter()
            rows = edit_many(clips, tmp / f"many{n}", [], cfg, quiet=True)
            dt = time.perf_counter() - t0
            ok = sum(r["status"] == "ok" for r in rows)
            print(f"  {n} concurrent task(s): {ok / dt:6.3f} clips/s ({ok}/{len(rows)} ok, {dt:.1f} s)")
    ray.shutdown()


if __name__ == "__main__":
    main()
