"""Lucas-Kanade refinement of detected landmarks: propagate the previous frame's points by
optical flow and blend them with this frame's detections.

Frame by frame, the previous refined points are tracked into the current frame with
``cv2.calcOpticalFlowPyrLK`` and blended with the current detections:
``p = (1 - a) * detected + a * tracked`` with
``a = max_weight * exp(-d^2 / (2 sigma_px^2))``. With ``reference='tracked'`` (default),
``d`` is the tracked-detected distance: small disagreements (detector jitter) follow the
flow, large ones (motion the flow missed, occlusion) follow the detector, so the chain
cannot drift. ``reference='previous'`` is the official Feature-Style video code's rule:
``d`` is the distance from the previous refined point to the detection (how far the point
moved), with ``sigma_px = sqrt(50)`` (their ``exp(-d^2 / 100)``), ``max_weight=1`` and
``win`` a quarter of the eye distance; see :meth:`FlowLandmarkRefiner.official`.
A point whose track failed (LK status 0 or error above ``max_err``) takes its detection.
The chain restarts at each shot cut and after each invalid frame (invalid frames keep
their input values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vidinv.errors import InputError

from ._common import Array, Segments, check_valid, segment_bounds, to_time_first


REFERENCES = ("tracked", "previous")


def _check(frames: np.ndarray, lm: torch.Tensor, win: int | None, levels: int, max_weight: float,
           sigma_px: float | None, max_err: float, reference: str = "tracked", iters: int = 30,
           eps: float = 0.01) -> None:
    if frames.dtype != np.uint8 or not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)):
        raise InputError(f"frames_gray must be uint8 [T,H,W] (or [T,H,W,3]), got {frames.dtype} {tuple(frames.shape)}")
    if lm.ndim != 3 or lm.shape[-1] != 2:
        raise InputError(f"landmarks must be [T,N,2], got {tuple(lm.shape)}")
    if lm.shape[0] != frames.shape[0]:
        raise InputError(f"frames_gray has {frames.shape[0]} frames but landmarks have {lm.shape[0]}")
    if win is not None and (not isinstance(win, (int, np.integer)) or win < 3):
        raise InputError(f"win must be an integer >= 3 (pixels) or None (auto), got {win!r}")
    if not isinstance(levels, (int, np.integer)) or levels < 0:
        raise InputError(f"levels must be an integer >= 0, got {levels!r}")
    if not 0 <= max_weight <= 1:
        raise InputError(f"max_weight must be in [0, 1], got {max_weight!r}")
    if sigma_px is not None and not sigma_px > 0:
        raise InputError(f"sigma_px must be > 0 or None (auto), got {sigma_px!r}")
    if not max_err > 0:
        raise InputError(f"max_err must be > 0, got {max_err!r}")
    if reference not in REFERENCES:
        raise InputError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if not (isinstance(iters, (int, np.integer)) and iters >= 1 and eps > 0):
        raise InputError(f"LK stopping criteria need iters >= 1 and eps > 0, got iters={iters!r}, eps={eps!r}")


def _auto_sigma(pts: np.ndarray) -> float:
    """Agreement scale in pixels: 5% of the point cloud's size (about 1/20 of a face)."""
    ext = pts.max(0) - pts.min(0)
    return max(1.0, 0.05 * float(math.sqrt(max(ext[0] * ext[1], 1.0))))


def _auto_win(pts: np.ndarray) -> int:
    """LK window: a quarter of the eye distance for 68-point landmarks (as the official FS video
    code), else a tenth of the point cloud's size; at least 9 pixels."""
    if len(pts) == 68:
        size = float(np.hypot(*(pts[42:48].mean(0) - pts[36:42].mean(0)))) / 4
    else:
        ext = pts.max(0) - pts.min(0)
        size = 0.1 * float(math.sqrt(max(ext[0] * ext[1], 1.0)))
    return max(9, int(size))


def _lk_track(prev_frame: np.ndarray, frame: np.ndarray, prev_pts: np.ndarray, win: int, levels: int, crit,
              max_err: float) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N,2]`` of one frame tracked into the next with pyramidal LK: ``(tracked [N,2], ok [N])``."""
    import cv2

    nxt, status, err = cv2.calcOpticalFlowPyrLK(prev_frame, frame, prev_pts.astype(np.float32).reshape(-1, 1, 2),
                                                None, winSize=(win, win), maxLevel=levels, criteria=crit)
    tracked = nxt.reshape(-1, 2).astype(np.float64)
    ok = (status.reshape(-1) == 1) & (err.reshape(-1) <= max_err) & np.isfinite(tracked).all(1)
    return tracked, ok


def lk_refine(
    frames_gray: Array,
    landmarks: Array,
    win: int | None = 21,
    levels: int = 3,
    max_weight: float = 0.8,
    sigma_px: float | None = None,
    max_err: float = 30.0,
    segments: Segments = None,
    valid: Array | None = None,
    reference: str = "tracked",
    iters: int = 30,
    eps: float = 0.01,
) -> Array:
    """Refine per-frame landmark detections with pyramidal Lucas-Kanade optical flow.

    The rule (``reference``, the weight ``a``, the restarts at cuts) is in the module docstring.

    Args:
        frames_gray: grayscale frames, uint8 (RGB ``[T,H,W,3]`` also works, as in the official code).
        landmarks: detected points in pixel (x, y), numpy or torch.
        win: LK window side in pixels; None = a quarter of the eye distance (68 points).
        levels: LK pyramid levels above the base.
        max_weight: weight of the tracked point when d = 0, in [0, 1] (1 can drift).
        sigma_px: agreement scale in pixels; None = 5% of each frame's point-cloud size.
        max_err: LK error above which a track is rejected.
        segments: shot-cut indices (frame ``c`` starts a new shot).
        valid: optional ``[T]`` bool mask of frames whose detections exist.
        reference: ``'tracked'`` or ``'previous'``, what ``d`` measures (see above).
        iters, eps: LK stopping criteria (iterations, epsilon).

    Returns:
        Refined landmarks, same type, shape and dtype as ``landmarks``.

    Shape:
        - frames_gray: ``[T, H, W]`` or ``[T, H, W, 3]``; landmarks: ``[T, N, 2]``; valid: ``[T]``.
        - Output: ``[T, N, 2]``.
    """
    import cv2

    frames = frames_gray.detach().cpu().numpy() if isinstance(frames_gray, torch.Tensor) else np.asarray(frames_gray)
    frames = np.ascontiguousarray(frames)
    lm_t, back = to_time_first(landmarks, 0, "landmarks")
    _check(frames, lm_t, win, levels, max_weight, sigma_px, max_err, reference, iters, eps)
    T = lm_t.shape[0]
    m = check_valid(valid, T)
    det = lm_t.detach().cpu().double().numpy()
    out = det.copy()
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iters), float(eps))
    for a, b in segment_bounds(T, segments):
        for i in range(a + 1, b):
            if not (m[i] and m[i - 1]):
                continue
            k = win if win is not None else _auto_win(det[i])
            tracked, ok = _lk_track(frames[i - 1], frames[i], out[i - 1], k, levels, crit, max_err)
            s = sigma_px if sigma_px is not None else _auto_sigma(det[i])
            d2 = (((tracked if reference == "tracked" else out[i - 1]) - det[i]) ** 2).sum(1)
            w = np.where(ok, max_weight * np.exp(-d2 / (2 * s * s)), 0.0)[:, None]
            out[i] = np.where(w > 0, (1 - w) * det[i] + w * np.nan_to_num(tracked), det[i])
    return back(torch.from_numpy(out).to(dtype=lm_t.dtype, device=lm_t.device))


@dataclass
class FlowLandmarkRefiner:
    """Lucas-Kanade landmark refinement holding its parameters; calls :func:`lk_refine`.

    Accepts RGB frames ``[T,H,W,3]`` too (converted to gray).
    """

    win: int | None = 21
    levels: int = 3
    max_weight: float = 0.8
    sigma_px: float | None = None
    max_err: float = 30.0
    reference: str = "tracked"
    iters: int = 30
    eps: float = 0.01

    def __post_init__(self) -> None:
        _check(np.zeros((1, 1, 1), np.uint8), torch.zeros(1, 1, 2), self.win, self.levels, self.max_weight,
               self.sigma_px, self.max_err, self.reference, self.iters, self.eps)

    @classmethod
    def official(cls) -> "FlowLandmarkRefiner":
        """The official Feature-Style video alignment's settings: window = eye distance / 4,
        5 pyramid levels, criteria (10 iterations, 0.03), weight ``exp(-d^2 / 100)`` on the
        distance from the previous refined point to the detection. (Failed tracks still fall
        back to the detection here.)"""
        return cls(win=None, levels=5, max_weight=1.0, sigma_px=math.sqrt(50.0), max_err=float("inf"),
                   reference="previous", iters=10, eps=0.03)

    def __call__(self, frames: Array, landmarks: Array, segments: Segments = None,
                 valid: Array | None = None) -> Array:
        f = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if f.ndim == 4 and f.shape[-1] == 3 and f.dtype == np.uint8:
            f = (f.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5).astype(np.uint8)
        return lk_refine(f, landmarks, self.win, self.levels, self.max_weight, self.sigma_px, self.max_err,
                         segments, valid, self.reference, self.iters, self.eps)
