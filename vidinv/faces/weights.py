"""Where the face backends' model files live: one lookup for dlib's ``.dat`` files, one for insightface packs.

Both look on disk only (nothing is imported or downloaded), so they are cheap enough for availability checks.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from vidinv.errors import MissingWeightsError

DLIB_LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
DLIB_ENV = "VIDINV_DLIB_MODELS"
INSIGHTFACE_ENV = "INSIGHTFACE_HOME"


def dlib_model_dirs() -> list[Path]:
    """The folders searched for dlib ``.dat`` files, in order.

    ``$VIDINV_DLIB_MODELS`` first, then the ``models`` folder of the ``face_recognition_models`` package
    (found by path: importing that package pulls in setuptools' pkg_resources), then
    ``face_recognition_models/models`` under each ``sys.path`` entry.
    """
    dirs = [Path(os.environ[DLIB_ENV]).expanduser()] if os.environ.get(DLIB_ENV) else []
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        dirs += [Path(loc) / "models" for loc in spec.submodule_search_locations or []]
    dirs += [Path(p) / "face_recognition_models" / "models" for p in sys.path if p]
    return dirs


def find_dlib_model(filename: str = DLIB_LANDMARKS_68) -> Path | None:
    """The path of a dlib model file (e.g. ``shape_predictor_68_face_landmarks.dat``), or None when absent."""
    for d in dlib_model_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


def dlib_model_path(filename: str = DLIB_LANDMARKS_68) -> Path:
    """Like :func:`find_dlib_model`, but a missing file raises a one-line :class:`MissingWeightsError`."""
    path = find_dlib_model(filename)
    if path is None:
        raise MissingWeightsError(
            f"dlib model {filename} not found: pip install face-recognition-models "
            f"or set {DLIB_ENV} to the folder holding it"
        )
    return path


def insightface_root(root: str | os.PathLike | None = None) -> Path:
    """The insightface home: ``root``, else ``$INSIGHTFACE_HOME``, else ``~/.insightface``."""
    return Path(root or os.environ.get(INSIGHTFACE_ENV) or "~/.insightface").expanduser()


def insightface_pack_dir(pack: str = "buffalo_l", root: str | os.PathLike | None = None) -> Path:
    """Where insightface keeps a model pack: ``<home>/models/<pack>`` (it may not exist)."""
    return insightface_root(root) / "models" / pack


def insightface_pack_files(pack: str = "buffalo_l", root: str | os.PathLike | None = None) -> list[Path]:
    """The ONNX files of an installed model pack, sorted (``[]`` when the pack is absent)."""
    d = insightface_pack_dir(pack, root)
    return sorted(d.glob("*.onnx")) if d.is_dir() else []
