"""Zero-phase Gaussian smoothing along time, with edge handling, shot cuts and validity masks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vidinv.errors import InputError

from ._common import Array, Segments, check_valid, fill_invalid, per_segment, to_time_first

MODES = ("reflect", "nearest")


def gaussian_kernel(sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, radius ``int(truncate * sigma + 0.5)`` (scipy's rule).

    Shape:
        - Output: ``[2 * radius + 1]``.
    """
    r = int(truncate * sigma + 0.5)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def _edge_index(T: int, r: int, mode: str) -> torch.Tensor:
    """Source frame of each padded position ``-r .. T+r-1``: half-sample reflection or clamping."""
    i = torch.arange(-r, T + r)
    if mode == "nearest":
        return i.clamp(0, T - 1)
    j = i % (2 * T)  # reflect: d c b a | a b c d | d c b a, any pad length
    return torch.where(j >= T, 2 * T - 1 - j, j)


def _conv_time(x: torch.Tensor, taps: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate a time-first tensor with symmetric taps: a weighted sum of shifted frames."""
    T, r = x.shape[0], (len(taps) - 1) // 2
    xp = x.index_select(0, _edge_index(T, r, mode).to(x.device))  # [T + 2r, ...]
    out = torch.zeros_like(x)
    for k, w in enumerate(taps.tolist()):
        out.add_(xp[k : k + T], alpha=w)
    return out


def _check_sigma(sigma: float, mode: str, truncate: float) -> None:
    if not isinstance(sigma, (int, float, np.floating, np.integer)) or not math.isfinite(sigma) or sigma < 0:
        raise InputError(f"sigma must be a finite number >= 0 (frames), got {sigma!r}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    if not truncate > 0:
        raise InputError(f"truncate must be > 0, got {truncate!r}")


def gaussian_smooth(
    x: Array,
    sigma: float,
    dim: int = 0,
    segments: Segments = None,
    mode: str = "reflect",
    truncate: float = 4.0,
    valid: Array | None = None,
) -> Array:
    """Gaussian filter along time (zero phase), never crossing a shot cut.

    The ends are padded by half-sample reflection (``mode='reflect'``, scipy's default) or by
    repeating the end frame (``'nearest'``), so nothing shrinks toward zero at the ends.
    With a validity mask, invalid frames are ignored (normalised convolution: each output is
    the Gaussian-weighted mean of the valid frames around it); frames with no valid frame in
    reach are interpolated from the nearest valid ones of their shot.

    Args:
        x: sequence, numpy array or torch tensor, time on ``dim``.
        sigma: standard deviation in frames; 0 returns a copy of ``x``.
        dim: the time axis.
        segments: shot-cut indices (frame ``c`` starts a new shot); each shot is filtered alone.
        mode: ``'reflect'`` or ``'nearest'`` edge handling.
        truncate: kernel radius in sigmas.
        valid: optional ``[T]`` bool mask of usable frames.

    Returns:
        The smoothed sequence, same type and shape (float).

    Shape:
        - x: ``[..., T, ...]`` with T on ``dim``; valid: ``[T]``. Output: like ``x``.
    """
    _check_sigma(sigma, mode, truncate)
    t, back = to_time_first(x, dim)
    m = check_valid(valid, t.shape[0])
    if sigma == 0:
        return back(fill_invalid(t, m, segments) if not m.all() else t.clone())
    taps = gaussian_kernel(float(sigma), truncate, t.dtype)
    if m.all():
        return back(per_segment(t, segments, lambda s, a, b: _conv_time(s, taps, mode)))
    mt = torch.as_tensor(m, dtype=t.dtype, device=t.device).reshape(-1, *([1] * (t.ndim - 1)))
    xz = torch.where(mt > 0, t, torch.zeros_like(t))  # invalid frames may hold NaN

    def one(s: torch.Tensor, a: int, b: int) -> torch.Tensor:
        num = _conv_time(xz[a:b], taps, mode)
        den = _conv_time(mt[a:b], taps, mode)
        return num / den.clamp_min(1e-12)

    out = per_segment(t, segments, one)
    den = per_segment(mt, segments, lambda s, a, b: _conv_time(s, taps, mode)).flatten()
    reach = (den > 1e-6).cpu().numpy()
    return back(fill_invalid(out, reach, segments))


@dataclass
class GaussianSmoother:
    """Gaussian temporal filter holding its parameters; calls :func:`gaussian_smooth`.

    Example:
        >>> GaussianSmoother(3.0)(np.zeros((10, 68, 2))).shape
        (10, 68, 2)
    """

    sigma: float = 3.0
    dim: int = 0
    mode: str = "reflect"
    truncate: float = 4.0

    def __post_init__(self) -> None:
        _check_sigma(self.sigma, self.mode, self.truncate)

    def __call__(self, x: Array, segments: Segments = None, valid: Array | None = None) -> Array:
        return gaussian_smooth(x, self.sigma, self.dim, segments, self.mode, self.truncate, valid)
