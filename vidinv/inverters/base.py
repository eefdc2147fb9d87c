"""The common interface of the GAN-inversion methods, their registry and the loader.

Every method (Feature-Style, e4e, pSp, HFGI, HyperInverter, PadInv) is wrapped as an
:class:`Inverter`: ``invert`` turns aligned face crops into a *code dict* and ``render`` turns
a code dict (optionally with edited W+ codes) back into images. A code dict holds only tensors
whose dim 0 is the batch, so the video pipeline can split it per frame, stack it, cache it and
smooth it over time without knowing the method; it always holds ``'w'`` ``[B, L, sd]``.

Methods register a factory ``(checkpoint path or loaded dict, **kw) -> Inverter`` under their
name with :func:`register_inverter`. The built-in ones live in ``vidinv/inverters/<name>.py``
and are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from vidinv.errors import VidinvError

__all__ = ["Inverter", "INVERTERS", "KNOWN_INVERTERS", "register_inverter", "load_inverter",
           "available_inverters", "check_images", "check_code", "split_code", "cat_codes"]

Code = dict[str, Tensor]

# name -> module that registers it on import (lazy: the registry fills itself on lookup)
KNOWN_INVERTERS: dict[str, str] = {
    "e4e": "vidinv.inverters.e4e",
    "psp": "vidinv.inverters.psp",
    "hfgi": "vidinv.inverters.hfgi",
    "hyperinverter": "vidinv.inverters.hyperinverter",
    "padinv": "vidinv.inverters.padinv",
}


@runtime_checkable
class Inverter(Protocol):
    """What every inversion method provides.

    Attributes:
        name: the registry name (``'e4e'``, ``'hfgi'``, ...).
        size: the generator's output resolution S.
        n_latent: W+ layers L.
        style_dim: W dimension sd.
    """

    name: str
    size: int
    n_latent: int
    style_dim: int

    def invert(self, x: Tensor) -> Code:
        """Encode aligned faces. ``x [B,3,S',S']`` in [-1,1] -> a code dict with at least ``'w' [B,L,sd]``."""
        ...

    def render(self, code: Code, w_edit: Tensor | None = None, noise: list | None = None) -> Tensor:
        """Decode a code dict (``w_edit`` replaces ``code['w']``; None = the inversion) -> ``[B,3,S,S]``."""
        ...


class _Registry(dict):
    """A ``dict`` name -> factory that imports a known method's module on first lookup."""

    def __missing__(self, name: str) -> Callable[..., Inverter]:
        module = KNOWN_INVERTERS.get(name)
        if module is None:
            raise KeyError(name)
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                raise KeyError(name) from None
            raise
        if name not in self:
            raise KeyError(name)
        return dict.__getitem__(self, name)


INVERTERS: dict[str, Callable[..., Inverter]] = _Registry()


def register_inverter(name: str) -> Callable[[Callable[..., Inverter]], Callable[..., Inverter]]:
    """Decorator: register ``factory(checkpoint_path_or_dict, **kw) -> Inverter`` under ``name``."""

    def deco(factory: Callable[..., Inverter]) -> Callable[..., Inverter]:
        INVERTERS[name] = factory
        return factory

    return deco


def available_inverters() -> list[str]:
    """Names of the methods whose module is present (imports the known modules)."""
    names = []
    for name in sorted(set(KNOWN_INVERTERS) | set(INVERTERS)):
        try:
            INVERTERS[name]
        except KeyError:
            continue
        names.append(name)
    return names


def load_inverter(name: str, checkpoint: str | PathLike | Mapping[str, Any], **kw: Any) -> Inverter:
    """Build the inverter ``name`` from its official checkpoint (a path, read with ``safe_load``, or a loaded dict).

    Raises:
        VidinvError: unknown method name (the message lists the available ones).
    """
    try:
        factory = INVERTERS[name]
    except KeyError:
        raise VidinvError(f"unknown inverter {name!r}; available: {', '.join(available_inverters())}") from None
    return factory(checkpoint, **kw)


# ----------------------------------------------------------------------------- helpers for implementations


def check_images(x: Tensor, what: str) -> None:
    """Raise a clear VidinvError unless ``x`` is a float ``[B, 3, H, W]`` batch of square images."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise VidinvError(f"{what} expects square images [B,3,S,S] in [-1,1], got {shape}")
    if not x.is_floating_point():
        raise VidinvError(f"{what} expects float images in [-1,1], got dtype {x.dtype}")


def check_code(code: Mapping[str, Tensor], keys: tuple[str, ...], what: str) -> int:
    """Check that ``code`` holds tensors ``keys`` with one batch size; return that batch size."""
    if not isinstance(code, Mapping):
        raise VidinvError(f"{what}: a code must be a dict of tensors, got {type(code).__name__}")
    missing = [k for k in keys if k not in code]
    if missing:
        raise VidinvError(f"{what}: the code has no {', '.join(map(repr, missing))} (keys: {', '.join(code)})")
    sizes = {k: code[k].shape[0] for k in keys if torch.is_tensor(code[k]) and code[k].ndim > 0}
    if len(sizes) != len(keys) or len(set(sizes.values())) != 1:
        raise VidinvError(f"{what}: code entries must be tensors with one batch size, got "
                          + ", ".join(f"{k} {list(getattr(code[k], 'shape', []))}" for k in keys))
    return next(iter(sizes.values()))


def split_code(code: Mapping[str, Tensor]) -> list[Code]:
    """One code dict per sample (each entry keeps a batch dim of 1)."""
    B = check_code(code, tuple(code), "split_code")
    return [{k: v[i:i + 1] for k, v in code.items()} for i in range(B)]


def cat_codes(codes: list[Mapping[str, Tensor]]) -> Code:
    """Concatenate code dicts with the same keys along the batch dim."""
    if not codes:
        raise VidinvError("cat_codes needs at least one code")
    keys = tuple(codes[0])
    if any(tuple(c) != keys for c in codes):
        raise VidinvError("cat_codes: the codes have different keys")
    return {k: torch.cat([c[k] for c in codes], 0) for k in keys}
