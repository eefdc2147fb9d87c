"""Checkpoints are data: load them with ``torch.load(weights_only=True)``; unpickling code is opt-in."""

from __future__ import annotations

import pickle
import re
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from vidinv.errors import InputError, VidinvError

# the opt-in, as each interface spells it (the message is shown by the CLI and by the Python API alike)
_PICKLE_FIX = ("rerun with `--allow-pickle` (CLI), `allow_pickle: true` in a model spec, "
               "or allow_pickle=True (Python API)")


def safe_load(path: str | PathLike, allow_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """Load a checkpoint that holds only tensors, dicts, lists and plain values.

    Args:
        path: the checkpoint file (``.pt`` / ``.pth``, zip or legacy format).
        allow_pickle: also accept files that need unpickling arbitrary code
            (``torch.load(weights_only=False)``). Only for files from a source you trust.
        map_location: passed to ``torch.load``.

    Returns:
        The loaded object (usually a dict of tensors).

    Raises:
        InputError: the file is missing or is a directory.
        VidinvError: the file is corrupt / not a torch file, or needs unpickling and ``allow_pickle`` is False.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise InputError(f"checkpoint is not a file: {p}")
    try:
        return torch.load(p, map_location=map_location, weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        text = str(e)
        glob = re.search(r"Unsupported (?:global|class): (?:GLOBAL )?([\w.]+)", text)
        if not allow_pickle and glob:
            raise VidinvError(
                f"{p} needs unpickling code ({glob.group(1)}) to load, not just tensors; it was refused for safety. "
                f"If you trust its source, {_PICKLE_FIX}") from None
        if not allow_pickle and "weights only" in text.lower():
            raise VidinvError(
                f"cannot read checkpoint {p} as plain data: corrupt, not a torch file, or pickled with unsupported "
                f"objects (if it is a checkpoint from a source you trust: {_PICKLE_FIX})") from None
        raise VidinvError(f"cannot read checkpoint {p}: corrupt or not a torch file ({text.splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, ModuleNotFoundError) as e:
        msg = str(e).split("\n")[0][:200]
        raise VidinvError(f"cannot read checkpoint {p}: corrupt or not a torch file ({type(e).__name__}: {msg})") from None
