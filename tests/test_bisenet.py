"""BiSeNet face parsing: the 79999_iter.pth key layout, forward shapes, loading, parse_faces."""

from __future__ import annotations

import urllib.request

import pytest
import torch
import torch.nn.functional as F

from vidinv.errors import VidinvError
from vidinv.models.bisenet import CELEBAMASK_CLASSES, BiSeNet, load_bisenet, parse_faces, to_parsing_input

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(p):
    return [f"{p}.{s}" for s in BN]


def _conv_bn_relu(p):
    return [f"{p}.conv.weight", *_bn(f"{p}.bn")]


def official_keys() -> list[str]:
    """The 79999_iter.pth key names, written out from face_parsing/model.py + resnet.py."""
    keys = ["cp.resnet.conv1.weight", *_bn("cp.resnet.bn1")]
    for layer in range(1, 5):
        for block in range(2):
            p = f"cp.resnet.layer{layer}.{block}"
            keys += [f"{p}.conv1.weight", *_bn(f"{p}.bn1"), f"{p}.conv2.weight", *_bn(f"{p}.bn2")]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    for arm in ("arm16", "arm32"):
        keys += [*_conv_bn_relu(f"cp.{arm}.conv"), f"cp.{arm}.conv_atten.weight", *_bn(f"cp.{arm}.bn_atten")]
    for head in ("conv_head32", "conv_head16", "conv_avg"):
        keys += _conv_bn_relu(f"cp.{head}")
    keys += [*_conv_bn_relu("ffm.convblk"), "ffm.conv1.weight", "ffm.conv2.weight"]
    for out in ("conv_out", "conv_out16", "conv_out32"):
        keys += [*_conv_bn_relu(f"{out}.conv"), f"{out}.conv_out.weight"]
    return keys


OFFICIAL_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.conv2.weight": (512, 512, 3, 3),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv.conv.weight": (128, 512, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "cp.conv_head16.conv.weight": (128, 128, 3, 3),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = BiSeNet(19)
    # give BN non-trivial statistics so eval outputs are not degenerate
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.running_mean.normal_(0, 0.1)
    return m.eval()


def test_official_key_set():
    expected = official_keys()
    assert len(expected) == len(set(expected)) == 191
    with torch.device("meta"):
        sd = BiSeNet(19).state_dict()
    assert set(sd) == set(expected)
    for k, shape in OFFICIAL_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k


def test_class_names():
    assert len(CELEBAMASK_CLASSES) == 19 and len(set(CELEBAMASK_CLASSES)) == 19
    assert CELEBAMASK_CLASSES[0] == "background" and CELEBAMASK_CLASSES[1] == "skin"
    assert CELEBAMASK_CLASSES.index("nose") == 10 and CELEBAMASK_CLASSES.index("hair") == 17


def test_construction_never_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("BiSeNet construction tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    BiSeNet(19)


def test_cardinality(net):
    with torch.no_grad():
        outs = net(torch.randn(2, 3, 64, 96))
    assert len(outs) == 3
    assert all(tuple(o.shape) == (2, 19, 64, 96) for o in outs)
    assert all(torch.isfinite(o).all() for o in outs)
    assert not torch.allclose(outs[0], outs[1])


def test_other_class_count():
    torch.manual_seed(0)
    with torch.no_grad():
        outs = BiSeNet(5).eval()(torch.randn(1, 3, 64, 64))
    assert all(tuple(o.shape) == (1, 5, 64, 64) for o in outs)


def test_exception(net):
    with pytest.raises(VidinvError):
        net(torch.zeros(1, 1, 64, 64))
    with pytest.raises(VidinvError, match="32x32"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(VidinvError):
        parse_faces(net, torch.zeros(3, 64, 64))
    with pytest.raises(VidinvError):
        parse_faces(net, torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_load_roundtrip_and_strict(net, tmp_path):
    torch.save(net.state_dict(), tmp_path / "79999_iter.pth")
    m = load_bisenet(tmp_path / "79999_iter.pth")
    assert not m.training and m.n_classes == 19
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x)[0], net(x)[0])
    sd = net.state_dict()
    bad = dict(sd)
    bad["ffm.conv3.weight"] = bad.pop("ffm.conv2.weight")
    with pytest.raises(VidinvError, match="ffm.conv2.weight"):
        load_bisenet(bad)
    with pytest.raises(VidinvError, match="conv_out.conv_out.weight"):
        load_bisenet({k: v for k, v in sd.items() if not k.startswith("conv_out.")})


def test_feature_parsing_input():
    gray = torch.zeros(1, 3, 40, 40)  # 0 in [-1,1] is 0.5 in [0,1]
    y = to_parsing_input(gray, 64)
    assert y.shape == (1, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    want = (0.5 - mean) / std
    torch.testing.assert_close(y[0, :, 7, 9], want)
    over = to_parsing_input(torch.full((1, 3, 8, 8), 3.0), 8)  # clamped to 1 before normalising
    torch.testing.assert_close(over[0, :, 0, 0], (1 - mean) / std)


def test_feature_parse_faces(net):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 48, 40) * 2.4 - 1.2
    labels = parse_faces(net, images, size=64)
    assert labels.shape == (2, 48, 40) and labels.dtype == torch.int64
    assert 0 <= labels.min() and labels.max() < 19
    # the same steps written out: clamp(0.5x+0.5), bilinear to 64, ImageNet norm, head 0, resize back, argmax
    x = F.interpolate((0.5 * images + 0.5).clamp(0, 1), size=(64, 64), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        logits = F.interpolate(net(x)[0], size=(48, 40), mode="bilinear", align_corners=False)
    assert torch.equal(labels, logits.argmax(1))


def test_parse_faces_default_size(net):
    labels = parse_faces(net, torch.rand(1, 3, 96, 96) * 2 - 1)
    assert labels.shape == (1, 96, 96)


@pytest.mark.slow
def test_feature_golden_full(golden_narrow):
    """Parity with the official BiSeNet on the full golden set (not shipped with the narrow set: skips)."""
    full = golden_narrow.parent / "full"
    if not (full / "bisenet.pt").exists():
        pytest.skip(f"{full / 'bisenet.pt'} is absent (the full golden set is checked separately)")
    m = load_bisenet(full / "bisenet.pt")
    cases = torch.load(full / "bisenet_cases.pt", map_location="cpu", weights_only=True)
    with torch.no_grad():
        outs = m(cases["inputs"]["x"])
    for got, name in zip(outs, ("out", "out16", "out32")):
        torch.testing.assert_close(got, cases["outputs"][name], atol=1e-3, rtol=1e-3)
