"""Paste rendered faces into frames: alpha, Laplacian-pyramid (kornia) and Poisson (OpenCV) blending.

All three take ``src`` (the face, already in frame geometry), ``dst`` (the frame) and a mask that is 1 where
``src`` should win, as float ``[B, 3, H, W]`` images (``[B, 1, H, W]`` mask) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fnn

from vidinv.errors import VidinvError


def _check(src, dst, mask, fn: str) -> None:
    for name, x in (("src", src), ("dst", dst), ("mask", mask)):
        if getattr(x, "ndim", None) != 4:
            raise VidinvError(f"{fn}: {name} must be [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    if tuple(src.shape) != tuple(dst.shape):
        raise VidinvError(f"{fn}: src {tuple(src.shape)} and dst {tuple(dst.shape)} differ")
    if mask.shape[0] != src.shape[0] or mask.shape[1] not in (1, src.shape[1]) or tuple(mask.shape[2:]) != tuple(src.shape[2:]):
        raise VidinvError(f"{fn}: mask {tuple(mask.shape)} does not fit images {tuple(src.shape)} (want [B, 1, H, W])")


def blend_alpha(src: torch.Tensor, dst: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``src * mask + dst * (1 - mask)``.

    Shape:
        - src, dst: ``[B, C, H, W]``; mask: ``[B, 1, H, W]`` (or ``[B, C, H, W]``) in [0, 1]
        - output: ``[B, C, H, W]``
    """
    _check(src, dst, mask, "blend_alpha")
    return dst + (src - dst) * mask


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from kornia.geometry.transform import pyrup

    y = pyrup(x)
    return y if tuple(y.shape[-2:]) == tuple(size) else Fnn.interpolate(y, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid (finest first, the Gaussian residual last); :func:`collapse_pyramid` inverts it exactly.

    Shape:
        - x: ``[B, C, H, W]``
        - output: ``levels`` tensors ``[B, C, H/2^i, W/2^i]`` (sizes rounded down)
    """
    from kornia.geometry.transform import pyrdown

    out, g = [], x
    for _ in range(levels - 1):
        if min(g.shape[-2:]) < 2:
            break
        down = pyrdown(g)
        out.append(g - _up(down, g.shape[-2:]))
        g = down
    return out + [g]


def collapse_pyramid(pyr: list[torch.Tensor]) -> torch.Tensor:
    """Sum a Laplacian pyramid back into an image (inverse of :func:`laplacian_pyramid`)."""
    x = pyr[-1]
    for lap in reversed(pyr[:-1]):
        x = lap + _up(x, lap.shape[-2:])
    return x


def blend_laplacian(src: torch.Tensor, dst: torch.Tensor, mask: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Multi-band blending (Burt & Adelson): each Laplacian band blended with the Gaussian pyramid of the mask.

    Pixels where the mask is 0 take ``dst`` before decomposing, so whatever ``src`` holds there (e.g. the black
    outside of an unaligned crop) cannot leak in; far from the mask (beyond ~2^levels pixels) the result is ``dst``.

    Args:
        src, dst: images; mask: weights of ``src`` in [0, 1].
        levels: pyramid levels (1 = alpha blending).

    Shape:
        - src, dst: ``[B, C, H, W]``; mask: ``[B, 1, H, W]``
        - output: ``[B, C, H, W]``
    """
    from kornia.geometry.transform import pyrdown

    _check(src, dst, mask, "blend_laplacian")
    if int(levels) < 1:
        raise VidinvError(f"blend_laplacian: levels must be >= 1, got {levels}")
    mask = mask.to(src.dtype)
    src = torch.where(mask > 0, src, dst)
    ls, ld = laplacian_pyramid(src, int(levels)), laplacian_pyramid(dst, int(levels))
    m, out = mask, []
    for i, (a, b) in enumerate(zip(ls, ld)):
        if i:
            m = pyrdown(m)
        out.append(b + (a - b) * m)
    return collapse_pyramid(out)


def blend_poisson(src: torch.Tensor | np.ndarray, dst: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray,
                  threshold: float = 0.5) -> torch.Tensor | np.ndarray:
    """Poisson (gradient-domain) blending with ``cv2.seamlessClone`` (NORMAL_CLONE), one frame at a time.

    The clone region is ``mask > threshold`` (its one-pixel image border removed, which OpenCV requires);
    everywhere else the result is ``dst`` (up to uint8 rounding).

    Args:
        src, dst: images in [0, 1], torch or numpy.
        mask: weights in [0, 1].
        threshold: binarisation level of the mask.

    Returns:
        Blended images of ``src``'s type (torch keeps dtype/device), in [0, 1].

    Shape:
        - src, dst: ``[B, 3, H, W]``; mask: ``[B, 1, H, W]``
        - output: ``[B, 3, H, W]``
    """
    import cv2

    _check(src, dst, mask, "blend_poisson")
    if src.shape[1] != 3:
        raise VidinvError(f"blend_poisson: needs 3-channel images, got {tuple(src.shape)}")
    as_np = lambda x: (x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32))  # noqa: E731
    s, d, m = as_np(src), as_np(dst), as_np(mask)
    to_u8 = lambda x: (np.clip(x.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    res = np.empty_like(d)
    for b in range(len(s)):
        db = to_u8(d[b])
        mb = (m[b, 0] > threshold).astype(np.uint8) * 255
        mb[0, :] = mb[-1, :] = mb[:, 0] = mb[:, -1] = 0
        if not mb.any():
            res[b] = d[b]
            continue
        x, y, w, h = cv2.boundingRect(mb)
        out = cv2.seamlessClone(to_u8(s[b]), db, mb, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
        res[b] = out.transpose(2, 0, 1).astype(np.float32) / 255.0
        keep = mb == 0  # exactly dst outside the clone region (no uint8 round trip)
        res[b][:, keep] = d[b][:, keep]
    if isinstance(src, torch.Tensor):
        return torch.from_numpy(res).to(device=src.device, dtype=src.dtype)
    return res
