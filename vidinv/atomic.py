"""Atomic outputs: every file vidinv writes appears whole or not at all, with the user's normal file mode.

A file is written under a recognisable temporary name beside its destination,
``.<name>.vidinv-part-<pid>-<token><suffix>``, then renamed over the destination. A run killed
mid-write leaves such a part file behind; :func:`clean_stale_parts` (called by the next run that
writes the same destination) removes the ones whose process is gone.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PART_TAG = ".vidinv-part-"
_MODE: int | None = None


def default_mode() -> int:
    """The mode a new file gets under the user's umask (``0o666 & ~umask``), read once per process."""
    global _MODE
    if _MODE is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _MODE = 0o666 & ~mask
    return _MODE


def part_path(dst: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh temporary name beside ``dst`` (same suffix by default, so that formats are guessed right)."""
    dst = Path(dst)
    suffix = dst.suffix if suffix is None else suffix
    return dst.parent / f".{dst.name}{PART_TAG}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_parts(dst: str | os.PathLike) -> list[Path]:
    """Part files of ``dst`` left by processes that no longer run."""
    dst = Path(dst)
    out = []
    for p in dst.parent.glob(f".{dst.name}{PART_TAG}*"):
        pid_s = p.name[len(f".{dst.name}{PART_TAG}"):].split("-", 1)[0]
        if not pid_s.isdigit() or not _pid_alive(int(pid_s)):
            out.append(p)
    return out


def clean_stale_parts(dst: str | os.PathLike) -> int:
    """Remove the part files a killed run left beside ``dst``; returns how many were removed."""
    n = 0
    for p in stale_parts(dst):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


@contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``dst`` (mode: the user's default).

    On an exception (or a kill before the rename) ``dst`` is untouched; the part file is removed here,
    or by the next run's :func:`clean_stale_parts`.
    """
    dst = Path(dst)
    clean_stale_parts(dst)
    tmp = part_path(dst, suffix)
    try:
        yield tmp
        os.chmod(tmp, default_mode() if mode is None else mode)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def atomic_write_text(dst: str | os.PathLike, text: str) -> Path:
    with atomic_path(dst) as tmp:
        tmp.write_text(text)
    return Path(dst)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically; ``dst`` gets the user's default mode (not ``src``'s, not 0600)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
