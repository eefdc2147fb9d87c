"""Side by side: vidinv's StyleGAN2 and Feature-Style edit against the OFFICIAL FeatureStyleEncoder code.

Both sides get the same random full-size weights: the official ``Generator(1024, 512, 8)`` and
``fs_encoder_v2`` are built, and their state_dicts are loaded into vidinv's models. Runs are
interleaved (official, ours, official, ...) and the median of ``--repeats`` is reported after one
warm-up each, with the ratio official/ours. Only ratios mean anything on a shared machine, so the
load average is printed before and after.

Timed:
  1. ``synthesis`` of a W+ code at batch 1 (official ``G([w], input_is_latent=True, noise=...)``);
     ours also at ``--batch`` (seconds per image, and per-image ratio batch/batch-1).
  2. one edit frame, as the official ``video_processing.py`` does it: encode the 1024 crop
     (downscaled twice), ``G(w)`` and ``G(w~)`` with ``return_features`` for the layer-5 pair, then
     ``G(w~, F~)``; ours: ``FSInverter`` + ``feature_edit`` (G^K only up to layer 5, one render).
  3. ours per stage (encoder, G^K pair, final render) in frames/s for each ``--dtypes`` (fp16 and
     bf16 only on CUDA), and the max abs error of the edit chain against fp32 on the same device.

Allocator: vidinv's command sets :func:`vidinv.allocator.tune_allocator` (large buffers kept for reuse); it is
process-wide, so in this one process ``--allocator tuned`` (default) gives it to the official code too and
``--allocator default`` to neither. ``--processes`` adds the comparison as shipped: each side in its own process
(ours tuned, the official with glibc's default), same seeded weights and inputs, interleaved request by request.

The official code is read from a checkout named by ``VIDINV_OFFICIAL_FS`` (or ``--official``); it is
never copied here. Its StyleGAN2 imports CUDA ops from ``models.stylegan2.op``: a pure-PyTorch
stand-in with rosinality's CPU semantics is put into ``sys.modules`` first (see
../shared/golden/README.md, "What had to change"). Without a checkout, ``--no-official`` times ours only.

    VIDINV_OFFICIAL_FS=/work/official/FeatureStyleEncoder \\
        .venv/bin/python benchmarks/bench_speed.py [--repeats 3] [--threads 2] [--batch 8] [--dtypes fp32] \\
        [--allocator tuned|default] [--processes] [--skip official stages]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


# ----------------------------------------------------------------------------- the official code
def _standin_upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """rosinality's ``upfirdn2d_native`` (the CPU path): one channel at a time, zero insertion, pad, FIR."""
    B, C, H, W = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    out = x.reshape(B * C, 1, H, 1, W, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1]).reshape(B * C, 1, H * up, W * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0):out.shape[2] - max(-p1, 0), max(-p0, 0):out.shape[3] - max(-p1, 0)]
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(out.dtype))
    out = out[:, :, ::down, ::down]
    return out.reshape(B, C, out.shape[2], out.shape[3])


def _standin_fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=2**0.5):
    if bias is not None:
        x = x + bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class _StandinFusedLeakyReLU(nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        return _standin_fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def load_official(root: Path):
    """The official Generator class, fs_encoder_v2 class and downscale function from a checkout."""
    if not (root / "pixel2style2pixel" / "models" / "stylegan2" / "model.py").exists():
        sys.exit(f"{root} is not a FeatureStyleEncoder checkout (set VIDINV_OFFICIAL_FS or --official)")
    op = types.ModuleType("models.stylegan2.op")
    op.upfirdn2d, op.fused_leaky_relu, op.FusedLeakyReLU = (_standin_upfirdn2d, _standin_fused_leaky_relu,
                                                            _StandinFusedLeakyReLU)
    sys.modules["models.stylegan2.op"] = op
    sys.path[:0] = [str(root / "pixel2style2pixel"), str(root)]
    from models.stylegan2.model import Generator as OfficialGenerator  # noqa: E402  (the official file)
    from nets.feature_style_encoder import fs_encoder_v2  # noqa: E402
    from arcface.iresnet import iresnet50  # noqa: E402
    from utils.functions import downscale  # noqa: E402

    return OfficialGenerator, fs_encoder_v2, downscale, iresnet50


def build_models(official, size: int):
    """Official G and encoder with random weights, and vidinv's models loaded from their state_dicts."""
    from vidinv.models.fs_encoder import FSInverter, load_fs_encoder
    from vidinv.models.stylegan2 import Generator, load_generator

    torch.manual_seed(0)
    if official is None:
        G = Generator(size, 512, 8).eval()
        enc = load_fs_encoder(_random_encoder_sd())
        latent_avg = torch.randn(512) * 0.1
        return None, None, None, G, FSInverter(enc, latent_avg).eval()
    OffG, OffEnc, off_down, off_iresnet50 = official
    oG = OffG(size, 512, 8).eval()
    with tempfile.TemporaryDirectory() as tmp:  # fs_encoder_v2 loads an iresnet50 file when it is built
        path = Path(tmp) / "iresnet50.pt"
        torch.save(off_iresnet50().state_dict(), path)
        oenc = OffEnc(n_styles=oG.n_latent, opts=argparse.Namespace(arcface_model_path=str(path)),
                      stride=(2, 2)).eval()
    calibrate_bn(oenc)
    with torch.no_grad():
        latent_avg = oG.mean_latent(1000)[0]
    G, _ = load_generator(oG.state_dict())
    inv = FSInverter(load_fs_encoder(oenc.state_dict()), latent_avg).eval()
    return oG, oenc, (latent_avg, off_down), G, inv


def calibrate_bn(model: nn.Module) -> None:
    """BN running stats from one train-mode pass over smooth synthetic images (random deep nets blow up)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 8, generator=g) * 0.6
    x = F.interpolate(x, size=256, mode="bilinear", align_corners=False)
    x = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def _random_encoder_sd():
    from vidinv.models.fs_encoder import FSEncoder

    enc = FSEncoder()
    calibrate_bn(enc)
    return enc.state_dict()


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each callable; one warm-up each, then the callables alternate every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
        _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def official_edit(oG, oenc, extra, img, d, noise):
    """One frame exactly as the official ``video_processing.py``: encode, two feature passes, one render."""
    latent_avg, off_down = extra
    w0, f0 = oenc(off_down(img, 2, "bilinear"))
    w0 = w0 + latent_avg
    w1 = w0 + d
    _, fea0 = oG([w0], noise=noise, input_is_latent=True, return_features=True)
    _, fea1 = oG([w1], noise=noise, input_is_latent=True, return_features=True)
    features = [None] * 5 + [f0 + fea1[5] - fea0[5]] + [None] * (oG.n_latent - 6)
    x1, _ = oG([w1], noise=noise, input_is_latent=True, features_in=features, feature_scale=1.0)
    return x1


def ours_edit(G, inv, img, d, noise):
    from vidinv.editing.feature_edit import feature_edit

    w, Fc = inv(img)
    return feature_edit(G, w, Fc, w + d, noise)


def _inputs(G, inv, device, batch: int):
    """Seeded synthesis/edit inputs (the same in every process): noise, W+ codes at batch 1 and ``batch``,
    a 1024 image and an edit direction."""
    gen = torch.Generator().manual_seed(1)
    noise = [n.to(device) for n in G.make_noise(1, generator=gen)]
    w = torch.randn(1, G.n_latent, G.style_dim, generator=gen).to(device) * 0.5 + inv.latent_avg
    wb = torch.randn(batch, G.n_latent, G.style_dim, generator=gen).to(device) * 0.5 + inv.latent_avg
    img = (torch.rand(1, 3, G.size, G.size, generator=gen) * 2 - 1).to(device)
    d = torch.randn(1, G.n_latent, G.style_dim, generator=gen).to(device) * 0.3
    return noise, w, wb, img, d


def bench_vs_official(models, args, device) -> None:
    """Synthesis at batch 1 and the edit frame, interleaved official/ours; ours also at ``args.batch``."""
    oG, oenc, extra, G, inv = models
    noise, w, wb, img, d = _inputs(G, inv, device, args.batch)
    print(f"\n== vs official, {args.repeats} interleaved repeats (median), batch 1, fp32, {_load()}")
    with torch.no_grad():
        if oG is not None:
            err = (oG([w], noise=noise, input_is_latent=True)[0] - G.synthesis(w, noise)).abs().max().item()
            e_off, e_ours = official_edit(oG, oenc, extra, img, d, noise), ours_edit(G, inv, img, d, noise)
            e_err = (e_off - e_ours).abs().max()
            print(f"parity: synthesis max abs diff {err:.2e}, edit frame max abs diff {e_err.item():.2e}")
        fns = {"ours G b1": lambda: G.synthesis(w, noise),
               f"ours G b{args.batch}": lambda: G.synthesis(wb, noise)}
        if oG is not None:
            fns = {"official G b1": lambda: oG([w], noise=noise, input_is_latent=True), **fns}
        t = interleaved(fns, args.repeats, device)
        if oG is not None:
            print(f"synthesis b1: official {t['official G b1']:.3f} s, ours {t['ours G b1']:.3f} s, "
                  f"ratio {t['official G b1'] / t['ours G b1']:.2f}x")
        per = t[f"ours G b{args.batch}"] / args.batch
        print(f"ours synthesis batch {args.batch}: {per:.3f} s/image = {per / t['ours G b1']:.2f} x batch 1 "
              f"per image (ratio vs official per image: "
              f"{t['official G b1'] / per if oG is not None else float('nan'):.2f}x)")
        fns = {"ours edit": lambda: ours_edit(G, inv, img, d, noise)}
        if oG is not None:
            fns = {"official edit": lambda: official_edit(oG, oenc, extra, img, d, noise), **fns}
        t = interleaved(fns, args.repeats, device)
        if oG is not None:
            print(f"edit frame b1: official {t['official edit']:.3f} s, ours {t['ours edit']:.3f} s, "
                  f"ratio {t['official edit'] / t['ours edit']:.2f}x")
        else:
            print(f"edit frame b1: ours {t['ours edit']:.3f} s")
    print(_load())


def bench_stages(G, inv, args, device) -> None:
    """Ours per stage in frames/s for each dtype, and the edit chain's max abs error against fp32."""
    from vidinv.editing.feature_edit import feature_edit

    B = args.stage_batch or (8 if device.type == "cuda" else 1)
    gen = torch.Generator().manual_seed(2)
    img = (torch.rand(B, 3, G.size, G.size, generator=gen) * 2 - 1).to(device)
    d = torch.randn(1, G.n_latent, G.style_dim, generator=gen).to(device) * 0.3
    noise = [n.to(device) for n in G.make_noise(1, generator=gen)]
    ref = None
    print(f"\n== ours per stage, batch {B}, {args.repeats} repeats (median), {_load()}")
    for name in args.dtypes:
        if name != "fp32" and device.type != "cuda":
            print(f"{name}: skipped (reduced precision is a GPU option)")
            continue
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
        g, v = (copy.deepcopy(G).to(device, dt), copy.deepcopy(inv).to(device, dt))
        x, dd, nz = img.to(dt), d.to(dt), [n.to(dt) for n in noise]
        with torch.no_grad():
            w, Fc = v(x)
            w1 = w + dd
            nz2 = [n if n.shape[0] == 1 else torch.cat([n, n]) for n in nz]
            Fe = Fc + (lambda gk: gk[B:] - gk[:B])(g.features_at(torch.cat([w, w1]), 5, nz2))
            out = feature_edit(g, w, Fc, w1, nz).float()
            t = interleaved({"encoder": lambda: v(x),
                             "G^K pair": lambda: g.features_at(torch.cat([w, w1]), 5, nz2),
                             "final render": lambda: g.synthesis(w1, nz, feature_in=Fe, feature_idx=5),
                             "edit chain": lambda: feature_edit(g, *v(x), w1, nz)}, args.repeats, device)
        ref = out if ref is None and name == "fp32" else ref
        err = f"{(out - ref).abs().max().item():.2e}" if ref is not None else "n/a (no fp32 run)"
        stages = ", ".join(f"{k} {B / s:.2f}" for k, s in t.items())
        fin = bool(out.isfinite().all())
        print(f"{name}: frames/s: {stages}; edit max abs err vs fp32 {err}; finite {fin}")




def serve(side: str, args) -> None:
    """Child of ``--processes``: one side's synthesis and edit frame, timed on request (a line on stdin)."""
    if side == "ours":
        from vidinv.allocator import tune_allocator

        tune_allocator()  # as the vidinv command does; the official side keeps glibc as it comes
    torch.set_num_threads(args.threads)
    oG, oenc, extra, G, inv = build_models(load_official(Path(args.official)), args.size)
    noise, w, _, img, d = _inputs(G, inv, torch.device("cpu"), args.batch)
    if side == "ours":
        fns = {"synthesis": lambda: G.synthesis(w, noise), "edit": lambda: ours_edit(G, inv, img, d, noise)}
    else:
        fns = {"synthesis": lambda: oG([w], noise=noise, input_is_latent=True),
               "edit": lambda: official_edit(oG, oenc, extra, img, d, noise)}
    with torch.no_grad():
        out = {k: fn() for k, fn in fns.items()}  # warm-up; the outputs go to the parent for the parity check
        torch.save({k: v[0] if isinstance(v, tuple) else v for k, v in out.items()}, args.dump)
        print(json.dumps({"ready": side}), flush=True)
        for line in sys.stdin:
            if line.strip() not in fns:
                break
            t0 = time.perf_counter()
            fns[line.strip()]()
            print(json.dumps({"s": time.perf_counter() - t0}), flush=True)


def _reply(proc) -> dict:
    for line in proc.stdout:  # the official code may print its own lines: take the next JSON object
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"benchmark child exited ({proc.wait()})")


def bench_processes(args) -> None:
    """Each side in its own process as its users run it (vidinv with its allocator policy, the official code
    with glibc's default), same weights and inputs, interleaved: official, ours, official, ..."""
    cmd = [sys.executable, __file__, "_serve", "--official", args.official, "--size", str(args.size),
           "--threads", str(args.threads), "--batch", str(args.batch)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_speed_"))
    procs = {s: subprocess.Popen(cmd + ["--side", s, "--dump", str(tmp / f"{s}.pt")], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for s in ("official", "ours")}
    try:
        for p in procs.values():
            _reply(p)
        o, u = torch.load(tmp / "official.pt"), torch.load(tmp / "ours.pt")
        print(f"\n== each side in its own process as shipped (ours: allocator tuned; official: glibc default), "
              f"{args.repeats} interleaved repeats (median), batch 1, fp32, {_load()}")
        err = {k: (o[k] - u[k]).abs().max().item() for k in ("synthesis", "edit")}
        print(f"parity across the processes (same seeded weights and inputs): synthesis max abs diff "
              f"{err['synthesis']:.2e}, edit frame {err['edit']:.2e}")
        for what in ("synthesis", "edit"):
            t: dict[str, list[float]] = {"official": [], "ours": []}
            for _ in range(args.repeats):
                for s, p in procs.items():
                    p.stdin.write(what + "\n")
                    p.stdin.flush()
                    t[s].append(_reply(p)["s"])
            off, ours = statistics.median(t["official"]), statistics.median(t["ours"])
            print(f"{what} b1: official {off:.3f} s, ours {ours:.3f} s, ratio {off / ours:.2f}x")
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    print(_load())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default=os.environ.get("VIDINV_OFFICIAL_FS"), help="official checkout")
    ap.add_argument("--no-official", action="store_true", help="time ours only")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="ours: batch of the per-image synthesis comparison")
    ap.add_argument("--stage-batch", type=int, default=0, help="per-stage batch (0: 1 on CPU, 8 on CUDA)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtypes", nargs="+", default=None, help="default: fp32 on CPU, fp32 fp16 bf16 on CUDA")
    ap.add_argument("--skip", nargs="*", default=[], choices=["official", "stages"], help="sections to skip")
    ap.add_argument("--allocator", choices=["tuned", "default"], default="tuned",
                    help="tuned: vidinv.allocator.tune_allocator() first, as the vidinv command does; it is "
                         "process-wide, so the official code runs with it too (default: glibc as it comes)")
    ap.add_argument("--processes", action="store_true",
                    help="also each side in its own process as its users run it (see bench_processes)")
    if sys.argv[1:2] == ["_serve"]:
        ap.add_argument("--side", choices=["official", "ours"])
        ap.add_argument("--dump", help="where the warm-up outputs go (for the parent's parity check)")
        args = ap.parse_args(sys.argv[2:])
        return serve(args.side, args)
    args = ap.parse_args()
    if args.processes and not args.no_official:
        bench_processes(args)  # before this process builds its own models
    if args.allocator == "tuned":
        from vidinv.allocator import tune_allocator

        tune_allocator()
    from vidinv.device import pick_device

    device = pick_device(args.device)
    args.dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    torch.set_num_threads(args.threads)
    official = None
    if not args.no_official:
        if not args.official:
            sys.exit("set VIDINV_OFFICIAL_FS=<FeatureStyleEncoder checkout>, or --official, or --no-official")
        official = load_official(Path(args.official))
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, size {args.size}, "
          f"{os.cpu_count()} CPUs, allocator {args.allocator} (both sides), {_load()}")
    oG, oenc, extra, G, inv = build_models(official, args.size)
    oG, oenc = (oG.to(device), oenc.to(device)) if oG is not None else (None, None)
    G, inv = G.to(device), inv.to(device)
    if "official" not in args.skip:
        bench_vs_official((oG, oenc, extra, G, inv), args, device)
    if "stages" not in args.skip:
        bench_stages(G, inv, args, device)


if __name__ == "__main__":
    main()
