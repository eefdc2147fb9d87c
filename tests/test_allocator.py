"""The allocator policy (``vidinv.allocator``): large buffers reused instead of faulted in again, set by the
command line and by vidinv's Ray workers, off with ``VIDINV_MALLOC=default``."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidinv.allocator import allocator_state

REPO = Path(__file__).resolve().parents[1]


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version
        return sys.platform.startswith("linux")
    except (OSError, AttributeError):
        return False


needs_glibc = pytest.mark.skipif(not _glibc(), reason="the policy is a glibc mallopt; this platform has no glibc")

# rounds of a 96 MB tensor written in full and freed: what every generator layer does for every frame
_CHILD = textwrap.dedent("""
    import json, resource, sys
    import torch
    from vidinv.allocator import allocator_state, tune_allocator
    if sys.argv[1] == "call":
        tune_allocator()
    def rounds(n):
        for i in range(n):
            a = torch.empty(24 << 20, dtype=torch.float32)
            a.fill_(i)
            del a
    rounds(10)  # warm up (the heap settles in the first rounds)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rounds(10)
    print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0,
                      "state": allocator_state()}))
""")


def _child(mode: str, **env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "VIDINV_MALLOC"}
    e.update(env, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, env=e, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_tuned_process_reuses_large_buffers():
    plain, tuned = _child("plain"), _child("call")
    assert plain["state"] == "not set" and tuned["state"] == "tuned"
    pages = (96 << 20) // 4096
    assert plain["faults"] > 8 * pages  # each of the 10 rounds faults the buffer in again (glibc mmap/munmap)
    assert tuned["faults"] < pages  # the buffer is reused from the heap


@needs_glibc
def test_env_turns_the_policy_off():
    off = _child("call", VIDINV_MALLOC="default")
    assert off["state"] == "default"
    assert off["faults"] > 8 * (96 << 20) // 4096


def test_command_line_sets_the_policy():
    """``vidinv`` sets it before running any command (a cheap command here: the weights list)."""
    code = "from vidinv.cli import main; from vidinv.allocator import allocator_state; " \
           "rc = main(['weights', 'list']); print(allocator_state())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.strip().splitlines()[-1] == ("tuned" if _glibc() else "default")


@pytest.mark.ray
def test_ray_workers_set_the_policy(ray_local):
    """Stage hosts (every pass) and plain tasks (``map_tasks``) run with it in the worker process."""
    from pipelines.executors import RayExecutor
    from pipelines.toy import SquareStage

    want = "tuned" if _glibc() else "default"
    ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)
    try:
        assert {o["allocator"] for o in ex.map(SquareStage, {}, range(2))} == {want}
        assert [r for _, r in ex.map_tasks(allocator_state, [()])] == [want]
    finally:
        ex.shutdown()
