"""MSE / PSNR / SSIM known values and parity with scikit-image; LPIPS availability handling."""

import math

import numpy as np
import pytest
import torch

from vidinv.errors import InputError, VidinvError
from vidinv.metrics import image as im
from vidinv.metrics.image import LPIPSMetric, load_lpips_or_none, lpips_available, mse, psnr, ssim, to_unit_float


def smooth_frames(n=3, h=40, w=48, seed=0):
    """Natural-ish frames: low-frequency noise plus a little grain, uint8 [n,h,w,3]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 6, 6), generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    x = (x + 0.05 * torch.randn((n, 3, h, w), generator=g)).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def test_smoke_identical():
    a = smooth_frames()
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-6)
    assert np.all(mse(a, a) == 0) and np.all(np.isinf(psnr(a, a)))


def test_feature_known_values():
    black = np.zeros((2, 16, 16, 3), np.uint8)
    white = np.full((2, 16, 16, 3), 255, np.uint8)
    np.testing.assert_allclose(mse(black, white), [1.0, 1.0])
    np.testing.assert_allclose(psnr(black, white), [0.0, 0.0], atol=1e-12)
    grey = np.full((1, 16, 16, 3), 51, np.uint8)  # 51/255 = 0.2 -> mse 0.04, psnr 10*log10(25)
    np.testing.assert_allclose(mse(black[:1], grey), [0.04], rtol=1e-6)
    np.testing.assert_allclose(psnr(black[:1], grey), [10 * math.log10(25)], rtol=1e-6)
    # float channels-first input in [0,1] gives the same numbers as the uint8 wire format
    a, b = smooth_frames(seed=1), smooth_frames(seed=2)
    fa, fb = to_unit_float(a), to_unit_float(b)
    assert fa.shape == (3, 3, 40, 48)
    np.testing.assert_allclose(ssim(fa, fb), ssim(a, b), atol=1e-7)
    np.testing.assert_allclose(psnr(fa.numpy(), fb.numpy()), psnr(a, b), atol=1e-6)


@pytest.mark.parametrize("noise", [5, 40])
def test_feature_vs_skimage(noise):
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    a = smooth_frames(seed=3)
    rng = np.random.default_rng(noise)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
    s, p, m = ssim(a, b), psnr(a, b), mse(a, b)
    for i in range(len(a)):
        x, y = a[i] / 255.0, b[i] / 255.0
        ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0, channel_axis=-1)
        assert s[i] == pytest.approx(ref, abs=1e-6)
        assert p[i] == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-4)
        assert m[i] == pytest.approx(mean_squared_error(x, y), rel=1e-5)
    assert s.min() < 1.0


def test_cardinality():
    a, b = smooth_frames(n=5), smooth_frames(n=5, seed=9)
    for f in (mse, psnr, ssim):
        out = f(a, b)
        assert out.shape == (5,) and out.dtype == np.float64
    assert ssim(a[0], b[0]).shape == (1,)  # a single [H,W,3] frame


def test_exception():
    a = smooth_frames()
    with pytest.raises(InputError, match="same shape"):
        ssim(a, a[:2])
    with pytest.raises(InputError, match=r"\[N,H,W,3\]"):
        mse(a[..., :2], a[..., :2])
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(a[:, :8, :8], a[:, :8, :8])
    with pytest.raises(InputError, match="dtype"):
        psnr(a.astype(np.int32), a.astype(np.int32))


def test_lpips_unavailable_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    ok, reason = lpips_available()
    assert not ok and reason.startswith("LPIPS unavailable:") and "alexnet" in reason
    with pytest.raises(VidinvError, match="LPIPS unavailable"):
        LPIPSMetric()
    metric, why = load_lpips_or_none()
    assert metric is None and why == reason


def test_lpips_available_when_cached(monkeypatch, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / im.ALEXNET_FILE).write_bytes(b"x")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert lpips_available() == (True, "")


def test_lpips_plumbing_random_backbone():
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    metric = LPIPSMetric(random_backbone=True, batch=2)
    a, b = smooth_frames(n=3, h=64, w=64), smooth_frames(n=3, h=64, w=64, seed=5)
    d = metric(a, b)
    assert d.shape == (3,) and np.all(np.isfinite(d))
    np.testing.assert_allclose(metric(a, a), 0.0, atol=1e-6)
    assert np.all(d > 0)
