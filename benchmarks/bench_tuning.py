"""Cost of each tuning stage (s/frame and peak RSS) with the tiny models, on real aligned crops.

The crops come from the first frames of a shared clip (dlib landmarks, FFHQ alignment to the tiny
generator's 64 px). Every stage runs in its own process (so its peak RSS is its own) after the
same set-up (tiny fs inverter, crops, inversion); ``setup`` is that set-up alone, the baseline
(its time is the inversion's).
Tuning here is L2 only (LPIPS's backbone weights are not cached on the test machines).

    python benchmarks/bench_tuning.py --frames 8 --epochs 5 --stitch-steps 20
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
SHARED = Path(os.environ.get("VIDINV_SHARED", REPO.parent / "shared"))
STAGES = ("setup", "pti", "pti_locality", "edit_render", "stitch", "stitch_render")


def make_crops(clip: Path, n: int, out: Path) -> None:
    """Decode, detect, align ``n`` frames to 64 px crops and landmarks; save them for the children."""
    import numpy as np
    import torch

    from vidinv.faces.align import align_faces, ffhq_quad, quad_to_matrix, transform_points
    from vidinv.faces.detect import DlibDetector
    from vidinv.io.video import VideoReader

    frames = VideoReader(clip).read_range(0, n).frames
    faces = DlibDetector(upsample=0, max_side=350).detect(frames)
    lm = np.stack([max(f, key=lambda x: x.area).landmarks for f in faces]).astype(np.float64)
    M = torch.from_numpy(quad_to_matrix(ffhq_quad(lm), 64))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.save({"crops": align_faces(x, M, 64).clamp(-1, 1).contiguous(),
                "lm": torch.from_numpy(transform_points(lm, M.numpy())).float()}, out)


def child(stage: str, data: str, epochs: int, steps: int, threads: int) -> None:
    import torch

    from vidinv.faces.mask import landmark_hull_mask
    from vidinv.inverters.fs import tiny_fs_inverter
    from vidinv.tuning import (StitchConfig, TuneConfig, pivotal_tune, render_tuned, save_weights,
                               stitch_tune)

    torch.set_num_threads(threads)
    d = torch.load(data, weights_only=True)
    crops, lm = d["crops"], d["lm"]
    N = crops.shape[0]
    inv = tiny_fs_inverter(0)
    t_inv = time.perf_counter()
    codes = inv.invert(crops)
    t_inv = time.perf_counter() - t_inv
    w_edit = codes["w"] + 3.0 * torch.nn.functional.normalize(
        torch.randn(1, inv.n_latent * inv.style_dim, generator=torch.Generator().manual_seed(5))
    ).view(1, inv.n_latent, inv.style_dim)
    masks = landmark_hull_mask(lm, 64, feather=0.0)
    tcfg = TuneConfig(epochs=epochs, lr=1e-3, locality=stage == "pti_locality", locality_alpha=3.0)
    scfg = StitchConfig(steps=steps, lr=3e-3)
    pti = groups = None
    if stage in ("edit_render", "stitch", "stitch_render"):
        pti = pivotal_tune(inv, crops, codes, TuneConfig(epochs=1, lr=1e-3), lpips=None)
    if stage == "stitch_render":
        groups = stitch_tune(inv, codes, w_edit, crops, masks, StitchConfig(steps=1), base=pti)
    out: dict = {"stage": stage, "frames": N}
    t0 = time.perf_counter()
    if stage in ("pti", "pti_locality"):
        w = pivotal_tune(inv, crops, codes, tcfg, lpips=None)
        out["per"] = f"frame x epoch (steps {tcfg.num_steps(N)})"
        out["div"] = N * epochs
        with tempfile.TemporaryDirectory() as td:
            save_weights(Path(td) / "w.pt", w)
            out["file_mb"] = (Path(td) / "w.pt").stat().st_size / 2**20
    elif stage == "edit_render":
        render_tuned(inv, codes, w_edit, None, pti)
    elif stage == "stitch":
        g = stitch_tune(inv, codes, w_edit, crops, masks, scfg, base=pti)
        out["per"] = f"frame ({steps} steps)"
        with tempfile.TemporaryDirectory() as td:
            save_weights(Path(td) / "s.pt", g)
            out["file_mb"] = (Path(td) / "s.pt").stat().st_size / 2**20
    elif stage == "stitch_render":
        render_tuned(inv, codes, w_edit, None, groups)
    out["s"] = t_inv if stage == "setup" else time.perf_counter() - t0
    if stage == "setup":
        out["per"] = "frame (invert)"
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(SHARED / "media/videos/retalking_face1.mp4"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5, help="PTI passes over the frames (STIT: 300, README 80)")
    ap.add_argument("--stitch-steps", type=int, default=20, help="stitching steps per frame (STIT: 100)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        data = Path(td) / "crops.pt"
        make_crops(Path(a.clip), a.frames, data)
        print(f"{a.frames} frames of {Path(a.clip).name}, tiny fs inverter (64 px), {a.threads} thread(s)")
        print(f"{'stage':<14} {'s/unit':>9}  {'unit':<28} {'peak RSS MB':>11} {'weights MB':>10}")
        for stage in STAGES:
            cmd = [sys.executable, __file__, "_child", stage, str(data), str(a.epochs), str(a.stitch_steps),
                   str(a.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                err = res.stderr.strip().splitlines()
                print(f"{stage:<14} failed: {err[-1] if err else res.returncode}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            per = r.get("per", "frame")
            div = r.get("div", r["frames"])
            mb = f"{r['file_mb']:10.2f}" if "file_mb" in r else f"{'':>10}"
            print(f"{stage:<14} {r['s'] / div:9.4f}  {per:<28} {r['peak_rss_mb']:11.0f} {mb}")


if __name__ == "__main__":
    if len(sys.argv) > 6 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
