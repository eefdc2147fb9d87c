"""Temporal filters over [T, ...] sequences: functional + small configurable objects. No I/O, no models.

Every filter takes numpy arrays or torch tensors with time on ``dim`` (0 by default), returns the
same type, never mixes frames across shot cuts (``segments``: cut indices) and can ignore invalid
frames (``valid``: ``[T]`` mask).

- :func:`gaussian_smooth` / :class:`GaussianSmoother`: zero-phase Gaussian, reflect/nearest edges.
- :func:`savgol_smooth` / :class:`SavGolSmoother`: Savitzky-Golay (scipy), zero phase.
- :func:`one_euro` / :class:`OneEuroFilter`: causal One-Euro, timestamps for VFR, streaming ``step``.
- :func:`lk_refine` / :class:`FlowLandmarkRefiner`: Lucas-Kanade landmark refinement.
- :func:`build_stabilizer`: a filter from a config dict (landmarks, quads, codes, edit deltas).
- :func:`valid_runs`, :func:`segment_bounds`: a clip split into shots / runs of valid frames at cuts.
"""

from .factory import IdentityStabilizer, build_stabilizer
from .flow import FlowLandmarkRefiner, lk_refine
from .gaussian import GaussianSmoother, gaussian_kernel, gaussian_smooth
from .one_euro import OneEuroFilter, one_euro
from .runs import segment_bounds, valid_runs
from .savgol import SavGolSmoother, savgol_smooth

__all__ = [
    "FlowLandmarkRefiner",
    "GaussianSmoother",
    "IdentityStabilizer",
    "OneEuroFilter",
    "SavGolSmoother",
    "build_stabilizer",
    "gaussian_kernel",
    "gaussian_smooth",
    "lk_refine",
    "one_euro",
    "savgol_smooth",
    "segment_bounds",
    "valid_runs",
]
