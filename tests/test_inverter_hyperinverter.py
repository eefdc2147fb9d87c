"""HyperInverter: golden parity with the official code (narrow set), loading, Inverter wrapper, tiny model."""

from __future__ import annotations

import pickle

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.inverters import Inverter, load_inverter
from vidinv.inverters.hyperinverter import HyperInverterInverter, tiny_hyperinverter_inverter
from vidinv.models.hyperinverter import (
    AdaGenerator,
    convert_ada_pickle,
    load_ada_generator,
    load_hyperinverter,
    target_w_idx,
)
from golden_utils import assert_max_error

CODE_ATOL = 1e-4  # README suggestion: codes and predicted weights
IMG_ATOL = 1e-3  # images (up to ~11 here)
RTOL_BIG = 1e-4  # w_image_codes reach ~385: relative


_close = assert_max_error


@pytest.fixture(scope="module")
def folder(golden_inverters):
    d = golden_inverters / "hyperinverter"
    if not (d / "hyper_inverter.pt").exists():
        pytest.skip(f"{d} has no HyperInverter golden set")
    return d


@pytest.fixture(scope="module")
def cases(folder):
    return torch.load(folder / "hyperinverter_cases.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def net(folder):
    return load_hyperinverter(folder / "hyper_inverter.pt", folder / "stylegan2_ada_ffhq.pt")


@pytest.fixture(scope="module")
def result(net, cases):
    with torch.no_grad():
        return net(cases["inputs"]["x"])


@pytest.fixture(scope="module")
def tiny():
    return tiny_hyperinverter_inverter(0)


# ------------------------------------------------------------------ golden parity
@pytest.mark.parametrize(
    "key,atol,rtol",
    [
        ("w_enc", CODE_ATOL, 0),
        ("w_codes", CODE_ATOL, 0),
        ("w_images", IMG_ATOL, 0),
        ("w_bar_codes", CODE_ATOL, RTOL_BIG),
        ("w_image_codes", CODE_ATOL, RTOL_BIG),
        ("final_images", IMG_ATOL, 0),
    ],
)
def test_golden_forward(result, cases, key, atol, rtol):
    _close(result[key], cases["outputs"][key], atol, rtol)


def test_golden_predicted_weights(result, cases):
    want = cases["outputs"]["predicted_weights"]
    assert list(result["predicted_weights"]) == list(want)  # the official 14 targets, in order
    for k, v in want.items():
        _close(result["predicted_weights"][k], v, CODE_ATOL)
    # the residual is not negligible: it moves the image
    assert (cases["outputs"]["final_images"] - cases["outputs"]["w_images"]).abs().max() > 0.1


def test_golden_edit(net, result, cases):
    I, O = cases["inputs"], cases["outputs"]
    _close(O["w_codes"] + I["factor"] * I["direction"], O["edit_latents"], 1e-6)
    with torch.no_grad():
        img = net.decoder.render(O["edit_latents"], result["predicted_weights"])
    _close(img, O["edit_image"], IMG_ATOL)


def test_golden_w_avg_is_mean_mapping(net):
    """README: w_avg = mean over 4096 z (torch.Generator seeded 1006) of mapping(z)."""
    g = torch.Generator().manual_seed(1006)
    with torch.no_grad():
        w = net.decoder.mapping(torch.randn(4096, net.decoder.mapping.fc0.weight.shape[1], generator=g))
    _close(w.mean(0), net.decoder.mapping.w_avg, 1e-5)


def test_golden_inverter(folder, cases):
    I, O = cases["inputs"], cases["outputs"]
    inv = load_inverter(
        "hyperinverter", folder / "hyper_inverter.pt", generator=folder / "stylegan2_ada_ffhq.pt"
    )
    assert isinstance(inv, HyperInverterInverter) and isinstance(inv, Inverter)
    assert (inv.size, inv.n_latent, inv.style_dim) == (64, 10, 32)
    code = inv.invert(I["x"])
    assert sorted(code) == ["w", "w_bar_codes", "w_image_codes"]
    _close(code["w"], O["w_codes"], CODE_ATOL)
    _close(code["w_image_codes"], O["w_image_codes"], CODE_ATOL, RTOL_BIG)
    _close(inv.render(code), O["final_images"], IMG_ATOL)
    d = I["factor"] * I["direction"]  # a W direction [1, sd], broadcast over the rows
    _close(inv.render(code, w_edit=code["w"][:, 0] + d), O["edit_image"], IMG_ATOL)
    _close(inv.render({k: v[1:] for k, v in code.items()}), O["final_images"][1:], IMG_ATOL)
    stored = HyperInverterInverter(inv.net, store_weights=True).invert(I["x"][1:])
    assert sum(k.startswith("dw.") for k in stored) == 14
    _close(stored["dw.b64.conv1.weight"], O["predicted_weights"]["b64.conv1.weight"][1:], CODE_ATOL)
    _close(inv.render(stored, w_edit=O["edit_latents"][1:]), O["edit_image"][1:], IMG_ATOL)


# ------------------------------------------------------------------ loading
def test_loading_variants(folder, cases):
    """w_encoder.pt given explicitly, the embedded w_encoder.* copy, the generator from decoder.*."""
    ck = torch.load(folder / "hyper_inverter.pt", weights_only=True)
    wenc = torch.load(folder / "w_encoder.pt", weights_only=True)
    x = cases["inputs"]["x"][:1]
    for net in (
        load_hyperinverter(ck, wenc, w_encoder=wenc),  # generator from the pSp wrapper's decoder.*
        load_hyperinverter(ck, torch.load(folder / "stylegan2_ada_ffhq.pt", weights_only=True)["G_ema"]),
    ):
        with torch.no_grad():
            _close(net(x)["final_images"], cases["outputs"]["final_images"][:1], IMG_ATOL)


def test_loading_errors(folder, tmp_path):
    ck = torch.load(folder / "hyper_inverter.pt", weights_only=True)
    gen = folder / "stylegan2_ada_ffhq.pt"
    with pytest.raises(VidinvError, match="generator="):
        load_inverter("hyperinverter", ck)
    with pytest.raises(VidinvError, match="convert_ada_pickle"):
        load_ada_generator(tmp_path / "ffhq.pkl")
    bad = {
        "state_dict": {k: v for k, v in ck["state_dict"].items() if not k.endswith("b8_conv0_weight.b2")},
        "opts": ck["opts"],
    }
    with pytest.raises(VidinvError, match="b8_conv0_weight.b2"):
        load_hyperinverter(bad, gen)
    with pytest.raises(VidinvError, match="state_dict"):
        load_hyperinverter({"foo": 1}, gen)
    g = dict(torch.load(gen, weights_only=True)["G_ema"])
    g.pop("synthesis.b64.torgb.bias")
    with pytest.raises(VidinvError, match="synthesis.b64.torgb.bias"):
        load_ada_generator(g)


class _StandInG:
    """What the official loader uses of the NVlabs pickle: ``state_dict()`` and ``init_kwargs``."""

    def __init__(self, sd, kwargs):
        self.sd, self.init_kwargs = sd, kwargs

    def state_dict(self):
        return self.sd


def test_convert_ada_pickle(folder, tmp_path):
    ref = torch.load(folder / "stylegan2_ada_ffhq.pt", weights_only=True)
    pkl = tmp_path / "stand_in.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"G_ema": _StandInG(ref["G_ema"], ref["G_ema_init_kwargs"])}, f)
    out = convert_ada_pickle(pkl, tmp_path / "g.pt")
    conv = torch.load(out, weights_only=True)  # plain data now
    assert conv["G_ema_init_kwargs"] == ref["G_ema_init_kwargs"]
    G = load_ada_generator(out)
    assert isinstance(G, AdaGenerator) and (G.size, G.num_ws, G.w_dim) == (64, 10, 32)
    assert all(torch.equal(G.state_dict()[k], v) for k, v in ref["G_ema"].items())


def test_target_w_idx():
    """The official table: b4.conv1 -> 0, b4.torgb -> 1, b{2^(k+2)}.conv0 -> 2k, conv1/torgb -> 2k+1."""
    assert [
        target_w_idx(n)
        for n in (
            "b4.conv1.weight",
            "b4.torgb.weight",
            "b8.conv0.weight",
            "b8.conv1.weight",
            "b8.torgb.weight",
            "b1024.conv0.weight",
            "b1024.torgb.weight",
        )
    ] == [0, 1, 2, 3, 3, 16, 17]
    with pytest.raises(VidinvError, match="unsupported"):
        target_w_idx("b4.conv1.affine.weight")


# ------------------------------------------------------------------ tiny model
def test_tiny_smoke_and_cardinality(tiny):
    code = tiny.invert(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert code["w"].shape == (2, 10, 32)
    assert code["w_bar_codes"].shape == code["w_image_codes"].shape == (2, 10, 32, 8, 8)
    torch.testing.assert_close(code["w"][:, 0], code["w"][:, -1])  # a W code, broadcast
    img = tiny.render(code)
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()


def test_tiny_residuals_are_used_per_sample(tiny):
    code = tiny.invert(torch.rand(2, 3, 256, 256) * 2 - 1)
    both = tiny.render(code)
    plain = tiny.net.decoder.render(code["w"])  # the W image, no residual
    assert (both - plain).abs().max() > 1e-3
    for i in range(2):
        torch.testing.assert_close(
            tiny.render({k: v[i : i + 1] for k, v in code.items()}), both[i : i + 1], atol=1e-4, rtol=1e-4
        )
    zero = {k: torch.zeros_like(v) for k, v in tiny.predicted_weights(code).items()}
    torch.testing.assert_close(tiny.net.decoder.render(code["w"], zero), plain, atol=1e-5, rtol=1e-5)


def test_tiny_store_weights_and_edit(tiny):
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    stored = HyperInverterInverter(tiny.net, store_weights=True).invert(x)
    code = tiny.invert(x)
    torch.testing.assert_close(tiny.render(stored), tiny.render(code))
    d = torch.randn(tiny.style_dim)
    a = tiny.render(code, w_edit=code["w"][:, 0] + d)
    torch.testing.assert_close(a, tiny.render(code, w_edit=code["w"] + d))
    assert (a - tiny.render(code)).abs().max() > 1e-3


def test_exceptions(tiny):
    with pytest.raises(VidinvError, match=r"\[B,3,H,W\]"):
        tiny.invert(torch.rand(2, 1, 64, 64))
    code = tiny.invert(torch.rand(2, 3, 64, 64))
    with pytest.raises(VidinvError, match="batch"):
        tiny.render(code, w_edit=code["w"][:1])
    with pytest.raises(VidinvError, match="missing"):
        tiny.render({"w": code["w"]})
    with pytest.raises(VidinvError, match=r"\[B,32\]"):
        tiny.render(code, w_edit=torch.zeros(2, 7))
    with pytest.raises(VidinvError, match="noise_mode"):
        HyperInverterInverter(tiny.net, noise_mode="random")
