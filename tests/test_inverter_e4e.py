"""e4e / pSp: golden parity with the official omertov/encoder4editing code, loading, the Inverter interface."""

from __future__ import annotations

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.inverters import INVERTERS, Inverter, available_inverters, load_inverter
from vidinv.inverters.e4e import E4EInverter, load_e4e_inverter, tiny_e4e_inverter
from vidinv.models.psp import (Encoder4Editing, GradualStyleEncoder, build_encoder, encoder_config_from_state_dict,
                               get_keys, load_psp_checkpoint)
from golden_utils import assert_max_error, latent_edit, load_pt

CODE_ATOL, IMAGE_ATOL = 1e-4, 1e-3  # README: 1-thread vs 2-thread differences are <= 3e-5 / 1e-4


_load = load_pt


@pytest.fixture(scope="module")
def folder(golden_inverters):
    return golden_inverters / "e4e"


@pytest.fixture(scope="module")
def ckpt(folder):
    return _load(folder / "e4e_ckpt.pt")


@pytest.fixture(scope="module")
def cases(folder):
    return _load(folder / "e4e_cases.pt")


@pytest.fixture(scope="module")
def inverter(folder):
    return load_e4e_inverter(folder / "e4e_ckpt.pt")


@pytest.fixture(scope="module")
def encoded(inverter, cases):
    with torch.no_grad():
        return inverter.model.encoder(cases["inputs"]["x"], return_features=True)


_close = assert_max_error


@pytest.fixture(scope="module")
def tiny():
    return tiny_e4e_inverter(0)


# ----------------------------------------------------------------------------- golden parity


def test_feature_golden_trunk(encoded, cases):
    _, (c1, c2, c3) = encoded
    for name, got in zip(("c1", "c2", "c3"), (c1, c2, c3)):
        _close(got, cases["outputs"][name], CODE_ATOL)


def test_feature_golden_w_enc(encoded, cases):
    _close(encoded[0], cases["outputs"]["w_enc"], CODE_ATOL)


@pytest.mark.parametrize("stage", [0, 4])
def test_feature_golden_progressive_stage(inverter, cases, stage):
    with torch.no_grad():
        w = inverter.model.encoder(cases["inputs"]["x"], stage=stage)
    _close(w, cases["outputs"][f"w_enc_stage{stage}"], CODE_ATOL)
    if stage == 0:  # pure W: every row equals row 0
        assert torch.equal(w, w[:, :1].expand_as(w))


def test_feature_golden_latents_and_inversion(inverter, cases):
    code = inverter.invert(cases["inputs"]["x"])
    _close(code["w"], cases["outputs"]["latents"], CODE_ATOL)
    _close(code["w"], cases["outputs"]["psp_forward_latents"], CODE_ATOL)
    _close(inverter.render(code), cases["outputs"]["inversion"], IMAGE_ATOL)  # batched
    for i in range(code["w"].shape[0]):  # per sample, as the official script
        _close(inverter.render({"w": code["w"][i:i + 1]}), cases["outputs"]["inversion"][i:i + 1], IMAGE_ATOL)


def test_feature_golden_edit(inverter, cases):
    inp, out = cases["inputs"], cases["outputs"]
    code = inverter.invert(inp["x"])
    w_edit = latent_edit(code["w"], inp["direction"], inp["factor"])
    _close(w_edit, out["edit_latents"], CODE_ATOL)
    _close(inverter.render(code, w_edit), out["edit_image"], IMAGE_ATOL)


def test_feature_golden_edit_through_apply_edits(inverter, cases):
    """The library's edit path (a W Direction on every layer, strength = e4e's factor) is e4e's edit."""
    from vidinv.editing.directions import Direction, apply_edits

    inp, out = cases["inputs"], cases["outputs"]
    code = inverter.invert(inp["x"])
    d = Direction("random", "w", inp["direction"][0])
    w_edit = apply_edits(code["w"], [(d, inp["factor"])])
    _close(w_edit, out["edit_latents"], CODE_ATOL)
    _close(inverter.render(code, w_edit), out["edit_image"], IMAGE_ATOL)


def test_feature_golden_noise_list_equals_buffers(inverter, cases):
    code = {"w": cases["outputs"]["latents"]}
    _close(inverter.render(code, noise=list(cases["inputs"]["noise"])), cases["outputs"]["inversion"], IMAGE_ATOL)


def test_feature_latent_avg_rows_are_used(inverter, ckpt, cases):
    la = ckpt["latent_avg"]
    assert not torch.equal(la[0], la[1])  # the fixture has distinct rows
    code = inverter.invert(cases["inputs"]["x"])
    _close(code["w"] - cases["outputs"]["w_enc"], la.expand_as(code["w"]), CODE_ATOL)


def test_feature_latent_avg_option(ckpt, cases):
    """pSp adds latent_avg only with opts.start_from_latent_avg; e4e's inference always adds it."""
    opts = {**ckpt["opts"], "start_from_latent_avg": False}
    m = load_psp_checkpoint({**ckpt, "opts": opts})
    assert m.latent_avg is None
    with torch.no_grad():
        _close(m.encode(cases["inputs"]["x"]), cases["outputs"]["w_enc"], CODE_ATOL)
    inv = load_e4e_inverter({**ckpt, "opts": opts})
    assert torch.equal(inv.model.latent_avg, ckpt["latent_avg"])


def test_feature_psp_encoder_on_e4e_weights(ckpt, cases, encoded):
    """pSp's encoder has e4e's layout; its rows are e4e's deltas (row 0 = e4e's W)."""
    psp = build_encoder(get_keys(ckpt["state_dict"], "encoder"), "GradualStyleEncoder")
    assert isinstance(psp, GradualStyleEncoder)
    with torch.no_grad():
        w_psp = psp(cases["inputs"]["x"])
    w_e4e = encoded[0]
    _close(w_psp[:, :1], w_e4e[:, :1], CODE_ATOL)
    _close(w_psp[:, 1:], w_e4e[:, 1:] - w_e4e[:, :1], 2 * CODE_ATOL)


# ----------------------------------------------------------------------------- loading


def test_cardinality_full_size_layout():
    """The default (official) sizes give the README's full e4e layout: 621 encoder keys (built on meta)."""
    with torch.device("meta"):
        enc = Encoder4Editing()
    sd = enc.state_dict()
    assert len(sd) == 621
    assert sd["styles.17.convs.10.weight"].shape == (512, 512, 3, 3) and "styles.17.convs.12.weight" not in sd
    assert "body.0.shortcut_layer.0.weight" not in sd  # 64 -> 64: parameterless MaxPool shortcut
    assert sd["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    cfg = encoder_config_from_state_dict(sd)
    assert cfg == {"widths": [64, 128, 256, 512], "units": [3, 4, 14, 3], "style_count": 18, "style_dim": 512,
                   "se_hidden": [4, 8, 16, 32], "head_convs": [4] * 3 + [5] * 4 + [6] * 11}
    assert enc.c_idx == (6, 20, 23)  # the official c1/c2/c3 body indices


def test_load_through_registry(folder, cases):
    assert "e4e" in available_inverters() and "psp" in available_inverters()
    inv = load_inverter("e4e", folder / "e4e_ckpt.pt")
    assert isinstance(inv, Inverter) and isinstance(inv, E4EInverter)
    assert (inv.name, inv.size, inv.n_latent, inv.style_dim) == ("e4e", 64, 10, 32)
    assert INVERTERS["e4e"] is load_e4e_inverter
    psp = load_inverter("psp", _load(folder / "e4e_ckpt.pt"))  # the checkpoint's opts say Encoder4Editing
    assert psp.name == "psp" and type(psp.model.encoder).__name__ == "Encoder4Editing"


def test_exception_strict_loading(ckpt):
    sd = dict(ckpt["state_dict"])
    del sd["encoder.styles.3.linear.bias"]
    with pytest.raises(VidinvError, match="missing"):
        load_psp_checkpoint({**ckpt, "state_dict": sd})
    sd = dict(ckpt["state_dict"])
    sd["encoder.latlayer1.extra"] = torch.zeros(1)
    with pytest.raises(VidinvError, match="unexpected"):
        load_psp_checkpoint({**ckpt, "state_dict": sd})
    sd = dict(ckpt["state_dict"])
    sd["encoder.latlayer2.bias"] = torch.zeros(5)
    with pytest.raises(VidinvError, match="shape"):
        load_psp_checkpoint({**ckpt, "state_dict": sd})
    with pytest.raises(VidinvError, match="encoder_type"):
        load_psp_checkpoint(ckpt, encoder_type="BackboneEncoderUsingLastLayerIntoW")
    with pytest.raises(VidinvError, match="pSp/e4e checkpoint"):
        load_psp_checkpoint({"g_ema": {}})


def test_exception_unknown_method():
    with pytest.raises(VidinvError, match="unknown inverter"):
        load_inverter("no-such-method", {})


def test_exception_pickle_refused(tmp_path):
    import argparse

    p = tmp_path / "pickled.pt"
    torch.save({"opts": argparse.Namespace(encoder_type="Encoder4Editing")}, p)  # needs unpickling code
    with pytest.raises(VidinvError, match="unpickl|allow_pickle"):
        load_e4e_inverter(p)
    with pytest.raises(VidinvError, match="not found"):
        load_e4e_inverter(tmp_path / "absent.pt")


# ----------------------------------------------------------------------------- tiny model / interface


def test_smoke_tiny(tiny):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    code = tiny.invert(x)
    assert set(code) == {"w"} and code["w"].shape == (2, tiny.n_latent, tiny.style_dim)
    img = tiny.render(code)
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()


def test_feature_batch_equals_single(tiny):
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    w = tiny.invert(x)["w"]
    w1 = torch.cat([tiny.invert(x[i:i + 1])["w"] for i in range(2)])
    torch.testing.assert_close(w, w1, atol=1e-5, rtol=1e-5)
    img, img1 = tiny.render({"w": w}), torch.cat([tiny.render({"w": w[i:i + 1]}) for i in range(2)])
    torch.testing.assert_close(img, img1, atol=1e-4, rtol=1e-4)


def test_feature_input_size_preprocess(tiny):
    """A 512 crop is halved once to the encoder's 256 input."""
    import torch.nn.functional as F

    x = torch.rand(1, 3, 512, 512) * 2 - 1
    half = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    torch.testing.assert_close(tiny.invert(x)["w"], tiny.invert(half)["w"])


def test_feature_edit_changes_only_with_direction(tiny):
    code = tiny.invert(torch.rand(2, 3, 64, 64) * 2 - 1)
    d = torch.randn(1, tiny.style_dim)
    assert torch.equal(latent_edit(code["w"], d, 0.0), code["w"])
    w_edit = latent_edit(code["w"], d, torch.tensor([0.0, 2.0]))
    assert torch.equal(w_edit[0], code["w"][0])
    torch.testing.assert_close(w_edit[1] - code["w"][1], 2 * d.expand(tiny.n_latent, -1))
    img0, img = tiny.render(code), tiny.render(code, w_edit)
    assert torch.allclose(img[0], img0[0], atol=1e-5) and not torch.allclose(img[1], img0[1], atol=1e-3)


def test_exception_bad_inputs(tiny):
    with pytest.raises(VidinvError, match="B,3"):
        tiny.invert(torch.zeros(3, 64, 64))
    with pytest.raises(VidinvError, match="float"):
        tiny.invert(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(VidinvError, match="square"):
        tiny.invert(torch.zeros(1, 3, 64, 32))
    with pytest.raises(VidinvError, match="'w'|w"):
        tiny.render({"F": torch.zeros(1, 3)})
    code = {"w": torch.zeros(2, tiny.n_latent, tiny.style_dim)}
    with pytest.raises(VidinvError, match="rows|expected"):
        tiny.render(code, torch.zeros(2, 3, tiny.style_dim))
    with pytest.raises(VidinvError, match="batch"):
        tiny.render(code, torch.zeros(1, tiny.n_latent, tiny.style_dim))


# ----------------------------------------------------------------------------- full-size set (when present)


@pytest.mark.slow
def test_feature_golden_full(golden_inverters):
    """The official-size set (``full/e4e``, 1.2 GB, not shipped with the narrow fixtures): every output."""
    folder = golden_inverters / "full" / "e4e"
    if not (folder / "e4e_ckpt.pt").exists():
        pytest.skip(f"{folder} is absent (the full-size golden set is checked separately)")
    inv = load_e4e_inverter(folder / "e4e_ckpt.pt")
    assert (inv.size, inv.n_latent, inv.style_dim) == (1024, 18, 512)
    cs = _load(folder / "e4e_cases.pt")
    inp, out = cs["inputs"], cs["outputs"]
    with torch.no_grad():
        w, (c1, c2, c3) = inv.model.encoder(inp["x"], return_features=True)
        for name, got in (("c1", c1), ("c2", c2), ("c3", c3), ("w_enc", w)):
            _close(got, out[name], CODE_ATOL)
        for stage in (0, 4):
            _close(inv.model.encoder(inp["x"], stage=stage), out[f"w_enc_stage{stage}"], CODE_ATOL)
    code = inv.invert(inp["x"])
    _close(code["w"], out["latents"], CODE_ATOL)
    _close(code["w"], out["psp_forward_latents"], CODE_ATOL)
    image = inv.render(code)
    _close(image, out["inversion"], IMAGE_ATOL)
    _close(torch.nn.functional.adaptive_avg_pool2d(image, (256, 256)), out["psp_forward_image_256"], IMAGE_ATOL)
    w_edit = latent_edit(code["w"], inp["direction"], inp["factor"])
    _close(w_edit, out["edit_latents"], CODE_ATOL)
    _close(inv.render(code, w_edit), out["edit_image"], IMAGE_ATOL)
