"""vidinv.atomic: whole-or-nothing outputs, the user's file mode, stale part files cleaned."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from vidinv.atomic import PART_TAG, atomic_copy, atomic_path, atomic_write_bytes, clean_stale_parts, stale_parts


def test_atomic_write_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "a.bin", b"xyz")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"xyz"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(f"*{PART_TAG}*"))


def test_atomic_copy_not_0600(tmp_path):
    src = tmp_path / "src.mp4"
    src.write_bytes(b"data")
    os.chmod(src, 0o600)
    dst = atomic_copy(src, tmp_path / "dst.mp4")
    assert dst.read_bytes() == b"data"
    assert stat.S_IMODE(dst.stat().st_mode) & 0o044  # readable by group/others under the usual umask


def test_atomic_path_failure_leaves_destination(tmp_path):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dst) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert dst.read_bytes() == b"old"
    assert not list(tmp_path.glob(f"*{PART_TAG}*"))


def test_stale_parts_of_dead_process_cleaned(tmp_path):
    dst = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = tmp_path / f".out.mp4{PART_TAG}{dead}-abcd.mp4"
    stale.write_bytes(b"x")
    live = tmp_path / f".out.mp4{PART_TAG}{os.getpid()}-beef.mp4"
    live.write_bytes(b"y")
    other = tmp_path / f".other.mp4{PART_TAG}{dead}-abcd.mp4"
    other.write_bytes(b"z")
    assert stale_parts(dst) == [stale]
    assert clean_stale_parts(dst) == 1
    assert not stale.exists() and live.exists() and other.exists()
