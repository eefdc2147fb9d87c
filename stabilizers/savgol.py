"""Savitzky-Golay smoothing along time (local polynomial fit, zero phase), shot cuts respected."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidinv.errors import InputError

from ._common import Array, Segments, check_valid, fill_invalid, per_segment, to_time_first

MODES = ("interp", "mirror", "nearest", "wrap", "constant")


def _check(window: int, order: int, mode: str) -> None:
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise InputError(f"window must be an odd integer >= 1 (frames), got {window!r}")
    if not isinstance(order, (int, np.integer)) or not 0 <= order < window:
        raise InputError(f"order must be an integer in [0, window) = [0, {window}), got {order!r}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")


def _savgol_time(s: torch.Tensor, window: int, order: int, mode: str) -> torch.Tensor:
    """scipy's filter on one shot; the window shrinks (odd) to fit a shot shorter than it."""
    from scipy.signal import savgol_filter

    L = s.shape[0]
    w = min(window, L if L % 2 else L - 1)
    o = min(order, w - 1)
    if w <= 1 or w <= o:
        return s.clone()
    a = s.detach().cpu().double().numpy()
    y = savgol_filter(a, w, o, axis=0, mode=mode)
    return torch.from_numpy(np.ascontiguousarray(y)).to(dtype=s.dtype, device=s.device)


def savgol_smooth(
    x: Array,
    window: int,
    order: int,
    dim: int = 0,
    segments: Segments = None,
    mode: str = "interp",
    valid: Array | None = None,
) -> Array:
    """Savitzky-Golay filter along time: each frame becomes the value of a local polynomial fit.

    Zero phase; with ``mode='interp'`` (default) the ends are fitted, not padded, so a ramp
    passes through unchanged. Each shot (see ``segments``) is filtered alone; a shot shorter
    than ``window`` uses the largest odd window that fits it (order clipped below it).
    Invalid frames (``valid`` False) are interpolated before filtering. Runs in float64 through
    scipy (no gradient for tensors).

    Args:
        x: sequence, numpy array or torch tensor, time on ``dim``.
        window: odd window length in frames, at most T; 1 is the identity.
        order: polynomial order, ``0 <= order < window``.
        dim: the time axis.
        segments: shot-cut indices (frame ``c`` starts a new shot).
        mode: scipy's edge mode (``'interp'``, ``'mirror'``, ``'nearest'``, ...).
        valid: optional ``[T]`` bool mask of usable frames.

    Returns:
        The smoothed sequence, same type and shape.

    Shape:
        - x: ``[..., T, ...]`` with T on ``dim``; valid: ``[T]``. Output: like ``x``.
    """
    _check(window, order, mode)
    t, back = to_time_first(x, dim)
    T = t.shape[0]
    if window > T:
        raise InputError(f"savgol window ({window}) is longer than the sequence (T={T}); use a window <= T")
    m = check_valid(valid, T)
    if not m.all():
        t = fill_invalid(t, m, segments)
    return back(per_segment(t, segments, lambda s, a, b: _savgol_time(s, window, order, mode)))


@dataclass
class SavGolSmoother:
    """Savitzky-Golay temporal filter holding its parameters; calls :func:`savgol_smooth`.

    ``clip=True`` (default) shrinks the window to a sequence shorter than it instead of raising,
    so one smoother can run over tracks of any length.
    """

    window: int = 9
    order: int = 2
    dim: int = 0
    mode: str = "interp"
    clip: bool = True

    def __post_init__(self) -> None:
        _check(self.window, self.order, self.mode)

    def __call__(self, x: Array, segments: Segments = None, valid: Array | None = None) -> Array:
        window, order = self.window, self.order
        if self.clip:
            shape = getattr(x, "shape", ())
            T = shape[self.dim] if -len(shape) <= self.dim < len(shape) else window
            if 0 < T < window:
                window = T if T % 2 else T - 1
                order = min(order, window - 1)
        return savgol_smooth(x, window, order, self.dim, segments, self.mode, valid)
