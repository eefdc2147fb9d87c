"""FFHQ-style face alignment: landmarks -> crop quad -> 3x3 matrix -> one batched warp (and its exact inverse).

The quad follows the FFHQ dataset script (``recreate_aligned_images`` / ``align_face`` in FFHQ, pSp and STIT):
eyes are the means of the 68-point eye contours, the mouth the mean of the two outer mouth corners, and the quad
is an oriented square around ``eye_avg + 0.1 * eye_to_mouth``. FFHQ renders it with PIL's QUAD transform, whose
corner order is (top-left, bottom-left, bottom-right, top-right); :func:`quad_to_matrix` keeps that order.

Pixel convention: integer coordinates are pixel centres (as landmark detectors report them) and warps use
``align_corners=True``. The matrix maps ``quad[0..3]`` to ``(0,0), (0,S), (S,S), (S,0)``; FFHQ's PIL path differs
from this by half an output pixel (negligible at S=1024: 0.05% of the crop).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as Fnn

from vidinv.errors import VidinvError

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def _as_torch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, np.float64)) if isinstance(x, np.ndarray) else x


def _like(y: torch.Tensor, ref: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if isinstance(ref, np.ndarray):
        dtype = ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64
        return y.detach().cpu().numpy().astype(dtype, copy=False)
    return y


def _rot90(v: torch.Tensor) -> torch.Tensor:
    """FFHQ's ``np.flipud(v) * [-1, 1]``: (vx, vy) -> (-vy, vx)."""
    return torch.stack([-v[..., 1], v[..., 0]], -1)


def ffhq_quad(lm: ArrayLike) -> ArrayLike:
    """The FFHQ crop quad of 68-point landmarks (vectorised over leading dimensions).

    Args:
        lm: 68 iBUG landmarks in frame pixels, numpy or torch.

    Returns:
        The quad corners (top-left, bottom-left, bottom-right, top-right) in frame pixels, same type as ``lm``
        (numpy float inputs keep their dtype; torch keeps dtype/device and is differentiable). Degenerate
        landmarks (coincident eyes and mouth, e.g. the zeros of an invalid frame) give NaN quads.

    Shape:
        - lm: ``[..., 68, 2]``
        - output: ``[..., 4, 2]``
    """
    if lm.ndim < 2 or tuple(lm.shape[-2:]) != (68, 2):
        raise VidinvError(f"ffhq_quad: expected landmarks [..., 68, 2], got {tuple(lm.shape)}")
    t = _as_torch(lm)
    if not t.is_floating_point():
        t = t.double()
    eye_left = t[..., 36:42, :].mean(-2)
    eye_right = t[..., 42:48, :].mean(-2)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (t[..., 48, :] + t[..., 54, :]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / torch.linalg.norm(x, dim=-1, keepdim=True)
    scale = torch.maximum(torch.linalg.norm(eye_to_eye, dim=-1) * 2.0, torch.linalg.norm(eye_to_mouth, dim=-1) * 1.8)
    x = x * scale[..., None]
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    quad = torch.stack([c - x - y, c - x + y, c + x + y, c + x - y], -2)  # [..., 4, 2]
    return _like(quad, lm)


def crop_corners(size: int) -> torch.Tensor:
    """The crop corners the quad maps to, in FFHQ's order. Shape: ``[4, 2]`` float64."""
    s = float(size)
    return torch.tensor([[0.0, 0.0], [0.0, s], [s, s], [s, 0.0]], dtype=torch.float64)


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Exact 4-point homographies ``src -> dst`` ([B,4,2] each, float64) by an 8x8 linear solve."""
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # [B,4,8]
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    A = torch.cat([rows_u, rows_v], -2)  # [B,8,8]
    b = torch.cat([u, v], -1)  # [B,8]
    h, info = torch.linalg.solve_ex(A, b[..., None])
    h = torch.cat([h[..., 0], torch.ones_like(h[..., :1, 0])], -1)
    h = torch.where((info != 0)[..., None], torch.full_like(h, float("nan")), h)  # degenerate -> NaN
    return h.reshape(*h.shape[:-1], 3, 3)


def quad_to_matrix(quad: ArrayLike, size: int) -> ArrayLike:
    """The 3x3 matrices that map frame pixels to crop pixels (the quad corners onto the crop corners).

    Args:
        quad: crop quads in frame pixels, FFHQ corner order (see :func:`ffhq_quad`).
        size: the square crop side S in pixels.

    Returns:
        Homographies (computed in float64), same type as ``quad``; torch outputs keep ``quad``'s dtype.
        A degenerate quad (collapsed, or NaN as :func:`ffhq_quad` gives for all-zero landmarks) gives a NaN matrix.

    Shape:
        - quad: ``[B, 4, 2]`` (or ``[4, 2]``)
        - output: ``[B, 3, 3]`` (or ``[3, 3]``)
    """
    if quad.ndim not in (2, 3) or tuple(quad.shape[-2:]) != (4, 2):
        raise VidinvError(f"quad_to_matrix: expected quads [B, 4, 2], got {tuple(quad.shape)}")
    if int(size) <= 0:
        raise VidinvError(f"quad_to_matrix: size must be positive, got {size}")
    q = _as_torch(quad)
    dtype = q.dtype if q.is_floating_point() else torch.float64
    q64 = q.double()
    single = q64.ndim == 2
    q64 = q64[None] if single else q64
    dst = crop_corners(int(size)).to(q64.device).expand_as(q64)
    M = _homography(q64, dst)
    M = M[0] if single else M
    if isinstance(quad, torch.Tensor):
        return M.to(dtype)
    return _like(M, quad)


def _check_images(x: torch.Tensor, M: torch.Tensor, fn: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise VidinvError(f"{fn}: expected an image tensor [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not isinstance(M, torch.Tensor) or M.ndim != 3 or tuple(M.shape[1:]) != (3, 3) or len(M) != len(x):
        raise VidinvError(f"{fn}: expected matrices [B, 3, 3] with B={len(x)}, got {getattr(M, 'shape', type(M))}")
    if not x.is_floating_point():
        raise VidinvError(f"{fn}: images must be float, got {x.dtype}")


def _shrink_factor(M: torch.Tensor) -> int:
    """Largest integer factor by which every frame of the batch can be box-downscaled before warping
    without dropping below the crop's sampling rate (FFHQ's 'shrink' step against aliasing)."""
    det = torch.linalg.det(M[:, :2, :2].double() / M[:, 2:3, 2:3].double()).abs()  # crop px^2 per frame px^2
    frame_px_per_crop_px = torch.rsqrt(det.clamp_min(1e-12))
    return max(1, int(torch.floor(frame_px_per_crop_px.min() / 2).item()))


def align_faces(frames: torch.Tensor, M: torch.Tensor, size: int, padding_mode: str = "reflection",
                antialias: bool = True) -> torch.Tensor:
    """Warp each frame to its aligned face crop with one batched ``kornia`` perspective warp (bilinear).

    Args:
        frames: float frames (any value range, e.g. [-1, 1] or [0, 1]).
        M: frame->crop matrices from :func:`quad_to_matrix`.
        size: crop side S.
        padding_mode: what fills crop pixels outside the frame: ``'reflection'`` (default; FFHQ pads by
            reflecting the frame), ``'border'`` (edge replicate) or ``'zeros'``.
        antialias: when every face of the batch is at least 4x larger in the frame than in the crop, box-downscale
            the frames by an integer factor first (the FFHQ 'shrink' step), so the bilinear warp does not alias.

    Returns:
        The crops.

    Shape:
        - frames: ``[B, C, H, W]``; M: ``[B, 3, 3]``
        - output: ``[B, C, S, S]``
    """
    from kornia.geometry.transform import warp_perspective

    _check_images(frames, M, "align_faces")
    if padding_mode not in ("reflection", "border", "zeros"):
        raise VidinvError(f"align_faces: padding_mode must be reflection|border|zeros, got {padding_mode!r}")
    M = M.to(device=frames.device, dtype=torch.float64)
    f = _shrink_factor(M) if antialias else 1
    if f > 1:
        frames = Fnn.avg_pool2d(frames, f, f, ceil_mode=False)
        # small pixel j covers frame pixels [f*j, f*j+f-1]: frame u = f*j + (f-1)/2
        T = torch.tensor([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1]], dtype=M.dtype, device=M.device)
        M = M @ T
    return warp_perspective(frames, M.to(frames.dtype), (int(size), int(size)), mode="bilinear",
                            padding_mode=padding_mode, align_corners=True)


def unalign(crops: torch.Tensor, M: torch.Tensor, frame_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste crops back into frame geometry: the exact inverse warp of :func:`align_faces` (matrix ``M^-1``).

    Args:
        crops: float crops (any channel count: images or masks).
        M: the same frame->crop matrices used to align.
        frame_size: ``(H, W)`` of the frames.

    Returns:
        ``(warped, valid)``: the crops in frame geometry (zeros outside the quad) and a soft validity mask that is 1
        where a frame pixel maps inside the crop and falls to 0 across a one-pixel border.

    Shape:
        - crops: ``[B, C, S, S]``; M: ``[B, 3, 3]``
        - output: ``[B, C, H, W]`` and ``[B, 1, H, W]``
    """
    from kornia.geometry.transform import warp_perspective

    _check_images(crops, M, "unalign")
    h, w = (int(v) for v in frame_size)
    if h <= 0 or w <= 0:
        raise VidinvError(f"unalign: frame_size must be positive (H, W), got {frame_size}")
    Minv = torch.linalg.inv(M.to(device=crops.device, dtype=torch.float64)).to(crops.dtype)
    src = torch.cat([crops, torch.ones_like(crops[:, :1])], 1)
    out = warp_perspective(src, Minv, (h, w), mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, :-1], out[:, -1:].clamp(0, 1)


def transform_points(points: ArrayLike, M: ArrayLike) -> ArrayLike:
    """Apply 3x3 homographies to points (e.g. landmarks into crop pixels).

    Shape:
        - points: ``[B, N, 2]``; M: ``[B, 3, 3]``
        - output: ``[B, N, 2]``
    """
    if points.shape[-1] != 2 or tuple(M.shape[-2:]) != (3, 3):
        raise VidinvError(f"transform_points: expected points [..., N, 2] and M [..., 3, 3], got "
                          f"{tuple(points.shape)} and {tuple(M.shape)}")
    p, m = _as_torch(points), _as_torch(M)
    dt = torch.promote_types(p.dtype, m.dtype) if p.is_floating_point() else torch.float64
    p, m = p.to(dt), m.to(dt)
    hom = torch.cat([p, torch.ones_like(p[..., :1])], -1) @ m.transpose(-1, -2)
    return _like(hom[..., :2] / hom[..., 2:3], points)
