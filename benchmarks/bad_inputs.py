"""The bad-input matrix of issue 15: `vidinv edit` over broken inputs, settings and output paths.

Prints `input -> exit code -> message` as a table and checks each row: one plain line on stderr and a
non-zero exit (the absurd strength 1e9: a warning and exit 0), with the input file unchanged (SHA-256
before/after). Tiny random-weight models, in-process executor; about 20 runs of the CLI.

    python benchmarks/bad_inputs.py [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
TINY = ["--generator", "tiny", "--encoder", "tiny", "--executor", "local", "--detector", "dlib", "--quiet"]
NARROW = REPO.parent / "shared" / "golden" / "narrow"


def make_inputs(d: Path) -> dict[str, Path]:
    """Every broken input of the matrix, in ``d`` (readable by anyone: one case runs as 'nobody')."""
    import av
    import torch
    from media_utils import make_clip
    from pipeline_clips import face_frames, write_clip

    f = {"face": write_clip(d / "face.mp4", face_frames(8)), "noface": make_clip(d / "noface.mp4", 8)}
    good = f["face"].read_bytes()
    (d / "empty.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    (d / "text.mp4").write_text("this is not a video\n" * 100)
    mid = bytearray(good)
    mid[len(mid) // 2 : len(mid) // 2 + 4000] = (bytes(range(256)) * 16)[:4000]
    (d / "mid_decode.mp4").write_bytes(bytes(mid))
    with av.open(str(d / "audio_only.m4a"), "w") as out:
        au = out.add_stream("aac", rate=44100)
        for s in range(0, 44100, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 44100, s, Fraction(1, 44100)
            for pkt in au.encode(af):
                out.mux(pkt)
        for pkt in au.encode():
            out.mux(pkt)
    torch.save({"layer": torch.nn.Linear(2, 2)}, d / "pickled.pt")
    v = np.random.default_rng(1).standard_normal((1, 640)).astype(np.float32)
    np.save(d / "dir.npy", v / np.linalg.norm(v))
    (d / "afile").write_text("x")
    (d / "ro").mkdir(mode=0o555)
    (d / "existing.mp4").write_bytes(b"an earlier result")
    for p in d.iterdir():
        p.chmod(0o755 if p.is_dir() and p.name != "ro" else (0o555 if p.is_dir() else 0o644))
    d.chmod(0o755)
    return {p.stem: p for p in d.iterdir()}


def cases(d: Path) -> list[tuple[str, list[str], str, bool]]:
    """``(label, args, input file to hash, expect success)``."""
    f, a = (lambda n: str(d / n)), (lambda n: ["--attr", f"{d / 'dir.npy'}={n}"])
    gen = ["--generator", str(NARROW / "generator_rosinality.pt"), "--executor", "local",
           "--detector", "dlib",
           "--quiet"]
    face = f("face.mp4")
    return [
        ("missing file", [f("missing.mp4"), "--invert-only", *TINY], "", False),
        ("empty file", [f("empty.mp4"), "--invert-only", *TINY], f("empty.mp4"), False),
        ("truncated (half the bytes)", [f("truncated.mp4"), "--invert-only", *TINY], f("truncated.mp4"),
         False),
        ("random bytes", [f("random.mp4"), "--invert-only", *TINY], f("random.mp4"), False),
        ("audio-only file", [f("audio_only.m4a"), "--invert-only", *TINY], f("audio_only.m4a"), False),
        ("text file", [f("text.mp4"), "--invert-only", *TINY], f("text.mp4"), False),
        ("--strength nan", [face, *a("nan"), *TINY, "--out", f("o1.mp4")], face, False),
        ("--strength inf", [face, *a("inf"), *TINY, "--out", f("o2.mp4")], face, False),
        ("--strength 1e9", [face, *a("1e9"), *TINY, "--out", f("o3.mp4")], face, True),
        ("--out in a missing folder", [face, *a(1), *TINY, "--out", f("no/such/o.mp4")], face, False),
        ("--out parent is a file", [face, *a(1), *TINY, "--out", f("afile/o.mp4")], face, False),
        ("--out in a read-only folder", [face, *a(1), *TINY, "--out", f("ro/o.mp4")], face, False),
        ("--cache-dir under a file", [face, *a(1), *TINY, "--out", f("o4.mp4"), "--cache-dir", f("afile/c")],
         face, False),
        ("wrong-layout --encoder", [face, *a(1), *gen, "--encoder", str(NARROW / "iresnet50.pt")], face,
         False),
        ("pickled --encoder", [face, *a(1), *gen, "--encoder", f("pickled.pt")], face, False),
        ("no face", [f("noface.mp4"), "--invert-only", *TINY, "--out", f("o5.mp4")], f("noface.mp4"), False),
        ("existing output, no --overwrite", [face, *a(1), *TINY, "--out", f("existing.mp4")], face, False),
        ("--strength without --attr", [face, "--strength", "2", *TINY], face, False),
        ("mid-file decode failure", [f("mid_decode.mp4"), "--invert-only", *TINY, "--out", f("o6.mp4")],
         f("mid_decode.mp4"), False),
    ]


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else "-"


def run_case(args: list[str], as_nobody: bool, home: Path) -> tuple[int, list[str]]:
    cmd = [sys.executable, "-m", "vidinv", "edit", *args]
    if as_nobody:  # root writes in any folder: the read-only case runs as an ordinary user
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO), VIDINV_HOME=str(home))
    env.pop("VIDINV_FAULT", None)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    lines = [ln for ln in res.stderr.replace("\r", "\n").split("\n") if ln.strip()]
    return res.returncode, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="vidinv-bad-"))
    home = d / "home"
    make_inputs(d)
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    rows, ok_all = [], True
    for label, argv, src, success in cases(d):
        before = sha(src)
        nobody = label.endswith("read-only folder") and os.geteuid() == 0
        rc, lines = run_case(argv, as_nobody=nobody, home=home)
        unchanged = sha(src) == before
        if success:
            ok = rc == 0 and unchanged and len(lines) == 1 and "outside the useful range" in lines[0]
        else:
            ok = rc != 0 and len(lines) == 1 and lines[0].startswith("vidinv: error:") and unchanged
        ok_all &= ok
        msg = " | ".join(lines) if lines else "(nothing on stderr)"
        rows.append((label, rc, msg, ok))
        print(f"{'ok ' if ok else 'BAD'} {label:34s} -> {rc:3d} -> {msg[:240]}", flush=True)
    n_ok = sum(r[3] for r in rows)
    print(f"{n_ok} of {len(rows)} cases: one plain line, the expected exit code, the input unchanged")
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
