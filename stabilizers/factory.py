"""Smoothing of latent codes / edit deltas, and stabilizers built from config dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from vidinv.errors import InputError, VidinvError

from ._common import Array, Segments, check_valid, fill_invalid, to_time_first
from .gaussian import GaussianSmoother, gaussian_smooth
from .one_euro import OneEuroFilter, one_euro
from .savgol import SavGolSmoother, savgol_smooth


@dataclass
class IdentityStabilizer:
    """The ``{'method': 'none'}`` stabilizer: returns a copy (invalid frames interpolated when a mask is given)."""

    dim: int = 0

    def __call__(self, x: Array, segments: Segments = None, valid: Array | None = None) -> Array:
        t, back = to_time_first(x, self.dim)
        m = check_valid(valid, t.shape[0])
        return back(t.clone() if m.all() else fill_invalid(t, m, segments))


# method name -> (class, accepted keyword parameters, functional)
METHODS: dict[str, tuple[type, tuple[str, ...], Callable | None]] = {
    "none": (IdentityStabilizer, ("dim",), None),
    "gaussian": (GaussianSmoother, ("sigma", "dim", "mode", "truncate"), gaussian_smooth),
    "savgol": (SavGolSmoother, ("window", "order", "dim", "mode", "clip"), savgol_smooth),
    "one_euro": (OneEuroFilter, ("min_cutoff", "beta", "d_cutoff", "rate", "dim"), one_euro),
}
ALIASES = {"identity": "none", "off": "none", "gauss": "gaussian", "savitzky_golay": "savgol",
           "oneeuro": "one_euro", "1euro": "one_euro", "one-euro": "one_euro"}


def _method(name: Any) -> str:
    if not isinstance(name, str):
        raise VidinvError(f"stabilizer method must be a string, got {name!r}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METHODS:
        raise VidinvError(f"unknown stabilizer method {name!r}; known: {', '.join(METHODS)}")
    return key


def build_stabilizer(cfg: dict | None) -> Callable[..., Array]:
    """Build a stabilizer from a config dict.

    ``{'method': 'gaussian', 'sigma': 3}``, ``{'method': 'savgol', 'window': 9, 'order': 2}``,
    ``{'method': 'one_euro', 'min_cutoff': 1.0, 'beta': 0.05}``, ``{'method': 'none'}``
    (also ``None`` or ``{}``). The result is called as ``f(x [T, ...], segments=None, valid=None)``.

    Raises:
        VidinvError: unknown method or parameter, or a bad parameter value (one-line message).
    """
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise VidinvError(f"a stabilizer config must be a dict like {{'method': 'gaussian', 'sigma': 3}}, got {cfg!r}")
    params = dict(cfg)
    method = _method(params.pop("method", "none"))
    cls, allowed, _ = METHODS[method]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise VidinvError(f"unknown parameter(s) {unknown} for stabilizer {method!r}; accepted: {list(allowed)}")
    return cls(**params)


def code_smooth(codes: Array, method: str = "gaussian", segments: Segments = None, valid: Array | None = None,
                **params: Any) -> Array:
    """Smooth latent codes (w ``[T,L,sd]``, F ``[T,C,16,16]``) or an edit delta along time.

    Same dispatch as :func:`build_stabilizer`, through the functional forms: e.g.
    ``code_smooth(w_edit - w, 'gaussian', sigma=2)``; strict, so a savgol window longer than
    the sequence raises.

    Args:
        codes: numpy array or torch tensor, time first (or on ``dim=`` in ``params``).
        method: ``'none'``, ``'gaussian'``, ``'savgol'`` or ``'one_euro'``.
        segments: shot-cut indices (frame ``c`` starts a new shot).
        valid: optional ``[T]`` bool mask.
        **params: the method's parameters (``sigma``, ``window``/``order``, ``min_cutoff``/``beta``/...,
            ``t`` timestamps for one_euro).

    Returns:
        The smoothed codes, same type and shape.

    Shape:
        - codes: ``[T, ...]``. Output: like ``codes``.
    """
    key = _method(method)
    cls, allowed, fn = METHODS[key]
    extra = ("t",) if key == "one_euro" else ()
    accepted = tuple(p for p in allowed if p != "clip") + extra
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown} for method {key!r}; accepted: {list(accepted)}")
    if fn is None:
        return IdentityStabilizer(**params)(codes, segments, valid)
    if key == "gaussian" and "sigma" not in params:
        raise InputError("code_smooth(..., 'gaussian') needs sigma=")
    if key == "savgol" and not {"window", "order"} <= set(params):
        raise InputError("code_smooth(..., 'savgol') needs window= and order=")
    return fn(codes, segments=segments, valid=valid, **params)
