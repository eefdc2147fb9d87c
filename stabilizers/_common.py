"""Shared helpers: numpy/torch round trips, input checks, per-shot application, invalid-frame filling."""

from __future__ import annotations

from typing import Callable, Union

import numpy as np
import torch

from vidinv.errors import InputError

from .runs import Segments, segment_bounds  # noqa: F401  (re-exported for the filters)

Array = Union[np.ndarray, torch.Tensor]


def to_time_first(x: Array, dim: int, name: str = "x") -> tuple[torch.Tensor, Callable[[torch.Tensor], Array]]:
    """Return ``x`` as a float tensor with time on axis 0, and a function that undoes it.

    numpy goes through ``torch.from_numpy`` (no copy); integer inputs become float64 (numpy)
    or the default float dtype (torch). The inverse moves time back to ``dim`` and returns the
    input's type (numpy for numpy, a tensor on the input's device otherwise).
    """
    if isinstance(x, np.ndarray):
        is_np = True
        a = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
        if a.dtype == np.float16:
            a = a.astype(np.float32)
        if not a.flags.writeable:  # torch.from_numpy warns on read-only arrays
            a = a.copy()
        t = torch.from_numpy(np.ascontiguousarray(a))
    elif isinstance(x, torch.Tensor):
        is_np = False
        t = x if x.is_floating_point() else x.to(torch.get_default_dtype())
    else:
        raise InputError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if t.ndim == 0:
        raise InputError(f"{name} must have a time axis: expected [T, ...], got a scalar")
    if not -t.ndim <= dim < t.ndim:
        raise InputError(f"dim={dim} is out of range for {name} with {t.ndim} dims (shape {tuple(t.shape)})")
    dim = dim % t.ndim
    t = t.movedim(dim, 0)
    if t.shape[0] == 0:
        raise InputError(f"{name} has no frames: its time axis (dim {dim}) is empty")

    def back(y: torch.Tensor) -> Array:
        y = y.movedim(0, dim)
        return y.contiguous().numpy() if is_np else y

    return t, back


def per_segment(x: torch.Tensor, segments: Segments,
                fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn(x[a:b], a, b)`` to each shot of a time-first tensor and concatenate."""
    bounds = segment_bounds(x.shape[0], segments)
    if len(bounds) == 1:
        return fn(x, 0, x.shape[0])
    return torch.cat([fn(x[a:b], a, b) for a, b in bounds], 0)


def check_valid(valid: Array | None, T: int) -> np.ndarray:
    """Validity mask ``[T]`` as a numpy bool array (all True when None)."""
    if valid is None:
        return np.ones(T, bool)
    v = valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)
    if v.shape != (T,):
        raise InputError(f"valid must be a [T] mask with T={T}, got shape {tuple(v.shape)}")
    return v.astype(bool)


def fill_invalid(x: torch.Tensor, valid: np.ndarray, segments: Segments = None) -> torch.Tensor:
    """Linearly interpolate invalid frames from the valid ones of the same shot (nearest at the ends).

    Shots without a valid frame are left as they are.

    Shape:
        - x: time-first ``[T, ...]``; valid: ``[T]`` bool. Output: like ``x``.
    """
    out = x.clone()
    for a, b in segment_bounds(x.shape[0], segments):
        idx = np.flatnonzero(valid[a:b])
        if len(idx) == 0 or len(idx) == b - a:
            continue
        bad = np.flatnonzero(~valid[a:b])
        pos = np.clip(np.searchsorted(idx, bad), 1, max(len(idx) - 1, 1))
        lo, hi = idx[pos - 1], idx[pos] if len(idx) > 1 else idx[pos - 1]
        w = np.where(hi > lo, (bad - lo) / np.maximum(hi - lo, 1), 0.0)
        w = np.clip(w, 0.0, 1.0)  # nearest valid frame outside the valid span
        lo_t, hi_t = torch.from_numpy(a + lo), torch.from_numpy(a + hi)
        wt = torch.as_tensor(w, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        out[torch.from_numpy(a + bad)] = x[lo_t] * (1 - wt) + x[hi_t] * wt
    return out
