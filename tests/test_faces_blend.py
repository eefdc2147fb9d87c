"""Alpha, Laplacian-pyramid and Poisson blending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.faces.blend import blend_alpha, blend_laplacian, blend_poisson, collapse_pyramid, laplacian_pyramid


def images(B=2, H=64, W=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, H, W, generator=g), torch.rand(B, 3, H, W, generator=g)


def box_mask(B=2, H=64, W=80):
    m = torch.zeros(B, 1, H, W)
    m[..., 20:44, 24:52] = 1
    return m


def smooth(B=1, H=64, W=80, phase=0.0):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    img = torch.stack([0.5 + 0.3 * torch.sin(3 * xx + phase), 0.4 + 0.3 * yy, 0.5 + 0.2 * torch.cos(2 * xx * yy)], 0)
    return img[None].repeat(B, 1, 1, 1)


@pytest.mark.parametrize("fn", [blend_alpha, blend_laplacian])
def test_mask_one_is_src_zero_is_dst(fn):
    src, dst = images()
    ones = torch.ones(2, 1, 64, 80)
    torch.testing.assert_close(fn(src, dst, ones), src, atol=1e-5, rtol=0)
    torch.testing.assert_close(fn(src, dst, torch.zeros_like(ones)), dst, atol=1e-5, rtol=0)


def test_alpha_half():
    src, dst = images()
    torch.testing.assert_close(blend_alpha(src, dst, torch.full((2, 1, 64, 80), 0.5)), (src + dst) / 2)


def test_pyramid_round_trip_odd_size():
    x = torch.rand(1, 3, 37, 53)
    pyr = laplacian_pyramid(x, 4)
    assert len(pyr) == 4 and pyr[-1].shape[-2:] == (37 // 8, 53 // 8)
    torch.testing.assert_close(collapse_pyramid(pyr), x, atol=1e-5, rtol=0)


def test_laplacian_keeps_dst_outside_and_src_inside():
    src, dst = images()
    m = box_mask()
    out = blend_laplacian(src, dst, m, levels=3)
    assert out.shape == src.shape
    far = torch.ones(64, 80, dtype=torch.bool)
    far[20 - 12 : 44 + 12, 24 - 12 : 52 + 12] = False  # beyond the pyramid's reach (~2^levels px + kernel)
    assert (out - dst).abs().amax(1)[:, far].max() < 1e-4
    # deep inside, the fine bands are src's; the low band is mixed, so compare high-passed images
    hp = lambda x: x - torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # noqa: E731
    inner = (slice(None), slice(None), slice(28, 36), slice(32, 44))
    assert (hp(out) - hp(src))[inner].abs().max() < 0.1
    with pytest.raises(VidinvError):
        blend_laplacian(src, dst, m, levels=0)


def test_laplacian_ignores_src_outside_mask():
    src, dst = images()
    m = box_mask()
    src2 = src.clone()
    src2[..., :10, :] = 0  # e.g. the empty outside of an unaligned crop
    torch.testing.assert_close(blend_laplacian(src2, dst, m), blend_laplacian(src, dst, m))


def test_poisson_outside_exact_inside_gradient():
    dst = smooth(2)
    src = (dst + 0.15).clamp(0, 1)  # same gradients, brighter: Poisson must return ~dst
    m = box_mask()
    out = blend_poisson(src, dst, m)
    assert isinstance(out, torch.Tensor) and out.shape == dst.shape and out.dtype == dst.dtype
    outside = m[:, 0] == 0
    assert torch.equal(out.permute(1, 0, 2, 3)[:, outside], dst.permute(1, 0, 2, 3)[:, outside])
    inside = m[:, 0] > 0
    err = (out - dst).abs().permute(1, 0, 2, 3)[:, inside].max().item()
    assert err < 4 / 255, err  # uint8 rounding of seamlessClone
    # alpha blending of the same input keeps the offset: the check above is not trivial
    assert (blend_alpha(src, dst, m) - dst).abs().max() > 0.1


def test_poisson_numpy_and_empty_mask():
    dst = smooth(1).numpy()
    src = np.clip(dst + 0.1, 0, 1)
    out = blend_poisson(src, dst, np.zeros((1, 1, 64, 80), np.float32))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, dst)


def test_exceptions():
    src, dst = images()
    with pytest.raises(VidinvError):
        blend_alpha(src, dst[:, :, :10], box_mask())
    with pytest.raises(VidinvError):
        blend_alpha(src, dst, torch.ones(2, 2, 64, 80))
    with pytest.raises(VidinvError):
        blend_poisson(src[:, :1], dst[:, :1], box_mask())
