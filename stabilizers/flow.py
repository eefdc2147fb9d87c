"""Lucas-Kanade refinement of detected landmarks: propagate the previous frame's points by
optical flow and blend them with this frame's detections."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vidinv.errors import InputError

from ._common import Array, Segments, check_valid, segment_bounds, to_time_first


def _check(frames: np.ndarray, lm: torch.Tensor, win: int, levels: int, max_weight: float,
           sigma_px: float | None, max_err: float) -> None:
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames_gray must be uint8 [T,H,W], got {frames.dtype} {tuple(frames.shape)}")
    if lm.ndim != 3 or lm.shape[-1] != 2:
        raise InputError(f"landmarks must be [T,N,2], got {tuple(lm.shape)}")
    if lm.shape[0] != frames.shape[0]:
        raise InputError(f"frames_gray has {frames.shape[0]} frames but landmarks have {lm.shape[0]}")
    if not isinstance(win, (int, np.integer)) or win < 3:
        raise InputError(f"win must be an integer >= 3 (pixels), got {win!r}")
    if not isinstance(levels, (int, np.integer)) or levels < 0:
        raise InputError(f"levels must be an integer >= 0, got {levels!r}")
    if not 0 <= max_weight < 1:
        raise InputError(f"max_weight must be in [0, 1) (1 would ignore the detections), got {max_weight!r}")
    if sigma_px is not None and not sigma_px > 0:
        raise InputError(f"sigma_px must be > 0 or None (auto), got {sigma_px!r}")
    if not max_err > 0:
        raise InputError(f"max_err must be > 0, got {max_err!r}")


def _auto_sigma(pts: np.ndarray) -> float:
    """Agreement scale in pixels: 5% of the point cloud's size (about 1/20 of a face)."""
    ext = pts.max(0) - pts.min(0)
    return max(1.0, 0.05 * float(math.sqrt(max(ext[0] * ext[1], 1.0))))


def lk_refine(
    frames_gray: Array,
    landmarks: Array,
    win: int = 21,
    levels: int = 3,
    max_weight: float = 0.8,
    sigma_px: float | None = None,
    max_err: float = 30.0,
    segments: Segments = None,
    valid: Array | None = None,
) -> Array:
    """Refine per-frame landmark detections with pyramidal Lucas-Kanade optical flow.

    Frame by frame, the previous refined points are tracked into the current frame with
    ``cv2.calcOpticalFlowPyrLK`` and blended with the current detections:
    ``p = (1 - a) * detected + a * tracked`` with
    ``a = max_weight * exp(-d^2 / (2 sigma_px^2))``, ``d`` the tracked-detected distance.
    Small disagreements (detector jitter) follow the flow; large ones (real motion the flow
    missed, occlusion) follow the detector, so there is no drift. A point whose track failed
    (LK status 0 or error above ``max_err``) takes its detection. The chain restarts at each
    shot cut and after each invalid frame (invalid frames keep their input values).

    Args:
        frames_gray: grayscale frames, uint8.
        landmarks: detected points in pixel (x, y), numpy or torch.
        win: LK window side in pixels.
        levels: LK pyramid levels above the base.
        max_weight: weight of the tracked point when it agrees with the detection, in [0, 1).
        sigma_px: agreement scale in pixels; None = 5% of each frame's point-cloud size.
        max_err: LK error above which a track is rejected.
        segments: shot-cut indices (frame ``c`` starts a new shot).
        valid: optional ``[T]`` bool mask of frames whose detections exist.

    Returns:
        Refined landmarks, same type, shape and dtype as ``landmarks``.

    Shape:
        - frames_gray: ``[T, H, W]``; landmarks: ``[T, N, 2]``; valid: ``[T]``. Output: ``[T, N, 2]``.
    """
    import cv2

    frames = frames_gray.detach().cpu().numpy() if isinstance(frames_gray, torch.Tensor) else np.asarray(frames_gray)
    lm_t, back = to_time_first(landmarks, 0, "landmarks")
    _check(frames, lm_t, win, levels, max_weight, sigma_px, max_err)
    T = lm_t.shape[0]
    m = check_valid(valid, T)
    det = lm_t.detach().cpu().double().numpy()
    out = det.copy()
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    for a, b in segment_bounds(T, segments):
        for i in range(a + 1, b):
            if not (m[i] and m[i - 1]):
                continue
            prev = out[i - 1].astype(np.float32).reshape(-1, 1, 2)
            nxt, status, err = cv2.calcOpticalFlowPyrLK(
                frames[i - 1], frames[i], prev, None, winSize=(win, win), maxLevel=levels, criteria=crit)
            tracked = nxt.reshape(-1, 2).astype(np.float64)
            ok = (status.reshape(-1) == 1) & (err.reshape(-1) <= max_err) & np.isfinite(tracked).all(1)
            s = sigma_px if sigma_px is not None else _auto_sigma(det[i])
            d2 = ((tracked - det[i]) ** 2).sum(1)
            w = np.where(ok, max_weight * np.exp(-d2 / (2 * s * s)), 0.0)[:, None]
            out[i] = np.where(w > 0, (1 - w) * det[i] + w * np.nan_to_num(tracked), det[i])
    return back(torch.from_numpy(out).to(dtype=lm_t.dtype, device=lm_t.device))


@dataclass
class FlowLandmarkRefiner:
    """Lucas-Kanade landmark refinement holding its parameters; calls :func:`lk_refine`.

    Accepts RGB frames ``[T,H,W,3]`` too (converted to gray).
    """

    win: int = 21
    levels: int = 3
    max_weight: float = 0.8
    sigma_px: float | None = None
    max_err: float = 30.0

    def __post_init__(self) -> None:
        _check(np.zeros((1, 1, 1), np.uint8), torch.zeros(1, 1, 2), self.win, self.levels, self.max_weight,
               self.sigma_px, self.max_err)

    def __call__(self, frames: Array, landmarks: Array, segments: Segments = None,
                 valid: Array | None = None) -> Array:
        f = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if f.ndim == 4 and f.shape[-1] == 3 and f.dtype == np.uint8:
            f = (f.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5).astype(np.uint8)
        return lk_refine(f, landmarks, self.win, self.levels, self.max_weight, self.sigma_px, self.max_err,
                         segments, valid)
