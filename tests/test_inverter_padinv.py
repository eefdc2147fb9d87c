"""PadInv: golden parity with the official code (narrow set), loading, the Inverter wrapper, tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.inverters import Inverter, load_inverter
from vidinv.inverters.padinv import PadInvInverter, tiny_padinv_inverter
from vidinv.models.padinv import load_padinv, modulated_conv, split_padinv_checkpoint
from golden_utils import assert_max_error

CODE_ATOL = 1e-4  # README: one thread vs two moves style_latents 2e-5, padding maps 4.6e-5
IMG_ATOL = 1e-3  # images up to ~100 in magnitude; one thread moves them 3.9e-4


_close = assert_max_error


@pytest.fixture(scope="module")
def folder(golden_inverters):
    d = golden_inverters / "padinv"
    if not (d / "padinv_checkpoint.pt").exists():
        pytest.skip(f"{d} has no PadInv golden set")
    return d


@pytest.fixture(scope="module")
def ckpt(folder):
    return torch.load(folder / "padinv_checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cases(folder):
    return torch.load(folder / "padinv_cases.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model(folder):
    return load_padinv(folder / "padinv_checkpoint.pt")


@pytest.fixture(scope="module")
def tiny():
    return tiny_padinv_inverter(0)


# ------------------------------------------------------------------ golden parity
def test_golden_encoder(model, cases):
    E, _ = model
    with torch.no_grad():
        out = E(cases["inputs"]["x"])
    _close(out["style_latents"], cases["outputs"]["style_latents"], CODE_ATOL)
    want = cases["outputs"]["padding_maps"]
    assert len(out["padding_maps"]) == len(want) == 10
    for i, (a, b) in enumerate(zip(out["padding_maps"], want)):
        assert (a is None) == (b is None), f"padding map {i}"
        if b is not None:
            _close(a, b, CODE_ATOL)


@pytest.mark.parametrize(
    "latents,maps,image",
    [
        ("style_latents", True, "image"),
        ("edit_latents", True, "edit_image"),
        ("style_latents", False, "image_no_padding"),
    ],
)
def test_golden_synthesis(model, cases, latents, maps, image):
    _, G = model
    O = cases["outputs"]
    pm = [None if m is None else m.clone() for m in O["padding_maps"]] if maps else None
    with torch.no_grad():
        img = G.render(O[latents], pm)
    _close(img, O[image], IMG_ATOL)
    if maps:  # the official call writes into the maps in place; ours leaves them untouched
        for a, b in zip(pm, O["padding_maps"]):
            assert a is None or torch.equal(a, b)


def test_golden_edit_latents(cases):
    I, O = cases["inputs"], cases["outputs"]
    _close(O["style_latents"] + I["factor"] * I["direction"], O["edit_latents"], 1e-6)


def test_golden_w_avg_is_mean_mapping(model, ckpt):
    """README: w_avg = mean of mapping(z) over 4096 z drawn from a torch.Generator seeded 1006."""
    E, G = model
    g = torch.Generator().manual_seed(1006)
    with torch.no_grad():
        w = G.mapping(torch.randn(4096, G.mapping.dense0.weight.shape[1], generator=g))
    _close(w.mean(0), ckpt["models"]["generator"]["w_avg"], 1e-5)
    assert torch.equal(E.avg_latent, ckpt["models"]["generator"]["w_avg"])


def test_golden_inverter_roundtrip(folder, cases):
    inv = load_inverter("padinv", folder / "padinv_checkpoint.pt")
    assert isinstance(inv, PadInvInverter) and isinstance(inv, Inverter)
    assert (inv.size, inv.n_latent, inv.style_dim) == (64, 10, 32)
    I, O = cases["inputs"], cases["outputs"]
    code = inv.invert(I["x"])
    assert sorted(code) == ["pad0", "pad1", "pad3", "pad5", "pad7", "w"]
    assert all(v.shape[0] == 2 for v in code.values())
    _close(code["w"], O["style_latents"], CODE_ATOL)
    _close(inv.render(code), O["image"], IMG_ATOL)
    _close(inv.render(code, w_edit=code["w"] + I["factor"] * I["direction"]), O["edit_image"], IMG_ATOL)
    # per-frame split and re-stack gives the same frames
    one = {k: v[1:] for k, v in code.items()}
    _close(inv.render(one), O["image"][1:], IMG_ATOL)


# ------------------------------------------------------------------ loading
def test_loading_variants(ckpt, cases):
    O = cases["outputs"]
    bare = dict(ckpt["models"])  # a file without 'models' is the models dict itself
    bare["generator_smooth"] = None  # falsy -> 'generator'
    E, G = load_padinv(bare)
    with torch.no_grad():
        _close(G.render(O["style_latents"]), O["image_no_padding"], IMG_ATOL)
    esd, gsd, avg = split_padinv_checkpoint(ckpt)
    assert gsd is not ckpt["models"]["generator"] and torch.equal(avg, ckpt["models"]["generator"]["w_avg"])


def test_loading_errors(ckpt, tmp_path):
    with pytest.raises(VidinvError, match="models"):
        load_padinv({"foo": {}})
    bad = copy.copy(ckpt["models"])
    bad["encoder"] = {
        k: v for k, v in ckpt["models"]["encoder"].items() if not k.startswith("fpn.lateral_layers.1")
    }
    with pytest.raises(VidinvError, match="fpn.lateral_layers.1"):
        load_padinv(bad)
    bad = copy.copy(ckpt["models"])
    bad["generator"] = dict(ckpt["models"]["generator"], extra=torch.zeros(1))
    bad["generator_smooth"] = bad["generator"]
    with pytest.raises(VidinvError, match="unexpected keys: extra"):
        load_padinv(bad)
    with pytest.raises(VidinvError):
        load_padinv(tmp_path / "missing.pt")
    with pytest.raises(VidinvError, match="unknown inverter"):
        load_inverter("nope", {})


# ------------------------------------------------------------------ tiny model
def test_tiny_smoke_and_cardinality(tiny):
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # resized to 256 for the encoder
    code = tiny.invert(x)
    assert code["w"].shape == (2, tiny.n_latent, tiny.style_dim) == (2, 10, 32)
    assert code["pad0"].shape == (2, 32, 34, 34)
    img = tiny.render(code)
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()


def test_tiny_padding_is_used(tiny):
    code = tiny.invert(torch.rand(1, 3, 256, 256) * 2 - 1)
    full = tiny.render(code)
    no_pad1 = tiny.render({k: v for k, v in code.items() if k != "pad1"})
    only_w = tiny.render({"w": code["w"]})
    assert (full - no_pad1).abs().max() > 1e-3
    assert (full - only_w).abs().max() > 1e-2
    # the maps are only read at the border: the const replacement is cropped to the 4x4 center
    pm = dict(code)
    pm["pad0"] = code["pad0"].clone()
    pm["pad0"][..., :10, :] += 100
    torch.testing.assert_close(tiny.render(pm), full)


def test_tiny_edit(tiny):
    code = tiny.invert(torch.rand(2, 3, 256, 256) * 2 - 1)
    d = torch.randn(tiny.style_dim)
    a = tiny.render(code, w_edit=code["w"] + d)
    assert torch.isfinite(a).all() and (a - tiny.render(code)).abs().max() > 1e-3
    w_flat = code["w"][:, 0]  # a W code [B,sd] is broadcast to all rows
    torch.testing.assert_close(
        tiny.render(code, w_edit=w_flat),
        tiny.render(code, w_edit=w_flat[:, None].expand(-1, tiny.n_latent, -1)),
    )


def test_tiny_batch_consistency(tiny):
    code = tiny.invert(torch.rand(2, 3, 256, 256) * 2 - 1)
    both = tiny.render(code)
    for i in range(2):
        torch.testing.assert_close(
            tiny.render({k: v[i : i + 1] for k, v in code.items()}), both[i : i + 1], atol=1e-4, rtol=1e-4
        )


def test_tiny_noise_override(tiny):
    code = tiny.invert(torch.rand(1, 3, 256, 256) * 2 - 1)
    G = tiny.generator
    bufs = [getattr(G.synthesis, f"layer{k}").noise for k in range(G.synthesis.n_conv)]
    torch.testing.assert_close(tiny.render(code, noise=bufs), tiny.render(code))
    other = tiny.render(code, noise=[torch.randn_like(b) for b in bufs])
    assert (other - tiny.render(code)).abs().max() > 1e-4


def test_exceptions(tiny):
    with pytest.raises(VidinvError, match=r"\[B,3,H,W\]"):
        tiny.invert(torch.rand(3, 64, 64))
    code = tiny.invert(torch.rand(2, 3, 256, 256))
    with pytest.raises(VidinvError, match="batch"):
        tiny.render(code, w_edit=code["w"][:1])
    with pytest.raises(VidinvError, match="rows"):
        tiny.render(code, w_edit=code["w"][:, :5])
    with pytest.raises(VidinvError, match="missing"):
        tiny.render({"pad0": code["pad0"]})
    with pytest.raises(VidinvError, match="smaller"):
        tiny.render(dict(code, pad0=code["pad0"][..., :3, :3]))
    with pytest.raises(VidinvError, match="noise_mode"):
        PadInvInverter(tiny.encoder, tiny.generator, noise_mode="random")


def test_modulated_conv_per_sample_weights_match_shared():
    """A per-sample weight stack equal to the shared weight gives the shared result (all branches)."""
    g = torch.Generator().manual_seed(0)
    x, s = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, generator=g) + 1
    w = torch.randn(5, 4, 3, 3, generator=g)
    k = torch.tensor([[1.0, 3, 3, 1]]).T @ torch.tensor([[1.0, 3, 3, 1]]) / 64
    pm_in, pm_out = torch.randn(2, 4, 20, 20, generator=g), torch.randn(1, 5, 20, 20, generator=g)
    for kw in (
        dict(),
        dict(padding_map=pm_in),
        dict(up=2, kernel=k),
        dict(up=2, kernel=k, padding_map=pm_out),
        dict(demodulate=False),
    ):
        a = modulated_conv(x, w, s, **kw)
        b = modulated_conv(x, w.expand(2, -1, -1, -1, -1), s, **kw)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert modulated_conv(x, w, s, up=2, kernel=k).shape == (2, 5, 12, 12)


def test_encoder_variants_inferred_from_keys(ckpt, cases):
    """No padding keys: pSp-like (no maps); no modulation heads: every padded layer gets the same map."""
    O, x = cases["outputs"], cases["inputs"]["x"][:1]
    models = dict(ckpt["models"])
    enc = models["encoder"]
    models["encoder"] = {k: v for k, v in enc.items() if not k.startswith("padding_")}
    E, _ = load_padinv(models)
    with torch.no_grad():
        out = E(x)
    assert out["padding_maps"] == [None] * 10
    _close(out["style_latents"], O["style_latents"][:1], CODE_ATOL)
    models["encoder"] = {k: v for k, v in enc.items() if not k.startswith("padding_modulation_heads")}
    E, _ = load_padinv(models)
    with torch.no_grad():
        maps = E(x)["padding_maps"]
    _close(maps[0], O["padding_maps"][0][:1], CODE_ATOL)
    assert [i for i, m in enumerate(maps) if m is not None] == [0, 1, 3, 5, 7]
    assert all(maps[i] is maps[0] for i in (1, 3, 5, 7))
