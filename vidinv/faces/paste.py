"""Paste rendered faces back into a frame, working only on each face's footprint.

Unaligning, masking and blending over the whole frame costs time and memory in proportion to the frame (a 4K
frame is 8.3 Mpx per face), although only the pixels the crop lands on can change. :func:`paste_faces` warps
each crop into the bounding box of its footprint in the frame (plus a margin the blend needs), blends there
and writes that box back. The result is the whole-frame computation's: exactly outside the box (the
whole-frame path leaves those pixels as they are too), and inside it up to float rounding for alpha and
Poisson blending; Laplacian blending's far-reaching coarse bands are kept inside the box by its wider margin
(see :func:`blend_margin`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vidinv.errors import VidinvError
from vidinv.faces.align import unalign
from vidinv.faces.blend import blend_alpha, blend_laplacian, blend_poisson

METHODS = ("alpha", "laplacian", "poisson")


def blend_margin(method: str, levels: int = 5) -> int:
    """Frame pixels around a crop's footprint that the blend reads or writes.

    Alpha blending changes only the footprint (2 px cover the bilinear fringe); Poisson blending solves inside
    the mask with the frame as boundary (4 px); a Laplacian pyramid of ``levels`` levels spreads each band
    over about ``4 * 2**(levels-1)`` pixels of the finest grid, so its margin is twice that.
    """
    if method not in METHODS:
        raise VidinvError(f"paste_faces: method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "laplacian":
        return 8 * 2 ** (max(int(levels), 1) - 1)
    return 4 if method == "poisson" else 2


def footprint_box(
    M: torch.Tensor | np.ndarray, size: int, frame_hw: tuple[int, int], margin: int = 0, align: int = 1
) -> tuple[int, int, int, int] | None:
    """The frame box ``(y0, y1, x0, x1)`` (half-open) covering the crop's footprint plus ``margin``, clipped
    to the frame; None when it misses the frame. ``align`` rounds the box origin down (and its size up, where
    the frame allows) to multiples of ``align`` so a pyramid's sampling grid matches the whole frame's.

    Args:
        M: the frame->crop matrix ``[3, 3]``.
        size: crop side S.
        frame_hw: ``(H, W)``.
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    Minv = np.linalg.inv(np.asarray(torch.as_tensor(M).double().cpu().numpy(), np.float64).reshape(3, 3))
    s = float(size)
    corners = np.array([[-1, -1, 1], [s, -1, 1], [s, s, 1], [-1, s, 1]], np.float64) @ Minv.T
    if (
        not np.isfinite(corners).all() or (corners[:, 2] <= 1e-12).any()
    ):  # the crop's plane folds over: use it all
        return 0, h, 0, w
    pts = corners[:, :2] / corners[:, 2:]
    x0, y0 = (math.floor(v) - margin for v in pts.min(0))
    x1, y1 = (math.ceil(v) + 1 + margin for v in pts.max(0))
    x0, y0 = max(0, x0 - x0 % align), max(0, y0 - y0 % align)
    x1, y1 = min(w, x0 + -(-(x1 - x0) // align) * align), min(h, y0 + -(-(y1 - y0) // align) * align)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


def _check(frame: np.ndarray, faces: torch.Tensor, masks: torch.Tensor, M) -> torch.Tensor:
    if (
        not isinstance(frame, np.ndarray)
        or frame.dtype != np.uint8
        or frame.ndim != 3
        or frame.shape[-1] != 3
    ):
        raise VidinvError(
            f"paste_faces: frame must be uint8 [H, W, 3], got {getattr(frame, 'dtype', type(frame))} "
            f"{getattr(frame, 'shape', '')}"
        )
    if (
        not isinstance(faces, torch.Tensor)
        or faces.ndim != 4
        or faces.shape[1] != 3
        or faces.shape[2] != faces.shape[3]
    ):
        raise VidinvError(
            f"paste_faces: faces must be a tensor [N, 3, S, S], got {getattr(faces, 'shape', type(faces))}"
        )
    n, s = faces.shape[0], faces.shape[-1]
    if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != (n, 1, s, s):
        raise VidinvError(
            f"paste_faces: masks must be a tensor [{n}, 1, {s}, {s}], got "
            f"{getattr(masks, 'shape', type(masks))}"
        )
    M = torch.as_tensor(M)
    if tuple(M.shape) != (n, 3, 3):
        raise VidinvError(f"paste_faces: M must be [{n}, 3, 3] frame->crop matrices, got {tuple(M.shape)}")
    return M


def _blend(
    method: str, src: torch.Tensor, dst: torch.Tensor, mask: torch.Tensor, levels: int, threshold: float
) -> torch.Tensor:
    if method == "poisson":
        return torch.as_tensor(blend_poisson(src, dst, mask, threshold=threshold))
    if method == "laplacian":
        return blend_laplacian(src, dst, mask, levels=levels)
    return blend_alpha(src, dst, mask)


@torch.no_grad()
def paste_faces(
    frame: np.ndarray,
    faces: torch.Tensor,
    masks: torch.Tensor,
    M: torch.Tensor | np.ndarray,
    method: str = "alpha",
    levels: int = 5,
    threshold: float = 0.5,
    region: bool = True,
) -> np.ndarray:
    """Unalign each face crop and its mask into the frame and blend it there, one face after the other.

    The same computation as unaligning face and mask over the whole frame (:func:`vidinv.faces.align.unalign`,
    the mask multiplied by the crop's validity), blending with :mod:`vidinv.faces.blend` and rounding to
    uint8, done on the box of each crop's footprint (see the module docstring). Faces whose matrix is not
    finite (no valid landmarks) are skipped. Runs on ``faces``' device; the frame is copied, not modified.

    Args:
        frame: the frame, uint8 RGB.
        faces: rendered face crops in [0, 1].
        masks: blend weights in crop space, in [0, 1] (e.g. from :mod:`vidinv.faces.mask`).
        M: frame->crop matrices (the ones the faces were aligned with).
        method: ``'alpha'``, ``'laplacian'`` or ``'poisson'``.
        levels: Laplacian pyramid levels.
        threshold: Poisson clone-region level of the mask.
        region: False computes over the whole frame (the reference path; slow on large frames).

    Returns:
        The new frame, uint8 ``[H, W, 3]``.

    Shape:
        - frame: ``[H, W, 3]``; faces: ``[N, 3, S, S]``; masks: ``[N, 1, S, S]``; M: ``[N, 3, 3]``
    """
    M = _check(frame, faces, masks, M)
    margin = blend_margin(method, levels)
    align = 2 ** (max(int(levels), 1) - 1) if method == "laplacian" else 1
    out = frame.copy()
    h, w = out.shape[:2]
    size = faces.shape[-1]
    for i in range(faces.shape[0]):
        Mi = M[i]
        if not torch.isfinite(Mi).all():
            continue
        box = footprint_box(Mi, size, (h, w), margin, align) if region else (0, h, 0, w)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        shift = torch.tensor([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        Mr = (Mi.double().cpu() @ shift).to(faces.device)[None]  # box pixel -> frame pixel -> crop pixel
        src = torch.cat([faces[i : i + 1], masks[i : i + 1].to(faces)], 1).float()
        warped, valid = unalign(src, Mr, (y1 - y0, x1 - x0))  # one warp for face and mask
        dst = torch.from_numpy(out[y0:y1, x0:x1]).to(faces.device).permute(2, 0, 1)[None].float() / 255.0
        res = _blend(method, warped[:, :3], dst, warped[:, 3:] * valid, levels, threshold)
        out[y0:y1, x0:x1] = (res[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return out
