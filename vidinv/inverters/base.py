"""The common inverter interface and the checks its implementations share.

An inverter maps aligned face crops to a *code* (a dict of tensors, every one batched on
dim 0, always holding ``'w'``) and renders a code back, optionally with an edited ``w``.
The video pipeline splits codes per frame, stacks, caches and smooths them without knowing
the method, so a code holds only tensors with a leading batch dimension.

Methods register an :class:`~vidinv.inverters.registry.InverterEntry` in their own module; the
registry (:mod:`vidinv.inverters.registry`) imports them on first use (``import vidinv`` stays cheap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from vidinv.errors import VidinvError

Code = dict[str, Tensor]


@runtime_checkable
class Inverter(Protocol):
    """What every inversion method provides.

    Attributes:
        name: registry name (``'e4e'``, ``'hfgi'``, ``'hyperinverter'``, ``'padinv'``, ...).
        size: generator output resolution S.
        n_latent: number of W+ rows L.
        style_dim: W dimension sd.
    """

    name: str
    size: int
    n_latent: int
    style_dim: int

    def invert(self, x: Tensor) -> Code:
        """Invert crops. Shape: x ``[B,3,S,S]`` in [-1,1] -> dict of ``[B, ...]``, ``'w'`` ``[B,L,sd]``."""
        ...

    def render(self, code: Code, w_edit: Tensor | None = None, noise: list | None = None) -> Tensor:
        """Render a code (``w_edit`` None = the inversion). Shape: -> ``[B,3,S,S]``."""
        ...


# ----------------------------------------------------------------------------- helpers for implementations


def check_images(x: Tensor, what: str = "images") -> None:
    """Raise a clear error unless ``x`` is a float ``[B,3,H,W]`` tensor."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise VidinvError(f"{what}: expected a float tensor [B,3,H,W] in [-1,1], got {shape}")


def expand_w(w: Tensor, n_latent: int, style_dim: int, what: str = "w") -> Tensor:
    """``[B,sd]`` -> ``[B,L,sd]`` (repeated); ``[B,L,sd]`` checked and returned. Shape: -> ``[B,L,sd]``."""
    if not torch.is_tensor(w) or w.shape[-1] != style_dim or w.ndim not in (2, 3):
        shape = tuple(w.shape) if torch.is_tensor(w) else type(w).__name__
        raise VidinvError(f"{what}: expected [B,{style_dim}] or [B,{n_latent},{style_dim}], got {shape}")
    if w.ndim == 2:
        return w[:, None].expand(-1, n_latent, -1)
    if w.shape[1] != n_latent:
        raise VidinvError(f"{what}: expected {n_latent} W+ rows, got {w.shape[1]}")
    return w


def check_code(code: Mapping[str, Tensor], keys: tuple[str, ...], what: str = "code") -> int:
    """Check that ``code`` holds ``keys`` as tensors with one common batch size; return it."""
    if not isinstance(code, Mapping):
        raise VidinvError(f"{what}: expected a dict of tensors, got {type(code).__name__}")
    missing = [k for k in keys if k not in code]
    if missing:
        raise VidinvError(f"{what}: missing entries {missing} (got {sorted(code)})")
    sizes = {k: v.shape[0] for k, v in code.items() if torch.is_tensor(v) and v.ndim > 0}
    if len(set(sizes.values())) > 1:
        raise VidinvError(f"{what}: entries have different batch sizes {sizes}")
    return next(iter(sizes.values())) if sizes else 0


def latent_to_render(inv: Any, code: Mapping[str, Tensor], w_edit: Tensor | None) -> Tensor:
    """The W+ latent a render uses: the code's ``'w'``, or ``w_edit`` in its place, expanded to
    ``[B,L,sd]`` and checked against the code's batch size. Shape: -> ``[B,L,sd]``."""
    B = check_code(code, ("w",), f"{inv.name} code")
    w = expand_w(code["w"] if w_edit is None else w_edit, inv.n_latent, inv.style_dim,
                 f"{inv.name} w" if w_edit is None else f"{inv.name} w_edit")
    if w.shape[0] != B:
        raise VidinvError(f"{inv.name}: w_edit has batch {w.shape[0]}, the code {B}")
    return w
