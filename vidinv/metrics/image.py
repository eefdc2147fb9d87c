"""Per-frame reconstruction metrics: MSE, PSNR, SSIM (torch, batched) and LPIPS.

Images come in either as frames on the wire (uint8 ``[N,H,W,3]`` RGB, numpy or torch,
scaled to [0,1]) or as float tensors/arrays ``[N,3,H,W]`` already in [0,1]. Every metric
returns one float64 value per frame as a numpy array ``[N]``.

SSIM follows Wang et al. 2004 with a Gaussian window (sigma 1.5, 11 taps), K1=0.01,
K2=0.03, data range 1, computed per channel on the valid region and averaged, which is
what ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
use_sample_covariance=False, data_range=1, channel_axis=-1)`` computes.

LPIPS wraps the ``lpips`` package (AlexNet, v0.1). Its linear heads ship in the package,
but its AlexNet backbone comes from torchvision's hub cache; :func:`lpips_available`
checks for that file without downloading anything.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

Images = Union[np.ndarray, torch.Tensor]

__all__ = ["to_unit_float", "mse", "psnr", "ssim", "gaussian_window", "lpips_available", "LPIPSMetric",
           "load_lpips_or_none"]

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1


def to_unit_float(x: Images, name: str = "images") -> torch.Tensor:
    """Frames as a float32 tensor ``[N,3,H,W]`` in [0,1].

    Args:
        x: uint8 ``[N,H,W,3]`` / ``[H,W,3]`` (channels last, 0..255), or float
            ``[N,3,H,W]`` / ``[3,H,W]`` (channels first, in [0,1]).
        name: the argument's name for error messages.

    Shape:
        - x: ``[N,H,W,3]`` uint8 or ``[N,3,H,W]`` float -> ``[N,3,H,W]``.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.dtype == torch.uint8:
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[-1] != 3:
            raise InputError(f"uint8 {name} must be [N,H,W,3] RGB, got shape {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2).float().div(255.0)
    if not t.is_floating_point():
        raise InputError(f"{name} must be uint8 [N,H,W,3] or float [N,3,H,W], got dtype {t.dtype}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise InputError(f"float {name} must be [N,3,H,W] in [0,1], got shape {tuple(t.shape)}")
    return t.float()


def _pair(a: Images, b: Images) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = to_unit_float(a, "a"), to_unit_float(b, "b")
    if x.shape != y.shape:
        raise InputError(f"a and b must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y.to(x.device)


def mse(a: Images, b: Images) -> np.ndarray:
    """Mean squared error per frame on the [0,1] scale.

    Shape:
        - a, b: ``[N,H,W,3]`` uint8 or ``[N,3,H,W]`` float -> ``[N]``.
    """
    x, y = _pair(a, b)
    return (x - y).double().pow(2).flatten(1).mean(1).cpu().numpy()


def psnr(a: Images, b: Images) -> np.ndarray:
    """Peak signal-to-noise ratio per frame in dB (data range 1); ``inf`` for identical frames.

    Shape:
        - a, b: ``[N,H,W,3]`` uint8 or ``[N,3,H,W]`` float -> ``[N]``.
    """
    m = mse(a, b)
    with np.errstate(divide="ignore"):
        return np.where(m > 0, -10.0 * np.log10(np.maximum(m, 1e-300)), np.inf)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, radius ``int(truncate * sigma + 0.5)`` (scipy's rule).

    Shape:
        - output: ``[2r+1]``.
    """
    r = int(truncate * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(a: Images, b: Images, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Gaussian-window SSIM per frame on [0,1] RGB (mean over channels and valid pixels).

    Args:
        a, b: frames (see :func:`to_unit_float`).
        sigma: Gaussian window sigma (11 taps at the default 1.5).
        k1, k2: the SSIM stabilising constants.

    Returns:
        ``[N]`` float64 SSIM values (1 for identical frames).

    Raises:
        InputError: mismatched shapes, or frames smaller than the window.

    Shape:
        - a, b: ``[N,H,W,3]`` uint8 or ``[N,3,H,W]`` float -> ``[N]``.
    """
    x, y = _pair(a, b)
    g = gaussian_window(sigma).to(x)
    k = g.numel()
    if min(x.shape[-2:]) < k:
        raise InputError(f"ssim needs frames of at least {k}x{k} pixels, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    wx, wy = g.view(1, 1, 1, k).repeat(c, 1, 1, 1), g.view(1, 1, k, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable, valid region only
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.double().flatten(1).mean(1).cpu().numpy()


def _alexnet_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> tuple[bool, str]:
    """Whether LPIPS (AlexNet) can run here without any download.

    Returns:
        ``(True, '')`` or ``(False, 'LPIPS unavailable: <why and how to fix>')``.
    """
    try:
        import lpips  # noqa: F401
    except Exception as e:  # pragma: no cover - lpips is a dependency
        return False, f"LPIPS unavailable: the lpips package cannot be imported ({e}); pip install lpips"
    path = _alexnet_path()
    if not path.is_file():
        return False, (f"LPIPS unavailable: torchvision's AlexNet weights are not cached at {path} "
                       f"(download https://download.pytorch.org/models/{ALEXNET_FILE} there)")
    return True, ""


class LPIPSMetric:
    """LPIPS distance per frame (``lpips.LPIPS(net='alex')``, v0.1), batched.

    Args:
        device: where to run it (default CPU).
        batch: frames per forward pass.
        random_backbone: build AlexNet with random weights instead of the cached
            pretrained ones. For tests of the plumbing only: the values mean nothing.

    Raises:
        VidinvError: ``'LPIPS unavailable: ...'`` when the backbone weights are missing.

    Shape:
        - __call__(a, b): ``[N,H,W,3]`` uint8 or ``[N,3,H,W]`` float in [0,1] -> ``[N]``.
    """

    name = "lpips_alex"

    def __init__(self, device: Union[str, torch.device] = "cpu", batch: int = 16, random_backbone: bool = False):
        if not random_backbone:
            ok, reason = lpips_available()
            if not ok:
                raise VidinvError(reason)
        import lpips

        self.device = torch.device(device)
        self.batch = int(batch)
        with warnings.catch_warnings():  # torchvision's deprecation notice about `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(net="alex", pnet_rand=random_backbone, verbose=False).eval().to(self.device)

    @torch.no_grad()
    def __call__(self, a: Images, b: Images) -> np.ndarray:
        x, y = _pair(a, b)
        out = []
        for i in range(0, x.shape[0], self.batch):
            xa = x[i : i + self.batch].to(self.device) * 2 - 1
            ya = y[i : i + self.batch].to(self.device) * 2 - 1
            out.append(self.net(xa, ya).flatten().double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)


_WARNED: set[str] = set()


def load_lpips_or_none(device: Union[str, torch.device] = "cpu") -> tuple[LPIPSMetric | None, str]:
    """An :class:`LPIPSMetric`, or ``None`` and the reason (logged once) when it cannot run.

    Never raises: evaluations go on without the LPIPS column.

    Returns:
        ``(metric, '')`` or ``(None, 'LPIPS unavailable: ...')``.
    """
    try:
        return LPIPSMetric(device), ""
    except Exception as e:
        reason = str(e) if str(e).startswith("LPIPS unavailable") else f"LPIPS unavailable: {e}"
        if reason not in _WARNED:
            _WARNED.add(reason)
            log.warning(reason)
        return None, reason

