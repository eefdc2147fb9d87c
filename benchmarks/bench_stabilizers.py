"""Speed and quality of the temporal stabilizers on synthetic jittery landmark tracks (CPU).

Prints, per filter, the time to smooth landmarks ``[T,68,2]``, W+ codes ``[T,18,512]`` and
(Gaussian only) feature codes ``[T,512,16,16]``, plus the jitter reduction factor and ramp lag
on 68 tracks (slow sinusoid + drift + unit i.i.d. jitter), and the Lucas-Kanade refinement's
time per frame and point error on a translating texture.

    .venv/bin/python benchmarks/bench_stabilizers.py [--frames 300] [--f-frames 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def timed(fn, *args, repeats: int = 3, **kw) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t0)
    return best, out


def tracks(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None]
    clean = 100 + rng.uniform(2, 4, (1, 68, 2)) * np.sin(2 * np.pi * t / 150 + rng.uniform(0, 6.3, (1, 68, 2)))
    clean = clean + 0.1 * t
    return clean, clean + rng.normal(0, 1.0, clean.shape)


def lag(clean: np.ndarray, y: np.ndarray, K: int = 12) -> int:
    n = len(clean)
    return int(np.argmin([np.mean((y[K:n - K] - clean[K - k:n - K - k]) ** 2) for k in range(-K, K + 1)])) - K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--f-frames", type=int, default=32, help="frames of the [T,512,16,16] feature-code test")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from stabilizers import build_stabilizer, gaussian_smooth, lk_refine

    T = a.frames
    clean, noisy = tracks(T)
    ramp = np.arange(200.0)
    w = torch.randn(T, 18, 512)
    cfgs = [{"method": "gaussian", "sigma": 3.0}, {"method": "gaussian", "sigma": 6.0},
            {"method": "savgol", "window": 15, "order": 2}, {"method": "one_euro", "min_cutoff": 1.0, "beta": 0.05}]
    print(f"{'filter':58s} {'lm ms':>8s} {'w+ ms':>8s} {'jitter /':>9s} {'lag':>4s}")
    for cfg in cfgs:
        f = build_stabilizer(cfg)
        t_lm, y = timed(f, noisy)
        t_w, _ = timed(f, w, repeats=1)
        red = np.std(noisy - clean) / np.std(y - clean)
        print(f"{str(cfg):58s} {1e3 * t_lm:8.2f} {1e3 * t_w:8.1f} {red:9.2f} {lag(ramp, f(ramp)):4d}")
    F = torch.randn(a.f_frames, 512, 16, 16)
    t_f, _ = timed(gaussian_smooth, F, 3.0, repeats=1)
    print(f"gaussian sigma 3 on F [{a.f_frames},512,16,16]: {1e3 * t_f:.1f} ms ({1e3 * t_f / a.f_frames:.2f} ms/frame)")

    import cv2

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (512, 512)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    n = 60
    shift = np.stack([0.8 * np.arange(n), 5 * np.sin(2 * np.pi * np.arange(n) / 25)], 1)
    frames = np.stack([cv2.warpAffine(tex, np.float32([[1, 0, s[0] - 64], [0, 1, s[1] - 64]]), (256, 256))
                       for s in shift]).clip(0, 255).astype(np.uint8)
    grid = np.stack(np.meshgrid(np.linspace(60, 160, 17), np.linspace(60, 180, 4)), -1).reshape(-1, 2)  # 68 pts
    true = grid[None] + shift[:, None]
    det = true + rng.normal(0, 1.5, true.shape)
    t_lk, ref = timed(lk_refine, frames, det, repeats=1)
    err = lambda p: float(np.sqrt(((p - true) ** 2).sum(-1)).mean())  # noqa: E731
    print(f"lk_refine 256x256, 68 pts: {1e3 * t_lk / n:.2f} ms/frame; point error {err(det):.2f} -> {err(ref):.2f} px")


if __name__ == "__main__":
    main()
