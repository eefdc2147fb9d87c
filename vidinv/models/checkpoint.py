"""Checkpoints are data: load them with ``torch.load(weights_only=True)``; unpickling code is opt-in."""

from __future__ import annotations

import os
import pickle
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from vidinv.errors import InputError, VidinvError

_LAZY = threading.local()  # per thread: a model check in the driver never changes a loading worker thread


def fast_load() -> bool:
    """Models are built without random initialisation and checks map files instead of reading them, unless
    ``VIDINV_FAST_LOAD=0`` (the previous behaviour, kept for side-by-side benchmarks)."""
    return os.environ.get("VIDINV_FAST_LOAD", "1") != "0"


class _NoInit(torch.overrides.TorchFunctionMode):
    """Random initialisers give uninitialised memory (pages untouched until written), for modules whose every
    tensor is then replaced by a checkpoint's (:func:`assign_state_dict`). Unlike the ``meta`` device, this
    pulls in none of torch's symbolic-shape machinery (seconds of imports on first use)."""

    _RANDOM = frozenset({torch.randn, torch.rand})
    _IN_PLACE = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._IN_PLACE or getattr(func, "__module__", "") == "torch.nn.init":  # (in place, in-mode)
            return args[0] if args else kwargs["tensor"]
        if func in self._RANDOM:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)
        return func(*args, **kwargs)


@contextmanager
def no_init() -> Iterator[None]:
    """Build modules without random initialisation (see :class:`_NoInit`); ``VIDINV_FAST_LOAD=0``: a no-op."""
    if not fast_load():
        yield
        return
    with _NoInit():
        yield


@contextmanager
def lazy_reads() -> Iterator[None]:
    """Within (this thread): :func:`safe_load` maps zip-format checkpoints (``torch.load(mmap=True)``) instead
    of reading them, for checks that look at keys and shapes only; a tensor's bytes are read when touched."""
    before = getattr(_LAZY, "on", False)
    _LAZY.on = fast_load()
    try:
        yield
    finally:
        _LAZY.on = before

# the opt-in, as each interface spells it (the message is shown by the CLI and by the Python API alike)
_PICKLE_FIX = ("rerun with `--allow-pickle` (CLI), `allow_pickle: true` in a model spec, "
               "or allow_pickle=True (Python API)")


def safe_load(path: str | PathLike, allow_pickle: bool = False, map_location: Any = "cpu",
              mmap: bool | None = None) -> Any:
    """Load a checkpoint that holds only tensors, dicts, lists and plain values.

    Args:
        path: the checkpoint file (``.pt`` / ``.pth``, zip or legacy format).
        allow_pickle: also accept files that need unpickling arbitrary code
            (``torch.load(weights_only=False)``). Only for files from a source you trust.
        map_location: passed to ``torch.load``.
        mmap: map the file instead of reading it (zip-format files only; others are read); None: inside
            :func:`lazy_reads` only.

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
    if mmap is None:
        mmap = getattr(_LAZY, "on", False)
    try:
        if mmap and zipfile.is_zipfile(p):
            return torch.load(p, map_location=map_location, weights_only=not allow_pickle, mmap=True)
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


def assign_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], copy: bool = True) -> torch.nn.Module:
    """Fill a model built under :func:`no_init` (or on the ``meta`` device) with a state_dict's tensors (no
    second copy).

    The keys and shapes must already have been checked strictly. Each tensor is cast to the model's dtype on the
    CPU; ``copy`` clones the ones the cast did not copy (False: the model takes them: only for a dict read for
    this model alone). A tensor the state_dict cannot fill (a non-persistent buffer) is an error.
    """
    own = model.state_dict()
    extra = [n for n, _ in [*model.named_parameters(), *model.named_buffers()] if n not in own]
    if extra:
        raise VidinvError(f"{type(model).__name__}: not filled by the checkpoint: {', '.join(extra[:4])}")
    new = {}
    for k, t in own.items():
        v = sd[k].to(device="cpu", dtype=t.dtype)
        new[k] = v.clone() if copy and v is sd[k] else v
    model.load_state_dict(new, strict=True, assign=True)
    return model
