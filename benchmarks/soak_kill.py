"""Soak: `vidinv edit` killed (SIGKILL) at random points and run again, N times.

Every final output must be byte-identical to an uninterrupted run, and nothing may be left beside
it (no part file, no cache folder). Prints one line per run and a summary.

    python benchmarks/soak_kill.py --runs 20 [--clip PATH] [--frames 50] [--chunk-size 8] [--executor local]

Tiny random-weight models (no download); the clip defaults to the first --frames frames of a shared
talking-head clip (../shared/media/videos).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))


def edit_cmd(clip: Path, out: Path, executor: str, chunk: int = 8) -> list[str]:
    # a random W+ direction sized for the tiny generator (10 x 64): the zoo's directions fit full-size models
    return [sys.executable, "-m", "vidinv", "edit", str(clip), "--out", str(out), "--attr",
            f"{clip.parent / 'dir.npy'}=1.5", "--generator", "tiny", "--encoder", "tiny",
            "--detector", "dlib",
            "--executor", executor, "--chunk-size", str(chunk), "--quiet"]


def has_overwrite() -> bool:
    """Whether this CLI has ``--overwrite`` (an existing output is an error without it)."""
    res = subprocess.run([sys.executable, "-m", "vidinv", "edit", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    return "--overwrite" in res.stdout


def run(cmd: list[str], kill_after: float | None = None) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        print(err.strip().splitlines()[-1] if err.strip() else "", file=sys.stderr)
    return proc.returncode, time.perf_counter() - t0


def leftovers(folder: Path, out: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != out and p.name not in ("clip.mp4", "dir.npy"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--executor", default="local")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vidinv-soak-"))
    clip = work / "clip.mp4"
    if args.clip:
        clip.symlink_to(args.clip.resolve())
    else:
        from benchmarks_common import trim_clip

        src = REPO.parent / "shared" / "media" / "videos" / "retalking_face3_aoc.mp4"
        if not src.is_file():
            print(f"skip: {src} is absent (the shared clips live in ../shared)")
            return 0
        trim_clip(src, clip, args.frames)
    import numpy as np

    v = np.random.default_rng(1).standard_normal((1, 640)).astype(np.float32)
    np.save(work / "dir.npy", v / np.linalg.norm(v))
    overwrite = has_overwrite()
    ref = work / "ref.mp4"
    rc, full = run(edit_cmd(clip, ref, args.executor, args.chunk_size))
    ref_time = full
    if rc != 0:
        print(f"the uninterrupted run failed (exit {rc})")
        return 1
    ref_bytes = ref.read_bytes()
    ref.rename(work / "ref.keep")
    out = work / "out.mp4"
    same = clean = n_done = 0
    for i in range(args.runs):
        kill_at = rng.uniform(0.1, 0.95) * full
        rc1, t1 = run(edit_cmd(clip, out, args.executor, args.chunk_size), kill_after=kill_at)
        if rc1 == 0:  # finished before its kill (the machine got faster): later kills use this duration
            full = min(full, t1)
        finished = out.exists()  # the kill came after the output was complete
        if finished and not overwrite:
            out.unlink()
        again = edit_cmd(clip, out, args.executor, args.chunk_size)
        rc2, t2 = run(again + (["--overwrite"] if finished and overwrite else []))
        ok = rc2 == 0 and out.is_file() and out.read_bytes() == ref_bytes
        left = [n for n in leftovers(work, out) if n != "ref.keep"]
        same += ok
        n_done += finished
        clean += not left
        print(f"run {i + 1:2d}: killed at {kill_at:5.1f}s (exit {rc1}), rerun exit {rc2} in {t2:5.1f}s, "
              f"identical={ok}, left beside={left or 'nothing'}")
        if out.exists():
            out.unlink()
    print(f"uninterrupted run {ref_time:.1f}s; {same}/{args.runs} byte-identical, "
          f"{clean}/{args.runs} left nothing; "
          f"{n_done} of {args.runs} kills came after the output was complete")
    return 0 if same == clean == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
