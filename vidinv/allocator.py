"""Keep large tensor buffers in the process instead of returning them to the kernel after every use.

glibc's ``malloc`` serves every request above 32 MB (a 1024x1024 activation of 32 channels is 134 MB) with a
fresh ``mmap`` and gives it back with ``munmap`` on free, so each generator layer of each frame faults its
pages in again: on a 2-core CPU about 230,000 page faults and 0.45-0.57 s of kernel time per 1024 render
(``vidinv edit`` on a one-second clip, with the quick exit of ``cli.quick_exit``: 54-57 s -> 45-46 s,
``benchmarks/bench_e2e.py --process-ab``; the generator alone: ``benchmarks/bench_speed.py --allocator``).
:func:`tune_allocator` asks glibc to serve those from its heap and to keep up to ``trim_mb`` of freed memory
for reuse. Peak RSS grows a little (the freed buffers stay mapped), it does not grow with the clip length
(``benchmarks/edit_clip.py memory``).

The command line and vidinv's Ray workers call it at start; a library user may call it too. It does nothing
off glibc (macOS, musl) or with ``VIDINV_MALLOC=default`` in the environment.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4

_state: dict[str, bool] = {}


def tune_allocator(trim_mb: int = 1024) -> bool:
    """Serve large allocations from glibc's heap and keep ``trim_mb`` of freed memory; True when applied.

    Idempotent and cheap; safe to call in every process that runs the models.
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if os.environ.get("VIDINV_MALLOC", "").lower() not in ("default", "0", "off") and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version  # glibc only: musl's mallopt ignores these parameters
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            trim = min(int(trim_mb) << 20, 2**31 - 1)  # mallopt takes an int
            applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
    log.debug("allocator: %s", "large buffers kept in the heap" if applied else "default")
    _state["applied"] = applied
    return applied


def allocator_state() -> str:
    """``tuned``, ``default`` or ``not set`` (tune_allocator never called in this process): for reports."""
    if "applied" not in _state:
        return "not set"
    return "tuned" if _state["applied"] else "default"
