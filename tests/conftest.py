"""Shared fixtures: paths to ../shared, the tiny models, one Ray instance for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDINV_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
MEDIA = SHARED / "media"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data lives in ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def golden_narrow() -> Path:
    return _need(GOLDEN / "narrow")


@pytest.fixture(scope="session")
def golden_inverters() -> Path:
    return _need(GOLDEN / "inverters")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return _need(MEDIA)


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    return _need(MEDIA / "videos")


@pytest.fixture(scope="session")
def images_dir() -> Path:
    return _need(MEDIA / "images")


@pytest.fixture(scope="session")
def directions_dir() -> Path:
    return _need(MEDIA / "directions")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets gain nothing from intra-op threads; on a shared CPU the spinning OpenMP workers made the
    training tests 15x slower (183 s vs 11 s measured at load 5 on 2 cores). Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance shared by every test that needs it (ray.init takes ~8 s)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    # shut down at the end of the session only


def pytest_sessionfinish(session, exitstatus):
    try:
        import sys

        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass
