"""Feature-Style encoder: golden parity with the official fs_encoder_v2 / downscale, layout, loading."""

from __future__ import annotations

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.models.fs_encoder import FSEncoder, FSInverter, downscale, load_fs_encoder, preprocess
from golden_utils import load_pt

ATOL = RTOL = 1e-4
NARROW = dict(n_styles=10, style_dim=64, widths=(8, 12, 16, 24), content_channels=32)


_load = load_pt


@pytest.fixture(scope="module")
def encoder(golden_narrow):
    return load_fs_encoder(golden_narrow / "fs_encoder.pt")


@pytest.fixture(scope="module")
def encoder_cases(golden_narrow):
    return _load(golden_narrow / "encoder_cases.pt")


@pytest.fixture(scope="module")
def encoded(encoder, encoder_cases):
    with torch.no_grad():
        return encoder(encoder_cases["inputs"]["x"], return_intermediates=True)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return FSEncoder(**NARROW).eval()


# ----------------------------------------------------------------------------- smoke / shapes


def test_smoke_tiny_factory():
    from vidinv.models.tiny import tiny_encoder

    E = tiny_encoder(0)
    with torch.no_grad():
        w, f = E(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert w.shape == (1, 10, 64) and f.shape == (1, 32, 16, 16)
    assert torch.isfinite(w).all() and torch.isfinite(f).all()


def test_cardinality_intermediates():
    with torch.no_grad():
        w, f, inter = _tiny()(torch.zeros(2, 3, 256, 256), return_intermediates=True)
    assert w.shape == (2, 10, 64) and f.shape == (2, 32, 16, 16)
    assert [tuple(b.shape) for b in inter["block_outputs"]] == [
        (2, 8, 128, 128), (2, 12, 64, 64), (2, 16, 32, 32), (2, 24, 16, 16)]  # fmt: skip
    assert [tuple(p.shape) for p in inter["pooled_features"]] == [(2, c, 3, 3) for c in (8, 12, 16, 24)]


def test_full_layout_keys():
    with torch.device("meta"):
        sd = FSEncoder().state_dict()
    assert len(sd) == 517
    assert sd["conv.0.weight"].shape == (64, 3, 3, 3)
    assert sd["content_layer.1.weight"].shape == (512, 256, 3, 3)
    assert sd["content_layer.4.weight"].shape == (512, 512, 3, 3)
    assert sd["styles.17.weight"].shape == (512, 8640) and "styles.18.weight" not in sd
    assert max(int(k.split(".")[1]) for k in sd if k.startswith("block_3.")) == 13
    assert "block_1.0.downsample.0.weight" in sd and "block_1.1.downsample.0.weight" not in sd


def test_narrow_keys_match_golden(golden_narrow):
    ref = _load(golden_narrow / "fs_encoder.pt")
    own = FSEncoder(**NARROW).state_dict()
    assert len(ref) == 501 and list(own) == list(ref)
    assert all(own[k].shape == ref[k].shape for k in ref)


def test_exception_bad_input():
    E = _tiny()
    with pytest.raises(VidinvError, match=r"\[B,3,H,W\]"):
        E(torch.zeros(1, 1, 256, 256))
    with pytest.raises(VidinvError, match="divisible by 16"):
        E(torch.zeros(1, 3, 250, 250))
    with pytest.raises(VidinvError, match="float"):
        E(torch.zeros(1, 3, 256, 256, dtype=torch.uint8))
    with pytest.raises(VidinvError):
        downscale(torch.zeros(3, 8, 8), 1)
    with pytest.raises(VidinvError):
        preprocess(torch.zeros(1, 4, 64, 64))


# ----------------------------------------------------------------------------- loading


def test_load_infers_sizes(encoder):
    assert isinstance(encoder, FSEncoder) and not encoder.training
    E = encoder
    assert (E.n_styles, E.style_dim, E.widths, E.content_channels) == (10, 64, (8, 12, 16, 24), 32)
    assert encoder.layers == (3, 4, 14, 3)


def test_load_strict_errors(golden_narrow):
    sd = _load(golden_narrow / "fs_encoder.pt")
    renamed = dict(sd)
    renamed["content_layer.9.weight"] = renamed.pop("content_layer.5.weight")
    with pytest.raises(VidinvError, match="content_layer.5.weight"):
        load_fs_encoder(renamed)
    no_styles = {k: v for k, v in sd.items() if not k.startswith("styles.")}
    with pytest.raises(VidinvError, match="styles.0.weight"):
        load_fs_encoder(no_styles)
    gap = {k: v for k, v in sd.items() if not k.startswith("styles.3.")}
    with pytest.raises(VidinvError, match="styles"):
        load_fs_encoder(gap)
    wide = dict(sd, **{"styles.0.weight": torch.zeros(64, 541)})
    with pytest.raises(VidinvError, match="styles.0.weight"):
        load_fs_encoder(wide)


def test_load_roundtrip_file(tmp_path):
    E = _tiny(5)
    torch.save(E.state_dict(), tmp_path / "enc.pth")
    E2 = load_fs_encoder(tmp_path / "enc.pth")
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        for a, b in zip(E(x), E2(x)):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------- golden parity


def test_feature_golden_w_and_content(encoded, encoder_cases):
    w, content, _ = encoded
    out = encoder_cases["outputs"]
    torch.testing.assert_close(w, out["w"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(content, out["content"], atol=ATOL, rtol=RTOL)


def test_feature_golden_block_outputs(encoded, encoder_cases):
    ref = encoder_cases["outputs"]["block_outputs"]
    checked = 0
    for got, want in zip(encoded[2]["block_outputs"], ref):
        if want is not None:  # block_1 is not stored in the narrow set
            torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
            checked += 1
    assert checked == 3


def test_feature_golden_pooled_features(encoded, encoder_cases):
    ref = encoder_cases["outputs"]["pooled_features"]
    assert len(ref) == 4
    for got, want in zip(encoded[2]["pooled_features"], ref):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


def test_feature_golden_downscale(golden_narrow):
    cases = _load(golden_narrow / "downscale_cases.pt")
    x = cases["inputs"]["x_uint8_1024"].float() / 127.5 - 1.0
    torch.testing.assert_close(downscale(x, 2), cases["outputs"]["y_uint8_1024"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(preprocess(x), cases["outputs"]["y_uint8_1024"], atol=ATOL, rtol=RTOL)
    y_small = downscale(cases["inputs"]["x_small"], 2)
    torch.testing.assert_close(y_small, cases["outputs"]["y_small"], atol=ATOL, rtol=RTOL)


def test_feature_golden_fs_edit_encode(golden_narrow, encoder):
    cases = _load(golden_narrow / "fs_edit_cases.pt")
    inp, out = cases["inputs"], cases["outputs"]
    x = downscale(inp["x"], inp["downscale_times"])
    with torch.no_grad():
        w_enc, f_0 = encoder(x)
        w_0, f_inv = FSInverter(encoder, inp["latent_avg"])(inp["x"])
    torch.testing.assert_close(w_enc, out["w_enc"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(f_0, out["f_0"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(w_0, out["w_0"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(f_inv, out["f_0"], atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- preprocess / inverter


def test_preprocess_sizes():
    torch.manual_seed(0)
    x1024 = torch.rand(1, 3, 1024, 1024) * 2 - 1
    assert torch.equal(preprocess(x1024), downscale(x1024, 2))
    x256 = torch.rand(2, 3, 256, 256)
    assert preprocess(x256) is x256
    assert preprocess(torch.rand(1, 3, 768, 768)).shape == (1, 3, 256, 256)
    assert preprocess(torch.rand(1, 3, 100, 100)).shape == (1, 3, 256, 256)
    # a constant image stays constant whatever the path
    c = torch.full((1, 3, 600, 600), 0.25)
    torch.testing.assert_close(preprocess(c), torch.full((1, 3, 256, 256), 0.25))


def test_inverter_adds_latent_avg():
    E = _tiny(1)
    avg = torch.randn(64)
    x = torch.rand(2, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        w_raw, f_raw = E(downscale(x, 1))
        w, f = FSInverter(E, avg)(x)
        w_psp, _ = FSInverter(E, avg.expand(10, 64))(x)
    torch.testing.assert_close(w, w_raw + avg)
    torch.testing.assert_close(w_psp, w)
    assert torch.equal(f, f_raw)


def test_inverter_exceptions():
    E = _tiny()
    with pytest.raises(VidinvError, match="latent_avg"):
        FSInverter(E, torch.zeros(32))
    with pytest.raises(VidinvError, match="latent_avg"):
        FSInverter(E, torch.zeros(9, 64))
    with pytest.raises(VidinvError, match="FSEncoder"):
        FSInverter(torch.nn.Identity(), torch.zeros(64))
    with pytest.raises(VidinvError):
        FSInverter(E, torch.zeros(64))(torch.zeros(1, 3, 64))


@pytest.mark.slow
def test_feature_golden_full(golden_narrow):
    """The full-size golden set (checked separately; skips when absent): encoder alone and the 1024 path."""
    full = golden_narrow.parent / "full"
    if not (full / "fs_encoder.pt").exists():
        pytest.skip(f"{full / 'fs_encoder.pt'} is absent (the full golden set is checked separately)")
    E = load_fs_encoder(full / "fs_encoder.pt")
    assert (E.n_styles, E.style_dim, E.widths, E.content_channels) == (18, 512, (64, 128, 256, 512), 512)
    cases = _load(full / "encoder_cases.pt")
    with torch.no_grad():
        w, content = E(cases["inputs"]["x"])
    torch.testing.assert_close(w, cases["outputs"]["w"], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(content, cases["outputs"]["content"], atol=1e-3, rtol=1e-3)
    edit = _load(full / "fs_edit_cases.pt")
    with torch.no_grad():
        w_0, f_0 = FSInverter(E, edit["inputs"]["latent_avg"])(edit["inputs"]["x"])  # 1024 -> two halvings
    torch.testing.assert_close(w_0, edit["outputs"]["w_0"], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(f_0, edit["outputs"]["f_0"], atol=1e-3, rtol=1e-3)


# ----------------------------------------------------------------------------- fast path == reference
def test_fast_path_equals_reference(encoder, encoder_cases):
    """Inference folds conv+BN and runs channels_last; the unfused module path gives the same values."""
    x = encoder_cases["inputs"]["x"]
    with torch.no_grad():
        fast = encoder(x, return_intermediates=True)
        encoder.fast = False
        try:
            ref = encoder(x, return_intermediates=True)
        finally:
            encoder.fast = True
    pairs = [(fast[0], ref[0]), (fast[1], ref[1]), *zip(fast[2]["block_outputs"], ref[2]["block_outputs"])]
    for a, b in pairs:
        scale = b.abs().max().item()  # float32 reassociation across ~50 layers: relative to the map's scale
        torch.testing.assert_close(a, b, atol=2e-5 * scale, rtol=1e-4)
        assert a.is_contiguous()


def test_fast_path_sees_weight_changes():
    enc = _tiny(1)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before = enc(x)[1]
        enc.block_3[0].bn3.running_var.mul_(4.0)  # in place: the folded weights must be rebuilt
        after = enc(x)[1]
        enc.fast = False
        ref = enc(x)[1]
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, ref, atol=1e-5, rtol=1e-5)
