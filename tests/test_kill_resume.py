"""Issue 15: `vidinv edit --executor local` killed with SIGKILL (at chunk boundaries through the VIDINV_FAULT
test hook, during encoding, and at a time), then run again: the same bytes as an uninterrupted run, and nothing
left beside the output (no part file, no cache folder). Subprocesses, tiny models, an 8-frame clip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_clips import face_frames, write_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cmd(src: Path, out: Path, direction: Path) -> list[str]:
    return [sys.executable, "-m", "vidinv", "edit", str(src), "--out", str(out), "--attr", f"{direction}=1.5",
            "--generator", "tiny", "--encoder", "tiny", "--detector", "dlib", "--executor", "local",
            "--chunk-size", "2", "--quiet"]


def run(args: list[str], fault: str | None = None, kill_after: float | None = None) -> int:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("VIDINV_FAULT", None)
    if fault:
        env["VIDINV_FAULT"] = fault
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    return proc.returncode


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The clip, a direction and the bytes (and wall time) of an uninterrupted run."""
    d = tmp_path_factory.mktemp("kill")
    src = write_clip(d / "clip.mp4", face_frames(8))
    v = np.random.default_rng(1).standard_normal((1, 640)).astype(np.float32)
    np.save(d / "dir.npy", v / np.linalg.norm(v))
    ref = d / "ref" / "o.mp4"
    ref.parent.mkdir()
    t0 = time.perf_counter()
    assert run(cmd(src, ref, d / "dir.npy")) == 0
    return src, d / "dir.npy", ref.read_bytes(), time.perf_counter() - t0


def kill_then_rerun(setup, tmp_path: Path, fault: str | None = None,
                    kill_after: float | None = None) -> list[str]:
    src, direction, ref, _ = setup
    out = tmp_path / "o.mp4"
    assert run(cmd(src, out, direction), fault=fault, kill_after=kill_after) == -signal.SIGKILL
    assert not out.exists()
    left_after_kill = sorted(p.name for p in tmp_path.iterdir())
    assert run(cmd(src, out, direction)) == 0
    assert out.read_bytes() == ref  # the resumed run's output is the uninterrupted run's, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no part file, no cache folder
    return left_after_kill


@pytest.mark.parametrize("fault", ["kill:invert:1", "kill:render:2"])  # a quarter, and half way through
def test_feature_sigkill_at_chunk_then_rerun(setup, tmp_path, fault):
    left = kill_then_rerun(setup, tmp_path, fault=fault)
    assert left == [".o.mp4.vidinv-cache"]  # the killed run's chunks were there to resume from


# x264 holds a short clip's frames until the end, so the part file exists only while the writer finishes:
# this wrapper SIGKILLs the CLI at the last moment, when the encoded part file is about to be renamed
KILL_AT_RENAME = (
    "import os, signal, sys\n"
    "real = os.replace\n"
    "def replace(a, b, **kw):\n"
    "    if str(b).endswith('o.mp4'):\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return real(a, b, **kw)\n"
    "os.replace = replace\n"
    "from vidinv.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_feature_sigkill_while_encoding_leaves_no_part_file(setup, tmp_path):
    """Killed when the encoded part file is complete but not yet renamed; the rerun removes it."""
    src, direction, ref, _ = setup
    out = tmp_path / "o.mp4"
    args = cmd(src, out, direction)
    assert run([sys.executable, "-c", KILL_AT_RENAME] + args[3:]) == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".o.mp4.vidinv-part-") for n in left) and not out.exists(), left
    assert run(args) == 0 and out.read_bytes() == ref
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


def test_feature_timed_sigkill_then_rerun(setup, tmp_path):
    """A kill at a time, not at a chunk boundary: 60% of the uninterrupted run's wall time, or less when
    the machine got faster and the run finished first."""
    src, direction, ref, full = setup
    out = tmp_path / "o.mp4"
    for frac in (0.6, 0.35, 0.2, 0.1):
        if run(cmd(src, out, direction), kill_after=frac * full) == -signal.SIGKILL:
            break
        out.unlink()  # finished before the kill: try earlier
    else:
        pytest.fail("every run finished before its kill time")
    assert not out.exists()
    assert run(cmd(src, out, direction)) == 0 and out.read_bytes() == ref
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
