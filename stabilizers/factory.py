"""Stabilizers built from config dicts (``{'method': 'gaussian', 'sigma': 3}``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from vidinv.errors import VidinvError

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
