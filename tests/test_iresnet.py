"""ArcFace IResNet-50: golden parity with the official arcface/iresnet.py, layout, strict loading."""

from __future__ import annotations

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.models.iresnet import IResNet, iresnet50, load_iresnet
from golden_utils import load_pt

ATOL = RTOL = 1e-4
NARROW = dict(widths=(8, 12, 16, 24), embedding=64)


_load = load_pt


@pytest.fixture(scope="module")
def golden(golden_narrow):
    return load_iresnet(golden_narrow / "iresnet50.pt"), _load(golden_narrow / "iresnet50_cases.pt")


def _tiny(seed=0):
    torch.manual_seed(seed)
    return iresnet50(**NARROW).eval()


def test_smoke():
    with torch.no_grad():
        emb = _tiny()(torch.rand(1, 3, 112, 112) * 2 - 1)
    assert emb.shape == (1, 64) and torch.isfinite(emb).all()


def test_cardinality_return_features():
    with torch.no_grad():
        feats = _tiny()(torch.zeros(2, 3, 112, 112), return_features=True)
    shapes = [(2, 8, 56, 56), (2, 12, 28, 28), (2, 16, 14, 14), (2, 24, 7, 7), (2, 64)]
    assert [tuple(f.shape) for f in feats] == shapes


def test_full_layout_keys():
    with torch.device("meta"):
        sd = iresnet50().state_dict()
    assert len(sd) == 475
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    assert sd["layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert sd["fc.weight"].shape == (512, 512 * 49)
    assert sd["features.weight"].shape == (512,)
    top = {"conv1", "bn1", "prelu", "layer1", "layer2", "layer3", "layer4", "bn2", "fc", "features"}
    assert {k.split(".")[0] for k in sd} == top
    assert max(int(k.split(".")[1]) for k in sd if k.startswith("layer3.")) == 13


def test_narrow_keys_match_golden(golden_narrow):
    ref = _load(golden_narrow / "iresnet50.pt")
    own = iresnet50(**NARROW).state_dict()
    assert list(own) == list(ref)
    assert all(own[k].shape == ref[k].shape for k in ref)


def test_exception_bad_input():
    m = _tiny()
    with pytest.raises(VidinvError, match="112"):
        m(torch.zeros(1, 3, 128, 128))
    with pytest.raises(VidinvError):
        m(torch.zeros(3, 112, 112))


def test_load_infers_sizes(golden):
    m, _ = golden
    assert isinstance(m, IResNet) and not m.training
    assert m.widths == (8, 12, 16, 24) and m.layers == (3, 4, 14, 3) and m.embedding == 64


def test_load_other_depth_roundtrip(tmp_path):
    torch.manual_seed(3)
    m = IResNet(layers=(2, 2, 2, 2), widths=(4, 8, 8, 16), embedding=32).eval()
    torch.save(m.state_dict(), tmp_path / "r18.pth")
    m2 = load_iresnet(tmp_path / "r18.pth")
    assert m2.layers == (2, 2, 2, 2) and m2.widths == (4, 8, 8, 16)
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_load_strict_errors(golden_narrow, tmp_path):
    sd = _load(golden_narrow / "iresnet50.pt")
    bad = dict(sd)
    bad["layer1.0.conv1.weights"] = bad.pop("layer1.0.conv1.weight")
    with pytest.raises(VidinvError, match="layer1.0.conv1.weight"):
        load_iresnet(bad)
    extra = dict(sd, **{"head.weight": torch.zeros(1)})
    with pytest.raises(VidinvError, match="unexpected"):
        load_iresnet(extra)
    shape = dict(sd, **{"bn2.bias": torch.zeros(5)})
    with pytest.raises(VidinvError, match="bn2.bias"):
        load_iresnet(shape)
    with pytest.raises(VidinvError, match="not found"):
        load_iresnet(tmp_path / "missing.pth")


def test_load_unwraps_module_prefix(golden_narrow):
    sd = _load(golden_narrow / "iresnet50.pt")
    m = load_iresnet({"state_dict": {"module." + k: v for k, v in sd.items()}})
    assert torch.equal(m.fc.weight, sd["fc.weight"])


def test_feature_golden_embedding(golden):
    m, cases = golden
    with torch.no_grad():
        emb = m(cases["inputs"]["x"])
    torch.testing.assert_close(emb, cases["outputs"]["embedding"], atol=ATOL, rtol=RTOL)


def test_feature_golden_return_features(golden):
    m, cases = golden
    with torch.no_grad():
        feats = m(cases["inputs"]["x"], return_features=True)
    ref = cases["outputs"]["return_features"]
    assert len(feats) == len(ref) == 5
    for got, want in zip(feats, ref):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.slow
def test_feature_golden_full(golden_narrow):
    """The full-size golden set (checked separately; skips when absent)."""
    full = golden_narrow.parent / "full"
    if not (full / "iresnet50.pt").exists():
        pytest.skip(f"{full / 'iresnet50.pt'} is absent (the full golden set is checked separately)")
    m = load_iresnet(full / "iresnet50.pt")
    assert m.widths == (64, 128, 256, 512) and m.embedding == 512
    cases = _load(full / "iresnet50_cases.pt")
    with torch.no_grad():
        feats = m(cases["inputs"]["x"], return_features=True)
    for got, want in zip(feats, cases["outputs"]["return_features"]):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
