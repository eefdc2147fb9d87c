"""Per-frame paste-back cost (unalign + mask + blend of one 1024 crop) at 720p and 4K, CPU or GPU.

The face covers the same number of frame pixels in both frames (a ``--face`` px square, as a close-up in 720p
or a medium shot in 4K), so a cost that does not depend on the frame size shows up as a 4K/720p ratio near 1.
With ``--full`` the whole-frame path (``region=False``, what the pipeline did before) is timed too.

    .venv/bin/python benchmarks/bench_paste.py [--method alpha] [--face 500] [--full] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidinv.faces.align import quad_to_matrix  # noqa: E402
from vidinv.faces.paste import paste_faces  # noqa: E402

SIZES = {"720p": (720, 1280), "4K": (2160, 3840)}


def case(hw: tuple[int, int], face: int, size: int, device: str, seed: int = 0):
    h, w = hw
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    faces = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    masks = torch.zeros(1, 1, size, size)
    masks[..., size // 8 : -size // 8, size // 8 : -size // 8] = 1.0
    a, half = 0.2, face / 2
    c, s = math.cos(a) * half, math.sin(a) * half
    x, y, ctr = np.array([c, s]), np.array([-s, c]), np.array([w / 2, h / 2])
    quad = np.stack([ctr - x - y, ctr - x + y, ctr + x + y, ctr + x - y])[None]
    M = torch.as_tensor(quad_to_matrix(quad, size), dtype=torch.float32)
    return frame, faces, masks.to(device), M


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function, the functions run in turns (a fair comparison on a busy machine)."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="alpha", choices=["alpha", "laplacian", "poisson"])
    ap.add_argument("--face", type=int, default=500, help="side of the face's footprint in frame pixels")
    ap.add_argument("--size", type=int, default=1024, help="crop side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also time the whole-frame path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {name: case(hw, args.face, args.size, args.device) for name, hw in SIZES.items()}
    fns = {(name, True): (lambda c=c: paste_faces(*c, args.method)) for name, c in cases.items()}
    if args.full:
        fns.update(
            {
                (name, False): (lambda c=c: paste_faces(*c, args.method, region=False))
                for name, c in cases.items()
            }
        )
    best = best_times(fns, args.repeats)
    ms = {name: 1000 * best[(name, True)] for name in cases}
    for name, hw in SIZES.items():
        line = f"{name:>5} {hw[1]}x{hw[0]}  region: {ms[name]:8.1f} ms/frame"
        if args.full:
            full = 1000 * best[(name, False)]
            line += f"   whole frame: {full:8.1f} ms/frame   (x{full / ms[name]:.1f})"
        print(line, flush=True)
    print(
        f"method {args.method}, one {args.size} crop over a {args.face} px face, device {args.device}: "
        f"4K / 720p = {ms['4K'] / ms['720p']:.2f}"
    )


if __name__ == "__main__":
    main()
