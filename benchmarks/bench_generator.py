"""Speed of the StyleGAN2 generator on the CPU: full-size Generator(1024, 512, 8), random weights.

Prints s/image and GFLOP/s for ``synthesis`` at batch 1 and 4, and the time of ``features_at(k=5)``.
FLOPs are counted analytically (2 per multiply-add) over the modulated convs, the transposed
upsampling convs, the FIR blurs/upsamples and ToRGB: about 151 GFLOP per 1024 image.

    .venv/bin/python benchmarks/bench_generator.py [--size 1024] [--batches 1 4] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def synthesis_flops(G) -> float:
    """Analytic FLOPs of one image (2 per MAC; modulation/demodulation and elementwise ops excluded)."""
    ch, total = G.channels, 0.0
    total += 2 * 16 * 9 * ch[4] * ch[4] + 2 * 16 * 3 * ch[4]  # conv1 + to_rgb1 at 4x4
    for i in range(3, G.log_size + 1):
        r, c_in, c_out = 2**i, ch[2 ** (i - 1)], ch[2**i]
        total += 2 * (r // 2) ** 2 * 9 * c_in * c_out  # transposed 3x3 conv, stride 2 (per input pixel)
        total += 2 * r * r * 16 * c_out  # 4x4 blur
        total += 2 * r * r * 9 * c_out * c_out  # second 3x3 conv
        total += 2 * r * r * 3 * c_out + 2 * r * r * 16 * 3  # to_rgb + skip upsample (4x4 taps)
    return total


def features_flops(G, k: int = 5) -> float:
    ch = G.channels
    total = 2 * 16 * 9 * ch[4] * ch[4]
    for t in range(2, k + 1):
        i = t // 2 + 2
        r = 2**i
        if t % 2 == 0:
            total += 2 * (r // 2) ** 2 * 9 * ch[r // 2] * ch[r] + 2 * r * r * 16 * ch[r]
        else:
            total += 2 * r * r * 9 * ch[r] ** 2
    return total


def timeit(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and its process CPU time (CPU/wall near the thread count means no waiting)."""
    fn()  # warm-up
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(args.size, 512, 8).eval()
    flops = synthesis_flops(G)
    print(f"Generator({args.size}, 512, 8), {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{flops / 1e9:.1f} GFLOP per image (analytic); best of {args.repeats} after a warm-up")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (a shared machine: other jobs "
          "slow every number below)")
    noise = G.make_noise(1, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for b in args.batches:
            w = torch.randn(b, G.n_latent, G.style_dim)
            t, c = timeit(lambda: G.synthesis(w, noise), args.repeats)
            print(f"synthesis  batch {b}: {t / b:.3f} s/image ({t:.3f} s/batch, CPU {c:.2f} s), "
                  f"{flops * b / t / 1e9:.1f} GFLOP/s")
        ff = features_flops(G, 5)
        for b in args.batches:
            w = torch.randn(b, G.n_latent, G.style_dim)
            t, c = timeit(lambda: G.features_at(w, 5, noise), args.repeats)
            print(f"features_at(k=5) batch {b}: {t / b * 1e3:.1f} ms/image ({ff / 1e9:.2f} GFLOP, "
                  f"{ff * b / t / 1e9:.1f} GFLOP/s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
