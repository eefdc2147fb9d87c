"""Speed of the Feature-Style encoder on the CPU: full-size FSEncoder (143_enc.pth sizes), random weights.

Times ``preprocess`` (1024 -> 256, the official two halvings) plus ``FSEncoder.forward`` at batch
1 and 4 and prints s/frame and GFLOP/s (FLOPs counted from the conv/linear layers actually run,
2 per multiply-add: about 25 GFLOP per 256 input). The official code measured 0.48 s/frame on
this CPU. The ArcFace IResNet-50 (112 px) is timed too, for reference.

    .venv/bin/python benchmarks/bench_encoder.py [--batches 1 4] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidinv.models.fs_encoder import FSEncoder, preprocess  # noqa: E402
from vidinv.models.iresnet import iresnet50  # noqa: E402


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward (2 per MAC) over Conv2d and Linear layers, counted with hooks."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += 2.0 * out.numel() * k
        else:
            total[0] += 2.0 * out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model(x)
    for h in hs:
        h.remove()
    return total[0] / x.shape[0]


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--no-iresnet", action="store_true", help="skip the IResNet-50 timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    E = FSEncoder().eval()  # 18 styles x 512, widths 64/128/256/512, content 512
    n_params = sum(p.numel() for p in E.parameters())
    print(f"FSEncoder full size: {n_params / 1e6:.1f} M parameters, "
          f"built in {time.perf_counter() - t0:.1f} s, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    flops = count_flops(E, torch.zeros(1, 3, 256, 256))
    print(f"encoder forward: {flops / 1e9:.1f} GFLOP per 256 frame")
    for b in args.batches:
        x = torch.rand(b, 3, 1024, 1024) * 2 - 1
        with torch.inference_mode():
            t_pre = timeit(lambda: preprocess(x), args.repeats)
            x256 = preprocess(x)
            t_enc = timeit(lambda: E(x256), args.repeats)
        tot = (t_pre + t_enc) / b
        print(f"batch {b}: preprocess {t_pre / b:.4f} s/frame, encoder {t_enc / b:.3f} s/frame, "
              f"total {tot:.3f} s/frame ({flops * b / t_enc / 1e9:.1f} GFLOP/s; official 0.48 s/frame)")
    if not args.no_iresnet:
        M = iresnet50().eval()
        x = torch.rand(4, 3, 112, 112) * 2 - 1
        with torch.inference_mode():
            t = timeit(lambda: M(x), args.repeats)
        gf = count_flops(M, x[:1]) / 1e9
        print(f"IResNet-50 (112 px) batch 4: {t / 4:.3f} s/face ({gf:.1f} GFLOP/face)")


if __name__ == "__main__":
    main()
