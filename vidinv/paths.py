"""Where vidinv finds its configs, its cache and the shared test data."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def config_dir() -> Path:
    """The folder holding the YAML configs (``configs/`` of the source tree or the installed copy)."""
    env = os.environ.get("VIDINV_CONFIG_DIR")
    if env:
        return Path(env)
    src = Path(__file__).resolve().parents[1] / "configs"
    if src.is_dir():
        return src
    return Path(sys.prefix) / "share" / "vidinv" / "configs"


def config_file(name: str) -> Path:
    """Path of one YAML config by file name, e.g. ``config_file('zoo.yaml')``."""
    return config_dir() / name


def vidinv_home() -> Path:
    """The weights cache: ``$VIDINV_HOME``, default ``~/.cache/vidinv``."""
    return Path(os.environ.get("VIDINV_HOME", Path.home() / ".cache" / "vidinv")).expanduser()


def offline() -> bool:
    """True when ``VIDINV_OFFLINE=1`` forbids network access."""
    return os.environ.get("VIDINV_OFFLINE", "0").lower() in ("1", "true", "yes")
