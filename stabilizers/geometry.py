"""Face-geometry stabilization: landmarks and crop quads smoothed over time, gaps filled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vidinv.errors import InputError

from ._common import Array, Segments
from .gaussian import _check_sigma, gaussian_smooth


def _check_points(x: Array, n: int | None, name: str) -> None:
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 3 or shape[-1] != 2 or (n is not None and shape[1] != n):
        want = f"[T,{n},2]" if n is not None else "[T,N,2]"
        raise InputError(f"{name} must be {want}, got shape {shape}")


@dataclass
class GeometryStabilizer:
    """Smooths landmarks and crop quads with the official video pipeline's Gaussian sigmas.

    Landmarks get ``landmark_sigma`` (3 frames), quads twice that (6 frames) by default.
    Invalid frames (``valid`` False) are ignored by the filter and filled from the valid
    ones around them (interpolated where no valid frame is in reach); shots are never mixed.

    Args:
        landmark_sigma: Gaussian sigma (frames) on landmarks; 0 disables.
        quad_sigma: Gaussian sigma (frames) on quads; 0 disables.
        mode: edge handling, ``'reflect'`` or ``'nearest'``.
        quad_fn: landmarks ``[T,68,2]`` -> quads ``[T,4,2]``, used when :meth:`__call__` gets no
            quads; None = ``vidinv.faces.align.ffhq_quad``.

    Example:
        >>> lm_s, quads_s = GeometryStabilizer()(lm, quads, valid=valid, segments=cuts)
    """

    landmark_sigma: float = 3.0
    quad_sigma: float = 6.0
    mode: str = "reflect"
    quad_fn: Callable[[Array], Array] | None = None

    def __post_init__(self) -> None:
        _check_sigma(self.landmark_sigma, self.mode, 4.0)
        _check_sigma(self.quad_sigma, self.mode, 4.0)

    def smooth_landmarks(self, landmarks: Array, valid: Array | None = None, segments: Segments = None) -> Array:
        """Shape: landmarks ``[T,N,2]`` (68 for dlib), valid ``[T]`` -> ``[T,N,2]``."""
        _check_points(landmarks, None, "landmarks")
        return gaussian_smooth(landmarks, self.landmark_sigma, 0, segments, self.mode, valid=valid)

    def smooth_quads(self, quads: Array, valid: Array | None = None, segments: Segments = None) -> Array:
        """Shape: quads ``[T,4,2]``, valid ``[T]`` -> ``[T,4,2]``."""
        _check_points(quads, 4, "quads")
        return gaussian_smooth(quads, self.quad_sigma, 0, segments, self.mode, valid=valid)

    def __call__(self, landmarks: Array, quads: Array | None = None, valid: Array | None = None,
                 segments: Segments = None) -> tuple[Array, Array]:
        """Smooth landmarks, then quads (computed from the smoothed landmarks when not given).

        Returns:
            ``(landmarks [T,N,2], quads [T,4,2])``, same type as the inputs.
        """
        lm = self.smooth_landmarks(landmarks, valid, segments)
        if quads is None:
            fn = self.quad_fn
            if fn is None:
                from vidinv.faces.align import ffhq_quad as fn
            quads = fn(lm)
        if tuple(quads.shape[:1]) != tuple(landmarks.shape[:1]):
            raise InputError(f"quads have {quads.shape[0]} frames but landmarks have {landmarks.shape[0]}")
        return lm, self.smooth_quads(quads, valid, segments)
