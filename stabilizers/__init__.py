"""Temporal filters over [T, ...] sequences: functional + small configurable objects. No I/O, no models.

Every filter takes numpy arrays or torch tensors with time on ``dim`` (0 by default), returns the
same type, never mixes frames across shot cuts (``segments``: cut indices) and can ignore invalid
frames (``valid``: ``[T]`` mask).

- :func:`gaussian_smooth` / :class:`GaussianSmoother`: zero-phase Gaussian, reflect/nearest edges.
- :func:`savgol_smooth` / :class:`SavGolSmoother`: Savitzky-Golay (scipy), zero phase.
- :func:`one_euro` / :class:`OneEuroFilter`: causal One-Euro, timestamps for VFR, streaming ``step``.
- :func:`lk_refine` / :class:`FlowLandmarkRefiner`: Lucas-Kanade landmark refinement.
- :class:`GeometryStabilizer`: landmarks (sigma 3) and crop quads (sigma 6), as the official pipeline.
- :func:`code_smooth`, :func:`build_stabilizer`: latent codes / edit deltas; filters from config dicts.
"""

from .factory import IdentityStabilizer, build_stabilizer, code_smooth
from .flow import FlowLandmarkRefiner, lk_refine
from .gaussian import GaussianSmoother, gaussian_kernel, gaussian_smooth
from .geometry import GeometryStabilizer
from .one_euro import OneEuroFilter, one_euro
from .savgol import SavGolSmoother, savgol_smooth

__all__ = [
    "FlowLandmarkRefiner",
    "GaussianSmoother",
    "GeometryStabilizer",
    "IdentityStabilizer",
    "OneEuroFilter",
    "SavGolSmoother",
    "build_stabilizer",
    "code_smooth",
    "gaussian_kernel",
    "gaussian_smooth",
    "lk_refine",
    "one_euro",
    "savgol_smooth",
]
