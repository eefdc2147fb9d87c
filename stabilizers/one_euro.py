"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): causal, speed-adaptive low-pass."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from vidinv.errors import InputError

from ._common import Array, Segments, check_valid, fill_invalid, per_segment, to_time_first


def _alpha(cutoff: torch.Tensor | float, dt: float) -> torch.Tensor | float:
    """Smoothing factor of a first-order low-pass with this cutoff (Hz) for a step of dt seconds."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def _update(x, x_prev, dx_prev, dt: float, min_cutoff: float, beta: float, d_cutoff: float):
    """One filter step, elementwise: returns the new (x_hat, dx_hat)."""
    dx = (x - x_prev) / dt
    dx_hat = dx_prev + _alpha(d_cutoff, dt) * (dx - dx_prev)
    cutoff = min_cutoff + beta * dx_hat.abs()
    x_hat = x_prev + _alpha(cutoff, dt) * (x - x_prev)
    return x_hat, dx_hat


def _check_params(min_cutoff: float, beta: float, d_cutoff: float, rate: float) -> None:
    for name, v, lo in (("min_cutoff", min_cutoff, 0.0), ("d_cutoff", d_cutoff, 0.0), ("rate", rate, 0.0)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or v <= lo:
            raise InputError(f"{name} must be a finite number > 0, got {v!r}")
    if not isinstance(beta, (int, float, np.floating, np.integer)) or not math.isfinite(beta) or beta < 0:
        raise InputError(f"beta must be a finite number >= 0, got {beta!r}")


def _times(t: Array | Sequence[float] | None, T: int, rate: float) -> np.ndarray:
    if t is None:
        return np.arange(T, dtype=np.float64) / rate
    ts = t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)
    if ts.shape != (T,):
        raise InputError(f"timestamps t must have shape [T] with T={T}, got {tuple(ts.shape)}")
    if T > 1 and not np.all(np.diff(ts) > 0):
        raise InputError("timestamps t must be strictly increasing (seconds)")
    return ts


def one_euro(
    x: Array,
    t: Array | Sequence[float] | None = None,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
    dim: int = 0,
    segments: Segments = None,
    rate: float = 30.0,
    valid: Array | None = None,
) -> Array:
    """Causal One-Euro filter along time, elementwise over the other dims.

    A first-order low-pass whose cutoff grows with the (low-passed) speed:
    ``cutoff = min_cutoff + beta * |dx_hat|``; slow motion is smoothed hard (low jitter),
    fast motion follows with little lag. The state restarts at each shot cut.

    Args:
        x: sequence, numpy array or torch tensor, time on ``dim``.
        t: timestamps in seconds ``[T]`` (pass the real ones for variable frame rate);
            None means ``arange(T) / rate``.
        min_cutoff: minimum cutoff frequency (Hz).
        beta: speed coefficient (per unit of x per second); 0 is a plain low-pass.
        d_cutoff: cutoff of the speed estimate (Hz).
        dim: the time axis.
        segments: shot-cut indices (frame ``c`` starts a new shot).
        rate: frames per second used when ``t`` is None.
        valid: optional ``[T]`` bool mask; invalid frames are interpolated before filtering.

    Returns:
        The filtered sequence, same type and shape.

    Shape:
        - x: ``[..., T, ...]`` with T on ``dim``; t, valid: ``[T]``. Output: like ``x``.
    """
    _check_params(min_cutoff, beta, d_cutoff, rate)
    xt, back = to_time_first(x, dim)
    T = xt.shape[0]
    ts = _times(t, T, rate)
    m = check_valid(valid, T)
    if not m.all():
        xt = fill_invalid(xt, m, segments)

    def run(s: torch.Tensor, a: int, b: int) -> torch.Tensor:
        out = [s[0]]
        dx = torch.zeros_like(s[0])
        for i in range(1, b - a):
            xh, dx = _update(s[i], out[-1], dx, float(ts[a + i] - ts[a + i - 1]), min_cutoff, beta, d_cutoff)
            out.append(xh)
        return torch.stack(out, 0)

    return back(per_segment(xt, segments, run))


class OneEuroFilter:
    """One-Euro filter holding its parameters, for whole sequences or frame-by-frame streaming.

    Args:
        min_cutoff, beta, d_cutoff: see :func:`one_euro`.
        rate: frames per second assumed when no timestamp is given.
        dim: the time axis for :meth:`__call__`.

    Example:
        >>> f = OneEuroFilter(min_cutoff=1.0, beta=0.1)
        >>> y0 = f.step(np.zeros((68, 2)), t=0.0); y1 = f.step(np.ones((68, 2)), t=0.04)
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 rate: float = 30.0, dim: int = 0) -> None:
        _check_params(min_cutoff, beta, d_cutoff, rate)
        self.min_cutoff, self.beta, self.d_cutoff, self.rate, self.dim = min_cutoff, beta, d_cutoff, rate, dim
        self.reset()

    def __repr__(self) -> str:
        return (f"OneEuroFilter(min_cutoff={self.min_cutoff}, beta={self.beta}, d_cutoff={self.d_cutoff}, "
                f"rate={self.rate})")

    def reset(self) -> None:
        """Forget the stream state (call at a shot cut)."""
        self._x: torch.Tensor | None = None
        self._dx: torch.Tensor | None = None
        self._t: float | None = None

    def __call__(self, x: Array, t: Array | Sequence[float] | None = None, segments: Segments = None,
                 valid: Array | None = None) -> Array:
        """Filter a whole sequence (independent of the streaming state)."""
        return one_euro(x, t, self.min_cutoff, self.beta, self.d_cutoff, self.dim, segments, self.rate, valid)

    def step(self, x_t: Array, t: float | None = None) -> Array:
        """Filter one frame of a stream.

        Args:
            x_t: the current frame's values (any shape, fixed over the stream).
            t: its timestamp in seconds; None means the previous one plus ``1 / rate``.

        Returns:
            The filtered frame, same type and shape as ``x_t``.

        Shape:
            - x_t: ``[...]``. Output: like ``x_t``.
        """
        xt, back = to_time_first(x_t if not hasattr(x_t, "shape") else x_t[None], 0, "x_t")
        xt = xt[0]
        if t is None:
            t = 0.0 if self._t is None else self._t + 1.0 / self.rate
        t = float(t)
        if self._x is None:
            self._x, self._dx = xt.clone(), torch.zeros_like(xt)
        else:
            if xt.shape != self._x.shape:
                raise InputError(f"x_t shape {tuple(xt.shape)} differs from the stream's {tuple(self._x.shape)}; "
                                 "call reset() to start a new stream")
            dt = t - self._t
            if not dt > 0:
                raise InputError(f"timestamps must increase: got t={t} after t={self._t}")
            self._x, self._dx = _update(xt.to(self._x.dtype), self._x, self._dx, dt,
                                        self.min_cutoff, self.beta, self.d_cutoff)
        self._t = t
        return back(self._x.clone()[None])[0]
