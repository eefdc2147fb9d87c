"""StyleGAN2 generator: golden parity with the official code, loading, shapes, noise, errors."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from vidinv.errors import InputError, VidinvError
from vidinv.models.checkpoint import safe_load
from vidinv.models.stylegan2 import Generator, load_generator, split_checkpoint, upfirdn2d
from vidinv.models.tiny import TINY_CHANNELS, tiny_generator
from golden_utils import assert_allclose

ATOL = RTOL = 1e-4


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert_allclose(a, b, atol=atol, rtol=RTOL)


@pytest.fixture(scope="module")
def golden(golden_narrow):
    return {n: torch.load(golden_narrow / f"{n}.pt", map_location="cpu", weights_only=True)
            for n in ("generator_cases", "generator_rosinality", "generator_psp")}


@pytest.fixture(scope="module")
def G(golden_narrow):
    G, _ = load_generator(golden_narrow / "generator_rosinality.pt")
    return G


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator(0)


# ------------------------------------------------------------------ golden parity
def test_golden_mapping(G, golden):
    I, O = golden["generator_cases"]["inputs"], golden["generator_cases"]["outputs"]
    with torch.no_grad():
        _close(G.mapping(I["z"]), O["a_w"])
        _close(G.get_latent(I["z"]), O["a_w"])


def test_golden_mean_latent(G, golden):
    I = golden["generator_cases"]["inputs"]
    torch.manual_seed(1006)
    with torch.no_grad():
        _close(G.mean_latent(4096), I["mean_latent"])
    _close(golden["generator_rosinality"]["latent_avg"], I["mean_latent"][0])


def _case(G, I, O, name):
    fi = [None] * 5 + [I["features_in_5"]] + [None] * (G.n_latent - 6)
    calls = {
        "a_image": lambda: G([I["z"]], noise=I["noise_batch"], truncation=1),
        "b_image": lambda: G([I["z"]], noise=I["noise_batch"], truncation=0.7, truncation_latent=I["mean_latent"]),
        "c_image": lambda: G([I["w_plus"]], input_is_latent=True, randomize_noise=False),
        "d_image": lambda: G([I["w_plus"]], input_is_latent=True, noise=I["noise"], return_features=True),
        "e_image_scale1": lambda: G([I["w_plus"]], input_is_latent=True, noise=I["noise"], features_in=fi),
        "e_image_scale05": lambda: G([I["w_plus"]], input_is_latent=True, noise=I["noise"], features_in=fi,
                                     feature_scale=0.5),
        "f_image": lambda: G([O["a_w"]], input_is_latent=True, noise=I["noise_batch"]),
    }
    return calls[name]()


@pytest.mark.parametrize("name", ["a_image", "b_image", "c_image", "d_image", "e_image_scale1", "e_image_scale05",
                                  "f_image"])
def test_golden_images(G, golden, name):
    I, O = golden["generator_cases"]["inputs"], golden["generator_cases"]["outputs"]
    with torch.no_grad():
        img, extra = _case(G, I, O, name)
    _close(img, O[name])
    assert (extra is not None) == (name == "d_image")


def test_golden_features(G, golden):
    I, O = golden["generator_cases"]["inputs"], golden["generator_cases"]["outputs"]
    with torch.no_grad():
        _, feats = G([I["w_plus"]], input_is_latent=True, noise=I["noise"], return_features=True)
        assert len(feats) == G.n_latent == len(O["d_features"])
        stored = [k for k, f in enumerate(O["d_features"]) if f is not None]
        assert stored == list(range(8))
        for k in stored:
            _close(feats[k], O["d_features"][k])
            _close(G.features_at(I["w_plus"], k, noise=I["noise"]), O["d_features"][k])
        _close(G.features_at(I["w_plus"], 5, noise=I["noise"]), O["d_feature_5"])


def test_golden_synthesis_api(G, golden):
    """The vidinv API (synthesis with one feature_in) reproduces the official calls."""
    I, O = golden["generator_cases"]["inputs"], golden["generator_cases"]["outputs"]
    with torch.no_grad():
        _close(G.synthesis(I["w_plus"]), O["c_image"])  # noise None -> the stored buffers
        _close(G.synthesis(I["w_plus"], I["noise"]), O["d_image"])
        _close(G.synthesis(I["w_plus"], I["noise"], feature_in=I["features_in_5"], feature_idx=5), O["e_image_scale1"])
        _close(G.synthesis(I["w_plus"], I["noise"], feature_in=I["features_in_5"], feature_scale=0.5),
               O["e_image_scale05"])
        _close(G.synthesis(O["a_w"], I["noise_batch"]), O["a_image"])  # [B, sd] broadcasts to every layer


# ------------------------------------------------------------------ loading
def test_load_both_layouts(golden_narrow, golden):
    Gr, la_r = load_generator(golden_narrow / "generator_rosinality.pt")
    Gp, la_p = load_generator(golden["generator_psp"])
    assert (Gr.size, Gr.style_dim, Gr.n_latent, Gr.num_layers) == (64, 64, 10, 9)
    assert Gr.channels == TINY_CHANNELS and len(Gr.style) == 3  # PixelNorm + n_mlp 2
    assert la_r.shape == (64,) and la_p.shape == (10, 64)
    sr, sp = Gr.state_dict(), Gp.state_dict()
    assert sr.keys() == sp.keys() and len(sr) == 87
    assert all(torch.equal(sr[k], sp[k]) for k in sr)
    assert torch.equal(torch.zeros(1, 10, 64) + la_r, torch.zeros(1, 10, 64) + la_p)
    assert not Gr.training


def test_load_plain_state_dict(golden):
    sd = golden["generator_rosinality"]["g_ema"]
    G, la = load_generator(dict(sd))
    assert la is None and torch.equal(G.state_dict()["input.input"], sd["input.input"])


def test_split_checkpoint_drops_encoder(golden):
    sd, la = split_checkpoint(golden["generator_psp"])
    assert not any(k.startswith(("encoder.", "decoder.")) for k in sd)
    assert set(sd) == set(golden["generator_rosinality"]["g_ema"])
    assert la.shape == (10, 64)


def test_load_strict_errors(golden):
    sd = dict(golden["generator_rosinality"]["g_ema"])
    missing = {k: v for k, v in sd.items() if k != "convs.3.noise.weight"}
    with pytest.raises(VidinvError, match=r"missing keys: convs\.3\.noise\.weight"):
        load_generator({"g_ema": missing})
    G, _ = load_generator({"g_ema": missing}, strict=False)  # the rest loads
    assert torch.equal(G.state_dict()["convs.2.noise.weight"], sd["convs.2.noise.weight"])
    extra = dict(sd, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(VidinvError, match=r"unexpected keys: extra\.weight"):
        load_generator({"g_ema": extra})
    bad = dict(sd, **{"to_rgb1.bias": torch.zeros(1, 4, 1, 1)})
    with pytest.raises(VidinvError, match="wrong shapes: to_rgb1.bias"):
        load_generator({"g_ema": bad}, strict=False)
    with pytest.raises(VidinvError, match="decoder"):
        load_generator({"state_dict": {"encoder.x": torch.zeros(1)}})
    with pytest.raises(VidinvError, match="not a StyleGAN2 checkpoint"):
        load_generator({"model": {}})
    with pytest.raises(VidinvError, match="latent_avg"):
        load_generator({"g_ema": sd, "latent_avg": torch.zeros(3, 64)})


def test_full_size_layout():
    """The official 1024 layout (171 keys) without allocating it (meta device)."""
    with torch.device("meta"):
        G = Generator(1024, 512, 8)
    sd = G.state_dict()
    assert len(sd) == 171 and (G.n_latent, G.num_layers, G.log_size) == (18, 17, 10)
    assert sd["convs.15.conv.weight"].shape == (1, 32, 32, 3, 3)
    assert sd["to_rgbs.7.conv.weight"].shape == (1, 3, 32, 1, 1)
    assert sd["noises.noise_16"].shape == (1, 1, 1024, 1024)
    assert sd["style.8.weight"].shape == (512, 512)


# ------------------------------------------------------------------ safe_load
class _Opaque:
    pass


def test_safe_load(tmp_path, golden_narrow):
    assert set(safe_load(golden_narrow / "generator_rosinality.pt")) == {"g_ema", "latent_avg"}
    with pytest.raises(InputError, match="not found"):
        safe_load(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(VidinvError, match="cannot read checkpoint"):
        safe_load(tmp_path / "junk.pt")
    p = tmp_path / "opts.pt"
    torch.save({"opts": argparse.Namespace(size=64), "w": torch.ones(2)}, p)
    with pytest.raises(VidinvError, match=r"argparse\.Namespace.*allow_pickle=True"):
        safe_load(p)
    assert safe_load(p, allow_pickle=True)["opts"].size == 64
    p.write_bytes(p.read_bytes()[:200])  # truncated zip
    with pytest.raises(VidinvError, match="corrupt"):
        safe_load(p)


# ------------------------------------------------------------------ tiny generator: shapes, noise, batch
def test_tiny_cardinality(tiny):
    assert (tiny.size, tiny.style_dim, tiny.n_latent, tiny.num_layers, tiny.log_size) == (64, 64, 10, 9, 6)
    noise = tiny.make_noise(batch=3, generator=torch.Generator().manual_seed(0))
    assert [n.shape[-1] for n in noise] == [4, 8, 8, 16, 16, 32, 32, 64, 64] and all(n.shape[:2] == (3, 1) for n in noise)
    w = torch.randn(3, 10, 64)
    with torch.no_grad():
        img, feats = tiny.synthesis(w, noise, return_features=True)
        assert img.shape == (3, 3, 64, 64) and torch.isfinite(img).all()
        sizes = [(48, 4), (48, 4), (40, 8), (40, 8), (32, 16), (32, 16), (24, 32), (24, 32), (16, 64), (16, 64)]
        assert [(f.shape[1], f.shape[-1]) for f in feats] == sizes
        for k in range(10):  # features_at equals the synthesis feature list entry
            fk = tiny.features_at(w, k, noise)
            _close(fk, feats[k], atol=1e-5)
            assert fk.is_contiguous() and feats[k].is_contiguous()  # plain NCHW for callers, whatever runs inside
        assert tiny.mapping(torch.randn(5, 64)).shape == (5, 64)
        assert tiny.mean_latent(16).shape == (1, 64)


def test_tiny_batch_equals_single(tiny):
    """A batch (activation modulation) equals one-by-one renders (weights folded at batch 1)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 10, 64, generator=g)
    noise = tiny.make_noise(batch=3, generator=g)
    F5 = torch.randn(3, 32, 16, 16, generator=g)
    with torch.no_grad():
        batch = tiny.synthesis(w, noise, feature_in=F5, feature_idx=5)
        for b in range(3):
            one = tiny.synthesis(w[b : b + 1], [n[b : b + 1] for n in noise], feature_in=F5[b : b + 1])
            _close(batch[b : b + 1], one, atol=1e-5)


def test_tiny_noise_broadcast_and_buffers(tiny):
    w = torch.randn(2, 10, 64)
    n1 = tiny.make_noise(batch=1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = tiny.synthesis(w, n1)
        b = tiny.synthesis(w, [n.expand(2, -1, -1, -1).clone() for n in n1])
        _close(a, b, atol=1e-6)
        stored = tiny.synthesis(w)  # None -> noises.noise_i buffers
        _close(stored, tiny.synthesis(w, tiny.stored_noise()), atol=0)
        assert (stored - a).abs().max() > 1e-2  # the noise matters
        r1, _ = tiny([w], input_is_latent=True)  # randomize_noise: fresh noise each call
        r2, _ = tiny([w], input_is_latent=True)
        assert (r1 - r2).abs().max() > 1e-3
        f1, _ = tiny([w], input_is_latent=True, randomize_noise=False)
        _close(f1, stored, atol=0)


def test_tiny_w_broadcast_and_feature_scale(tiny):
    w = torch.randn(2, 64)
    with torch.no_grad():
        _close(tiny.synthesis(w), tiny.synthesis(w[:, None].repeat(1, 10, 1)), atol=0)
        ref = tiny.synthesis(w)
        f = torch.randn(2, 40, 8, 8)
        _close(tiny.synthesis(w, feature_in=f, feature_idx=3, feature_scale=0.0), ref, atol=1e-6)
        assert (tiny.synthesis(w, feature_in=f, feature_idx=3) - ref).abs().max() > 1e-2
        # replacing feature k by its own value changes nothing (even and odd k)
        for k in (2, 5, 8):
            own = tiny.features_at(w, k)
            _close(tiny.synthesis(w, feature_in=own, feature_idx=k), ref, atol=1e-5)


def test_tiny_style_mixing(tiny):
    z1, z2 = torch.randn(2, 64), torch.randn(2, 64)
    noise = tiny.make_noise()
    with torch.no_grad():
        img, latent = tiny([z1, z2], inject_index=4, noise=noise, return_latents=True)
        w1, w2 = tiny.mapping(z1), tiny.mapping(z2)
        ref = torch.cat([w1[:, None].expand(-1, 4, -1), w2[:, None].expand(-1, 6, -1)], 1)
        _close(latent, ref, atol=1e-6)
        _close(img, tiny.synthesis(ref, noise), atol=1e-5)


def test_tiny_memory_format_equal(tiny):
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        a = tiny.synthesis(w)
        tiny.channels_last = False
        try:
            b = tiny.synthesis(w)
        finally:
            tiny.channels_last = True
    _close(a, b, atol=1e-5)
    assert a.is_contiguous()


@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_gradients(batch):
    """In-place fused ops keep autograd correct (batch 1 folds the style into the weight)."""
    G = tiny_generator(3)
    w = torch.randn(batch, 10, 64, requires_grad=True)
    img = G.synthesis(w, G.make_noise(1))
    img.square().mean().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert G.convs[3].conv.weight.grad.abs().sum() > 0 and G.convs[3].noise.weight.grad.abs() > 0


def test_generator_exceptions(tiny):
    w = torch.randn(2, 10, 64)
    with pytest.raises(VidinvError, match="w must be"):
        tiny.synthesis(torch.randn(2, 9, 64))
    with pytest.raises(VidinvError, match="noise must be a list of 9"):
        tiny.synthesis(w, tiny.make_noise()[:5])
    bad = tiny.make_noise()
    bad[3] = torch.randn(1, 1, 8, 8)
    with pytest.raises(VidinvError, match=r"noise\[3\]"):
        tiny.synthesis(w, bad)
    with pytest.raises(VidinvError, match=r"noise\[0\]"):
        tiny.synthesis(w, tiny.make_noise(batch=3))
    with pytest.raises(VidinvError, match="feature 5 must be"):
        tiny.synthesis(w, feature_in=torch.randn(2, 40, 16, 16))
    with pytest.raises(VidinvError, match="feature index"):
        tiny.synthesis(w, feature_in=torch.randn(2, 32, 16, 16), feature_idx=10)
    with pytest.raises(VidinvError, match="k must be"):
        tiny.features_at(w, 10)
    with pytest.raises(VidinvError, match="z must be"):
        tiny.mapping(torch.randn(2, 10, 64))
    with pytest.raises(VidinvError, match="truncation_latent"):
        tiny([torch.randn(2, 64)], truncation=0.5)
    with pytest.raises(VidinvError, match="power of two"):
        Generator(100, 64, 2)
    with pytest.raises(VidinvError, match="no width"):
        Generator(64, 64, 2, channels={4: 8, 8: 8})


# ------------------------------------------------------------------ upfirdn2d against a direct reference
def _upfirdn_ref(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """Loop definition: zero-insert, pad (negative crops), correlate with the flipped kernel, decimate."""
    C, H, W = x.shape
    u = np.zeros((C, H * up, W * up), x.dtype)
    u[:, ::up, ::up] = x
    p0, p1 = pad
    u = np.pad(u, ((0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    u = u[:, max(-p0, 0) : u.shape[1] - max(-p1, 0), max(-p0, 0) : u.shape[2] - max(-p1, 0)]
    kf = k[::-1, ::-1]
    K = k.shape[0]
    oh, ow = u.shape[1] - K + 1, u.shape[2] - K + 1
    out = np.zeros((C, oh, ow), np.float64)
    for i in range(K):
        for j in range(K):
            out += kf[i, j] * u[:, i : i + oh, j : j + ow]
    return out[:, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, -1)),
                                         (2, 1, (1, 1))])
def test_upfirdn2d(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 7, generator=g)
    k = torch.rand(4, 4, generator=g)  # asymmetric: catches a missing flip
    out = upfirdn2d(x, k, up=up, down=down, pad=pad)
    ref = np.stack([_upfirdn_ref(xi, k.numpy().astype(np.float64), up, down, pad) for xi in x.double().numpy()])
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


# ------------------------------------------------------------------ fast paths equal the reference paths
@pytest.mark.parametrize("taps", [4, 6, 3])
def test_upsample_fast_equals_upfirdn(taps):
    from vidinv.models.stylegan2 import Upsample

    g = torch.Generator().manual_seed(taps)
    up = Upsample([1.0] * taps)
    up.kernel.copy_(torch.rand(taps, taps, generator=g))  # asymmetric: catches a flipped kernel
    for x in (torch.randn(2, 3, 9, 9, generator=g), torch.randn(2, 3, 9, 9, generator=g).to(
            memory_format=torch.channels_last)):
        ref = upfirdn2d(x, up.kernel, up=2, pad=up.pad)
        out = up(x)
        assert out.shape == ref.shape == (2, 3, 18, 18)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def _set_fast(G, on: bool) -> None:
    G.per_sample = on
    for m in G.modules():
        if hasattr(m, "fast"):
            m.fast = on


def test_batch_per_sample_equals_single_and_reference(tiny, monkeypatch):
    """A batch (one sample at a time from the big layers on) == each sample alone == the batched path."""
    g = torch.Generator().manual_seed(3)
    B = 4
    w = torch.randn(B, tiny.n_latent, tiny.style_dim, generator=g)
    noise = tiny.make_noise(B, generator=g)
    noise[3] = noise[3][:1]  # a batch-1 entry is shared
    f5 = torch.randn(B, *tiny.features_at(w[:1], 5).shape[1:], generator=g)
    calls = []
    orig = type(tiny)._per_sample
    monkeypatch.setattr(type(tiny), "_per_sample", lambda self, *a: calls.append(1) or orig(self, *a))
    with torch.no_grad():
        img, feats = tiny([w], input_is_latent=True, noise=noise, return_features=True,
                          features_in=[None] * 5 + [f5] + [None] * (tiny.n_latent - 6), feature_scale=0.7)
        assert calls, "the tiny generator should reach the per-sample switch"
        for b in range(B):
            nb = [n if n.shape[0] == 1 else n[b:b + 1] for n in noise]
            fin = [None] * 5 + [f5[b:b + 1]] + [None] * (tiny.n_latent - 6)
            one, fb = tiny([w[b:b + 1]], input_is_latent=True, noise=nb, return_features=True,
                           features_in=fin, feature_scale=0.7)
            torch.testing.assert_close(img[b:b + 1], one, atol=1e-5, rtol=0)
            for f, f1 in zip(feats, fb):
                torch.testing.assert_close(f[b:b + 1], f1, atol=1e-5, rtol=0)
        _set_fast(tiny, False)
        try:
            ref = tiny([w], input_is_latent=True, noise=noise, return_features=True,
                       features_in=[None] * 5 + [f5] + [None] * (tiny.n_latent - 6), feature_scale=0.7)
            ref_k = tiny.features_at(w, 7, noise)
        finally:
            _set_fast(tiny, True)
        torch.testing.assert_close(img, ref[0], atol=1e-5, rtol=0)
        assert len(feats) == len(ref[1]) == tiny.n_latent
        torch.testing.assert_close(tiny.features_at(w, 7, noise), ref_k, atol=1e-5, rtol=0)


def test_synthesis_from_resumes_and_checks(tiny):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(2, tiny.n_latent, tiny.style_dim, generator=g)
    with torch.no_grad():
        x, skip = tiny.features_at(w, 5, return_skip=True)
        torch.testing.assert_close(x, tiny.features_at(w, 5), atol=1e-6, rtol=0)
        torch.testing.assert_close(tiny.synthesis_from(5, x, skip, w), tiny.synthesis(w), atol=1e-5, rtol=0)
        with pytest.raises(VidinvError, match="return_skip needs"):
            tiny.features_at(w, 0, return_skip=True)
        with pytest.raises(VidinvError, match="feature 5 must be"):
            tiny.synthesis_from(5, x[:, :3], skip, w)
