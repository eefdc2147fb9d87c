"""Blend masks in crop space: the landmark convex hull (with the forehead) or face-parsing classes, feathered."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from vidinv.errors import VidinvError

# CelebAMask-HQ / BiSeNet (face-parsing.PyTorch) label indices
PARSING_LABELS = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                  "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
# skin, brows, eyes, glasses, nose, mouth, lips (ears, neck, hair, hat and cloth are left to the frame)
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soften mask edges with a Gaussian blur (kornia) of standard deviation ``radius / 2``.

    Args:
        mask: masks in [0, 1].
        radius: feather radius in pixels (0 returns the mask unchanged).

    Shape:
        - mask: ``[B, C, H, W]``
        - output: ``[B, C, H, W]``, values in [0, 1]
    """
    from kornia.filters import gaussian_blur2d

    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or not mask.is_floating_point():
        raise VidinvError(f"feather: expected a float mask [B, C, H, W], got {getattr(mask, 'shape', type(mask))}")
    if radius < 0:
        raise VidinvError(f"feather: radius must be >= 0, got {radius}")
    if radius == 0:
        return mask
    sigma = radius / 2.0
    k = 2 * math.ceil(3 * sigma) + 1
    k = min(k, 2 * (min(mask.shape[-2:]) // 2) - 1) if min(mask.shape[-2:]) > 2 else 1
    if k < 3:
        return mask
    return gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="replicate").clamp(0, 1)


_feather = feather  # landmark_hull_mask's `feather` argument shadows the function name


def hull_points(lm: np.ndarray, forehead: float = 0.4) -> np.ndarray:
    """The 68 landmarks plus the eyebrows lifted towards the hairline.

    The forehead points are the brow points (17..26) moved up by ``forehead`` times the chin-to-brow vector.

    Shape:
        - lm: ``[B, 68, 2]``
        - output: ``[B, 78, 2]``
    """
    brows = lm[:, 17:27]
    up = brows.mean(1, keepdims=True) - lm[:, 8:9]  # chin -> brow centre
    return np.concatenate([lm, brows + forehead * up], 1)


def landmark_hull_mask(lm_crop: torch.Tensor | np.ndarray, size: int, dilate: float = 0.02, feather: float = 0.04,
                       forehead: float = 0.4) -> torch.Tensor:
    """Convex-hull face masks from crop-space landmarks, extended up over the forehead and feathered.

    Args:
        lm_crop: 68 landmarks in crop pixels.
        size: crop side S.
        dilate: grow (or, negative, shrink) the hull by this fraction of S, outward from its centroid.
        feather: Gaussian feather radius as a fraction of S (see :func:`feather`).
        forehead: how far above the brows the mask reaches, as a fraction of the chin-to-brow distance.

    Returns:
        Float32 masks in [0, 1] on ``lm_crop``'s device (CPU for numpy input).

    Shape:
        - lm_crop: ``[B, 68, 2]``
        - output: ``[B, 1, S, S]``
    """
    import cv2

    device = lm_crop.device if isinstance(lm_crop, torch.Tensor) else torch.device("cpu")
    lm = lm_crop.detach().cpu().double().numpy() if isinstance(lm_crop, torch.Tensor) else np.asarray(lm_crop, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise VidinvError(f"landmark_hull_mask: expected landmarks [B, 68, 2], got {lm.shape}")
    if int(size) <= 0:
        raise VidinvError(f"landmark_hull_mask: size must be positive, got {size}")
    S = int(size)
    shift = 4  # sub-pixel polygon vertices (1/16 px)
    pts = hull_points(lm, forehead)
    out = np.zeros((len(lm), S, S), np.uint8)
    for b, p in enumerate(pts):
        if not np.isfinite(p).all():
            continue
        hull = cv2.convexHull(p.astype(np.float32))[:, 0].astype(np.float64)  # [K, 2]
        if dilate:
            c = hull.mean(0)
            d = hull - c
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            hull = c + d * np.maximum(n + dilate * S, 0) / np.maximum(n, 1e-9)
        cv2.fillConvexPoly(out[b], np.round(hull * (1 << shift)).astype(np.int32), 255, cv2.LINE_AA, shift)
    mask = torch.from_numpy(out).float().div_(255.0)[:, None]
    return _feather(mask, feather * S).to(device)


def parsing_mask(labels: torch.Tensor, classes: Sequence[int] = FACE_CLASSES) -> torch.Tensor:
    """Binary masks of the chosen face-parsing classes.

    Args:
        labels: integer CelebAMask-HQ labels (0..18), or BiSeNet logits ``[B, 19, H, W]`` (argmax is taken).
        classes: the label indices to keep (default: skin, brows, eyes, glasses, nose, mouth, lips).

    Shape:
        - labels: ``[B, H, W]`` (or logits ``[B, 19, H, W]``)
        - output: ``[B, 1, H, W]`` float32 in {0, 1}
    """
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    if labels.ndim == 4 and labels.is_floating_point():
        labels = labels.argmax(1)
    if labels.ndim != 3 or labels.is_floating_point():
        raise VidinvError(f"parsing_mask: expected integer labels [B, H, W] or logits [B, 19, H, W], "
                          f"got {labels.dtype} {tuple(labels.shape)}")
    cls = torch.as_tensor(list(classes), dtype=labels.dtype, device=labels.device)
    if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= len(PARSING_LABELS)):
        raise VidinvError(f"parsing_mask: classes must be in 0..{len(PARSING_LABELS) - 1}, got {list(classes)}")
    return torch.isin(labels, cls).float()[:, None]
