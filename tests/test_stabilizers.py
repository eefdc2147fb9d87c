"""Temporal stabilizers: shapes, exceptions, values, jitter reduction and lag on synthetic trajectories."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from stabilizers import (
    FlowLandmarkRefiner,
    GaussianSmoother,
    IdentityStabilizer,
    OneEuroFilter,
    SavGolSmoother,
    build_stabilizer,
    gaussian_smooth,
    lk_refine,
    one_euro,
    savgol_smooth,
    valid_runs,
)
from vidinv.errors import InputError, VidinvError

# ---------------------------------------------------------------- synthetic trajectories


def jittery(T: int = 300, jitter: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """68 landmark tracks: slow sinusoid (period 150 frames, 2-4 px) + slow drift + i.i.d. jitter."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (1, 68, 2))
    amp = rng.uniform(2, 4, (1, 68, 2))
    clean = 100 + amp * np.sin(2 * np.pi * t / 150 + phase) + 0.1 * t
    return clean, clean + rng.normal(0, jitter, clean.shape)


def reduction(clean: np.ndarray, noisy: np.ndarray, smoothed: np.ndarray) -> float:
    """Jitter reduction factor: std of the residual to the clean trajectory, before / after."""
    return float(np.std(noisy - clean) / np.std(np.asarray(smoothed) - clean))


def lag(clean: np.ndarray, y: np.ndarray, K: int = 12) -> int:
    """Delay (frames) of y behind clean: the shift that best aligns them on the interior."""
    n = len(clean)
    errs = [np.mean((y[K : n - K] - clean[K - k : n - K - k]) ** 2) for k in range(-K, K + 1)]
    return int(np.argmin(errs)) - K


# ---------------------------------------------------------------- Gaussian


class TestGaussian:
    def test_smoke(self):
        x = np.random.default_rng(0).normal(size=(20, 68, 2))
        y = gaussian_smooth(x, 3.0)
        assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == np.float64
        yt = gaussian_smooth(torch.from_numpy(x).float(), 3.0)
        assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
        np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
        x.setflags(write=False)  # read-only input (e.g. a memory-mapped file): no torch warning, same values
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(gaussian_smooth(x, 3.0), y)

    @pytest.mark.parametrize("shape,dim", [((15,), 0), ((15, 4, 2), 0), ((3, 15, 5), 1), ((2, 3, 15), -1)])
    def test_cardinality_and_scipy(self, shape, dim):
        x = np.random.default_rng(1).normal(size=shape)
        for mode in ("reflect", "nearest"):
            y = gaussian_smooth(x, 2.5, dim=dim, mode=mode)
            np.testing.assert_allclose(y, gaussian_filter1d(x, 2.5, axis=dim, mode=mode), atol=1e-12)

    def test_short_sequence_long_kernel(self):
        x = np.random.default_rng(2).normal(size=(3, 2))  # radius 24 >> T
        np.testing.assert_allclose(gaussian_smooth(x, 6.0), gaussian_filter1d(x, 6.0, axis=0), atol=1e-12)

    def test_identity(self):
        x = torch.randn(10, 4)
        y = gaussian_smooth(x, 0)
        assert torch.equal(x, y) and y is not x
        assert np.array_equal(GaussianSmoother(0)(x.numpy()), x.numpy())

    @pytest.mark.parametrize("mode", ["reflect", "nearest"])
    def test_no_shrinkage_at_ends(self, mode):
        x = np.full((30, 3), 7.0)
        np.testing.assert_allclose(gaussian_smooth(x, 6.0, mode=mode), x, atol=1e-12)

    def test_jitter_reduction(self):
        clean, noisy = jittery()
        r3 = reduction(clean, noisy, gaussian_smooth(noisy, 3.0))
        r6 = reduction(clean, noisy, gaussian_smooth(noisy, 6.0))
        assert r3 >= 3.0, r3  # measured 3.27 (theory for white noise: sqrt(2 sqrt(pi) sigma) = 3.26)
        assert r6 >= 3.5, r6  # measured 4.19: bias of the slow sinusoid starts to show

    def test_zero_lag(self):
        ramp = np.arange(120.0) * 0.5
        step = (np.arange(120) >= 60).astype(float)
        assert lag(ramp, gaussian_smooth(ramp, 3.0)) == 0
        y = gaussian_smooth(step, 3.0)
        assert abs(y[59] - (1 - y[60])) < 1e-12  # symmetric about the step: no phase shift

    def test_segments_keep_step(self):
        x = np.concatenate([np.zeros((20, 2)), np.full((25, 2), 10.0)])
        y = gaussian_smooth(x, 3.0, segments=[20])
        np.testing.assert_allclose(y, x, atol=1e-12)  # nothing leaks across the cut
        smeared = gaussian_smooth(x, 3.0)
        assert smeared[19, 0] > 1 and smeared[20, 0] < 9

    def test_segments_equal_separate_runs(self):
        x = np.random.default_rng(3).normal(size=(40, 5))
        y = gaussian_smooth(x, 2.0, segments=[30, 12, 0, 40])  # unsorted, ends allowed
        parts = [gaussian_filter1d(x[a:b], 2.0, axis=0) for a, b in [(0, 12), (12, 30), (30, 40)]]
        np.testing.assert_allclose(y, np.concatenate(parts), atol=1e-12)

    def test_valid_mask(self):
        clean, noisy = jittery(T=80)
        valid = np.ones(80, bool)
        valid[[5, 30, 31, 32, 79]] = False
        bad, other = noisy.copy(), noisy.copy()
        bad[~valid], other[~valid] = np.nan, 1e6  # detector garbage on invalid frames
        y = gaussian_smooth(bad, 3.0, valid=valid)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, gaussian_smooth(other, 3.0, valid=valid), atol=1e-9)  # ignored
        rms = lambda a: float(np.sqrt(np.mean(a**2)))
        assert rms((y - clean)[valid]) < 0.45 and rms((y - clean)[~valid]) < 0.6  # jitter 1.0
        # torch + a gap longer than the kernel: filled by interpolation, still finite
        v2 = np.ones(80, bool)
        v2[10:60] = False
        bad2 = noisy.copy()
        bad2[10:60] = np.nan
        y2 = gaussian_smooth(torch.from_numpy(bad2), 1.0, valid=v2)
        assert torch.isfinite(y2).all()
        assert np.abs(y2.numpy()[10:60] - clean[10:60]).max() < 4.5  # linear fill across a 50-frame gap

    def test_gradcheck(self):
        x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a: gaussian_smooth(a, 1.5, segments=[3]), (x,))

    @pytest.mark.parametrize("kwargs", [dict(sigma=-1), dict(sigma=float("nan")), dict(sigma="3"),
                                        dict(sigma=1, mode="wrap"), dict(sigma=1, dim=3),
                                        dict(sigma=1, segments=[50]), dict(sigma=1, segments=[1.5])])
    def test_exception(self, kwargs):
        with pytest.raises(InputError):
            gaussian_smooth(np.zeros((10, 2)), **kwargs)

    def test_exception_inputs(self):
        with pytest.raises(InputError, match="numpy array or a torch tensor"):
            gaussian_smooth([1.0, 2.0], 1.0)
        with pytest.raises(InputError, match="no frames"):
            gaussian_smooth(np.zeros((0, 2)), 1.0)
        with pytest.raises(InputError, match="valid"):
            gaussian_smooth(np.zeros((5, 2)), 1.0, valid=np.ones(4, bool))
        with pytest.raises(InputError):
            GaussianSmoother(-2.0)


# ---------------------------------------------------------------- Savitzky-Golay


class TestSavGol:
    def test_matches_scipy_and_types(self):
        x = np.random.default_rng(4).normal(size=(31, 3, 2))
        np.testing.assert_allclose(savgol_smooth(x, 9, 2), savgol_filter(x, 9, 2, axis=0), atol=1e-12)
        yt = savgol_smooth(torch.from_numpy(x).float(), 9, 2, dim=0)
        assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32 and yt.shape == (31, 3, 2)
        xl = np.moveaxis(x, 0, -1)  # time last
        np.testing.assert_allclose(savgol_smooth(xl, 7, 3, dim=-1), savgol_filter(xl, 7, 3, axis=-1), atol=1e-12)

    def test_polynomial_passes_unchanged(self):
        t = np.arange(40.0)
        quad = 0.02 * t**2 - t + 3
        np.testing.assert_allclose(savgol_smooth(quad, 11, 2), quad, atol=1e-9)  # ends included (interp)

    def test_jitter_and_lag(self):
        clean, noisy = jittery()
        r = reduction(clean, noisy, savgol_smooth(noisy, 15, 2))
        assert r >= 2.3, r  # measured 2.58 (white-noise theory 1/sqrt(h0) = 2.57)
        ramp = np.arange(100.0)
        assert lag(ramp, savgol_smooth(ramp, 15, 2)) == 0

    def test_segments_and_short(self):
        x = np.concatenate([np.zeros((10, 2)), np.full((3, 2), 5.0), np.ones((12, 2))])
        y = savgol_smooth(x, 9, 2, segments=[10, 13])  # middle shot shorter than the window
        np.testing.assert_allclose(y, x, atol=1e-12)
        s = SavGolSmoother(9, 3)
        for T in (1, 2, 3, 4, 8):
            z = np.random.default_rng(T).normal(size=(T, 2))
            assert s(z).shape == (T, 2)
        np.testing.assert_allclose(s(np.arange(5.0)), np.arange(5.0), atol=1e-12)

    def test_valid_mask(self):
        clean, noisy = jittery(T=50)
        valid = np.ones(50, bool)
        valid[[0, 25]] = False
        noisy[~valid] = np.nan
        y = savgol_smooth(noisy, 11, 2, valid=valid)
        assert np.isfinite(y).all() and float(np.sqrt(np.mean((y - clean) ** 2))) < 0.6  # jitter 1.0

    def test_exception(self):
        x = np.zeros((10, 2))
        for kw in (dict(window=4, order=2), dict(window=5, order=5), dict(window=0, order=0),
                   dict(window=11, order=2), dict(window=5, order=2, mode="bogus"), dict(window=5, order=2, dim=2)):
            with pytest.raises(InputError):
                savgol_smooth(x, **kw)
        with pytest.raises(InputError, match="longer than the sequence"):
            savgol_smooth(x, 11, 2)
        with pytest.raises(InputError, match="longer than the sequence"):
            SavGolSmoother(11, 2, clip=False)(x)


# ---------------------------------------------------------------- One-Euro


def one_euro_reference(x: np.ndarray, ts: np.ndarray, min_cutoff: float, beta: float, d_cutoff: float) -> np.ndarray:
    """Scalar loop written from the paper's pseudo-code, one scalar signal."""

    def alpha(cutoff, dt):
        r = 2 * math.pi * cutoff * dt
        return r / (r + 1)

    out, xh, dxh = [x[0]], x[0], 0.0
    for i in range(1, len(x)):
        dt = ts[i] - ts[i - 1]
        dxh = dxh + alpha(d_cutoff, dt) * ((x[i] - xh) / dt - dxh)
        xh = xh + alpha(min_cutoff + beta * abs(dxh), dt) * (x[i] - xh)
        out.append(xh)
    return np.array(out)


class TestOneEuro:
    def test_reference_values_vfr(self):
        rng = np.random.default_rng(5)
        ts = np.cumsum(rng.uniform(0.02, 0.06, 40))  # variable frame rate
        x = rng.normal(size=(40, 3)).cumsum(0)
        y = one_euro(x, ts, min_cutoff=1.2, beta=0.3, d_cutoff=1.5)
        for j in range(3):
            np.testing.assert_allclose(y[:, j], one_euro_reference(x[:, j], ts, 1.2, 0.3, 1.5), atol=1e-12)
        np.testing.assert_allclose(one_euro(x, np.arange(40) / 25.0, beta=0.1), one_euro(x, rate=25.0, beta=0.1))

    def test_causal_and_constant(self):
        x = np.random.default_rng(6).normal(size=(30, 4))
        x2 = x.copy()
        x2[15:] += 100
        np.testing.assert_array_equal(one_euro(x, beta=0.1)[:15], one_euro(x2, beta=0.1)[:15])
        c = np.full((20, 2), 3.0)
        np.testing.assert_allclose(one_euro(c, beta=1.0), c)

    def test_jitter_and_lag(self):
        clean, noisy = jittery()
        r = reduction(clean, noisy, one_euro(noisy, min_cutoff=1.0, beta=0.05))
        assert r >= 1.8, r  # measured 2.20 at 30 fps
        ramp = np.arange(200.0)  # 30 px/s
        lag_adaptive = lag(ramp, one_euro(ramp, min_cutoff=1.0, beta=0.05))
        lag_plain = lag(ramp, one_euro(ramp, min_cutoff=1.0, beta=0.0))
        assert 0 <= lag_adaptive <= 2, lag_adaptive  # measured 1 frame
        assert lag_plain > lag_adaptive  # beta is what buys the low lag (plain: 5 frames)

    def test_streaming_matches_batch(self):
        rng = np.random.default_rng(7)
        x = rng.normal(size=(25, 68, 2))
        ts = np.cumsum(rng.uniform(0.03, 0.05, 25))
        f = OneEuroFilter(min_cutoff=0.8, beta=0.2)
        streamed = np.stack([f.step(x[i], ts[i]) for i in range(25)])
        np.testing.assert_allclose(streamed, f(x, ts), atol=1e-12)
        f.reset()
        tt = torch.from_numpy(x).float()
        s2 = torch.stack([f.step(tt[i]) for i in range(25)])
        assert isinstance(s2, torch.Tensor)
        np.testing.assert_allclose(s2.numpy(), one_euro(x, min_cutoff=0.8, beta=0.2), atol=1e-4)

    def test_segments_reset(self):
        x = np.concatenate([np.zeros((10, 2)), np.full((10, 2), 5.0)])
        y = one_euro(torch.from_numpy(x), segments=[10])
        np.testing.assert_allclose(y.numpy(), x)
        assert one_euro(x)[10, 0] < 5

    def test_exception(self):
        x = np.zeros((10, 2))
        for kw in (dict(min_cutoff=0), dict(beta=-1), dict(d_cutoff=float("inf")), dict(rate=0)):
            with pytest.raises(InputError):
                one_euro(x, **kw)
        with pytest.raises(InputError, match="strictly increasing"):
            one_euro(x, t=np.zeros(10))
        with pytest.raises(InputError, match="shape"):
            one_euro(x, t=np.arange(9.0))
        f = OneEuroFilter()
        f.step(np.zeros(3), 1.0)
        with pytest.raises(InputError, match="increase"):
            f.step(np.zeros(3), 1.0)
        with pytest.raises(InputError, match="differs"):
            f.step(np.zeros(4), 2.0)


# ---------------------------------------------------------------- Lucas-Kanade refinement


def translating_scene(T: int = 30, seed: int = 0):
    """A smooth random texture translated by a known sub-pixel motion, and points riding on it."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (256, 256)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    t = np.arange(T)
    shift = np.stack([0.8 * t, 5 * np.sin(2 * np.pi * t / 25)], 1)  # (dx, dy) px
    frames = np.stack([cv2.warpAffine(tex, np.float32([[1, 0, s[0] - 64], [0, 1, s[1] - 64]]), (128, 128),
                                      flags=cv2.INTER_CUBIC) for s in shift])
    frames = frames.clip(0, 255).astype(np.uint8)
    grid = np.stack(np.meshgrid(np.linspace(30, 80, 6), np.linspace(30, 90, 6)), -1).reshape(-1, 2)
    true = grid[None] + shift[:, None, :]
    det = true + rng.normal(0, 1.5, true.shape)
    return frames, true, det


def point_error(p, true) -> float:
    return float(np.sqrt(((np.asarray(p) - true) ** 2).sum(-1)).mean())


class TestLK:
    def test_recovers_motion(self):
        frames, true, det = translating_scene()
        ref = lk_refine(frames, det)
        e_raw, e_ref = point_error(det, true), point_error(ref, true)
        assert e_ref < 0.8 * e_raw, (e_raw, e_ref)  # measured 1.87 px -> 1.21 px
        e_fixed = point_error(lk_refine(frames, det, sigma_px=5.0), true)
        assert e_fixed < 0.6 * e_raw, (e_raw, e_fixed)  # measured 0.93 px

    def test_official_preset(self):
        frames, true, det = translating_scene()
        r = FlowLandmarkRefiner.official()
        assert (r.win, r.levels, r.max_weight, r.reference) == (None, 5, 1.0, "previous")
        e_raw, e_off = point_error(det, true), point_error(r(frames, det), true)
        assert e_off < 0.6 * e_raw, (e_raw, e_off)  # measured 1.87 px -> 0.76 px

    @pytest.mark.parametrize("reference", ["tracked", "previous"])
    def test_large_jump_follows_detector(self, reference):
        frames, true, det = translating_scene(T=16)
        still = np.repeat(frames[:1], 16, 0)  # the image does not move ...
        jump = np.repeat(true[:1], 16, 0)
        jump[8:] += 40.0  # ... but the detector says the face jumped (flow cannot see it)
        ref = lk_refine(still, jump, reference=reference, max_weight=0.9)
        np.testing.assert_allclose(ref[8:], jump[8:], atol=0.05)
        np.testing.assert_allclose(ref[:8], jump[:8], atol=0.05)  # no jitter: LK keeps points put

    def test_cut_invalid_and_types(self):
        frames, true, det = translating_scene(T=12)
        valid = np.ones(12, bool)
        valid[4] = False
        ref = lk_refine(torch.from_numpy(frames), torch.from_numpy(det).float(), segments=[8], valid=valid)
        assert isinstance(ref, torch.Tensor) and ref.dtype == torch.float32 and ref.shape == det.shape
        for i in (0, 4, 5, 8):  # chain starts: first frame, invalid frame and the one after, the cut
            np.testing.assert_allclose(ref[i].numpy(), det[i], atol=1e-4)
        assert not np.allclose(ref[6].numpy(), det[6], atol=1e-3)

    def test_refiner_rgb(self):
        frames, true, det = translating_scene(T=10)
        rgb = np.repeat(frames[..., None], 3, -1)
        r = FlowLandmarkRefiner(sigma_px=5.0)(rgb, det)
        np.testing.assert_allclose(r, lk_refine(frames, det, sigma_px=5.0), atol=1e-9)

    def test_exception(self):
        frames, true, det = translating_scene(T=5)
        with pytest.raises(InputError, match="uint8"):
            lk_refine(frames.astype(np.float32), det)
        with pytest.raises(InputError, match="frames"):
            lk_refine(frames[:4], det)
        with pytest.raises(InputError, match=r"\[T,N,2\]"):
            lk_refine(frames, det[..., 0])
        with pytest.raises(InputError, match="max_weight"):
            lk_refine(frames, det, max_weight=1.5)
        with pytest.raises(InputError, match="reference"):
            lk_refine(frames, det, reference="backward")
        with pytest.raises(InputError):
            FlowLandmarkRefiner(win=1)


# ---------------------------------------------------------------- codes and the factory


class TestCodesAndFactory:
    def test_build(self):
        assert isinstance(build_stabilizer({"method": "gaussian", "sigma": 3}), GaussianSmoother)
        assert isinstance(build_stabilizer({"method": "savgol", "window": 7, "order": 2}), SavGolSmoother)
        assert isinstance(build_stabilizer({"method": "one_euro", "beta": 0.1}), OneEuroFilter)
        assert isinstance(build_stabilizer({"method": "none"}), IdentityStabilizer)
        assert isinstance(build_stabilizer(None), IdentityStabilizer)
        cfg = {"method": "gaussian", "sigma": 3}
        build_stabilizer(cfg)
        assert cfg == {"method": "gaussian", "sigma": 3}  # not mutated
        bads = ({"method": "kalman"}, {"method": "gaussian", "sigmaa": 3}, {"method": "gaussian", "sigma": -3}, [1])
        for bad in bads:
            with pytest.raises(VidinvError):
                build_stabilizer(bad)

    @pytest.mark.parametrize("cfg", [{"method": "none"}, {"method": "gaussian", "sigma": 6.0},
                                     {"method": "savgol", "window": 9, "order": 2},
                                     {"method": "one_euro", "min_cutoff": 1.0, "beta": 0.05}])
    def test_short_runs_like_the_pipeline(self, cfg):
        f = build_stabilizer(cfg)
        for T in (1, 2, 5):
            x = np.random.default_rng(T).normal(size=(T, 68, 2))
            y = f(x)
            assert isinstance(y, np.ndarray) and y.shape == x.shape and np.isfinite(y).all()
        x = np.random.default_rng(9).normal(size=(20, 68, 2))
        y = f(x, segments=[10], valid=np.arange(20) != 3)
        assert y.shape == x.shape and np.isfinite(y).all()


# ---------------------------------------------------------------- real clip (shared media)


def test_real_clip_landmark_jitter(videos_dir):
    """dlib landmarks on 20 frames of a real talking head: every filter lowers the frame-to-frame
    acceleration (second difference, px/frame^2) without moving the points far."""
    av = pytest.importorskip("av")
    cv2 = pytest.importorskip("cv2")
    detect = pytest.importorskip("vidinv.faces.detect")
    path = videos_dir / "retalking_face1.mp4"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with av.open(str(path)) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == 20:
                break
    frames = np.stack(frames)
    try:
        det = detect.DlibDetector(upsample=0, max_side=360)
    except VidinvError as e:
        pytest.skip(str(e))
    found = det.detect(frames)
    if not all(found):
        pytest.skip("dlib missed the face in some frames")
    lm = np.stack([max(f, key=lambda x: x.area).landmarks for f in found]).astype(np.float64)  # [20,68,2]

    def acc(p) -> float:
        return float(np.linalg.norm(np.diff(np.asarray(p), 2, axis=0), axis=-1).mean())

    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    raw = acc(lm)
    out = {"gaussian": gaussian_smooth(lm, 3.0), "one_euro": one_euro(lm, beta=0.05), "lk": lk_refine(gray, lm)}
    assert acc(out["gaussian"]) < raw / 5, (raw, acc(out["gaussian"]))  # measured 2.98 -> 0.16
    assert acc(out["one_euro"]) < raw / 2, (raw, acc(out["one_euro"]))  # measured 2.98 -> 0.97
    assert acc(out["lk"]) < raw / 1.3, (raw, acc(out["lk"]))  # measured 2.98 -> 1.80
    for name, y in out.items():
        assert np.linalg.norm(y - lm, axis=-1).mean() < 4.0, name  # a 700 px frame: points stay near the face


# ---------------------------------------------------------------- runs at shot cuts


class TestValidRuns:
    def test_feature(self):
        valid = np.array([0, 1, 1, 1, 0, 1, 1, 1, 1, 0], bool)
        assert valid_runs(valid, []) == [(1, 4), (5, 9)]
        assert valid_runs(valid, [2, 7]) == [(1, 2), (2, 4), (5, 7), (7, 9)]
        assert valid_runs(valid, [5, 9]) == [(1, 4), (5, 9)]  # a cut at a run's edge splits nothing
        assert valid_runs(np.ones(4, bool), None) == [(0, 4)]
        assert valid_runs(np.zeros(3, bool), [1]) == []

    def test_matches_a_frame_by_frame_scan(self):
        rng = np.random.default_rng(0)
        for _ in range(50):
            valid = rng.random(30) < 0.7
            cuts = sorted(set(rng.integers(1, 30, 3).tolist()))
            got = valid_runs(valid, cuts)
            covered = np.zeros(30, bool)
            for a, b in got:
                assert valid[a:b].all() and not covered[a:b].any()
                assert not any(a < c < b for c in cuts)
                covered[a:b] = True
            assert np.array_equal(covered, valid)
            # maximal: two adjacent runs are only separated by a cut
            for (a0, b0), (a1, b1) in zip(got, got[1:]):
                assert b0 < a1 or b0 in cuts

    def test_cuts_outside_the_clip_are_ignored(self):
        assert valid_runs(np.ones(5, bool), [0, 5, 9, -1]) == [(0, 5)]
