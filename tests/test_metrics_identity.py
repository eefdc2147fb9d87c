"""Identity backends: ArcFace preprocessing and wrapper, dlib on real photos, insightface/zoo fallbacks."""

import sys
import types

import numpy as np
import pytest
import torch

from vidinv.errors import InputError, VidinvError
from vidinv.metrics import identity as ident
from vidinv.metrics.identity import (ArcFaceBackend, DlibBackend, IdentityBackend, InsightFaceBackend,
                                     arcface_preprocess, get_identity_backend)


class TinyNet(torch.nn.Module):
    """A stand-in recognition net: [B,3,112,112] -> [B,24]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 8, stride=8)
        self.fc = torch.nn.Linear(6 * 14 * 14, 24)
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def face_like(n=4, size=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_preprocess_psp_crop():
    for size in (256, 512):
        x = np.zeros((2, size, size, 3), np.uint8)
        s = size // 256
        x[:, 35 * s:223 * s, 32 * s:220 * s] = 200  # exactly the pSp region
        t = arcface_preprocess(x)
        assert t.shape == (2, 3, 112, 112) and t.dtype == torch.float32
        torch.testing.assert_close(t, torch.full_like(t, 200 / 127.5 - 1))
    t = arcface_preprocess(x, crop="none")  # whole crop, nearest: the zero border stays
    assert t.shape == (2, 3, 112, 112) and t.min() == -1 and t.max() == pytest.approx(200 / 127.5 - 1)
    with pytest.raises(InputError, match="crop"):
        arcface_preprocess(x, crop="center")


def test_arcface_backend_wrapper():
    net = TinyNet()
    b = ArcFaceBackend(net, batch=3)
    assert isinstance(b, IdentityBackend) and b.name == "arcface" and b.dim == 24
    x = face_like(5)
    e = b.embed(x)
    assert e.shape == (5, 24) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert (3, 3, 112, 112) in net.seen and (2, 3, 112, 112) in net.seen  # batched 3 + 2
    np.testing.assert_allclose(ArcFaceBackend(net, batch=16).embed(x), e, atol=1e-5)
    with torch.no_grad():
        ref = net(arcface_preprocess(x)).numpy()
    np.testing.assert_allclose(e, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    assert b.embed(np.zeros((0, 256, 256, 3), np.uint8)).shape == (0, 24)
    with pytest.raises(InputError, match="uint8"):
        b.embed(x.astype(np.float32))
    with pytest.raises(InputError, match="torch module"):
        ArcFaceBackend(lambda t: t)
    with pytest.raises(InputError, match="crop"):
        ArcFaceBackend(net, crop="tight")


def test_arcface_tiny_iresnet():
    pytest.importorskip("vidinv.models.iresnet", reason="vidinv.models.iresnet not written yet")
    from vidinv.models.tiny import tiny_iresnet

    b = ArcFaceBackend(tiny_iresnet())
    e = b.embed(face_like(2, size=128))
    assert e.shape == (2, b.dim) and np.all(np.isfinite(e))


@pytest.fixture(scope="module")
def dlib_backend():
    pytest.importorskip("dlib")
    try:
        return DlibBackend()
    except VidinvError as e:
        pytest.skip(str(e))


def load(images_dir, name):
    from PIL import Image

    path = images_dir / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return np.asarray(Image.open(path).convert("RGB"))


def test_dlib_same_person_closer(dlib_backend, images_dir):
    emb = {n: dlib_backend.embed(load(images_dir, f"facerec_{n}.jpg")[None])[0] for n in ("obama", "obama2", "biden")}
    assert dlib_backend.last_fallbacks == 0  # the HOG detector found each face
    assert all(e.shape == (128,) for e in emb.values())
    same = float(emb["obama"] @ emb["obama2"])
    diff = max(float(emb["obama"] @ emb["biden"]), float(emb["obama2"] @ emb["biden"]))
    assert same > diff + 0.05, (same, diff)


def test_dlib_fallback_box(dlib_backend):
    flat = np.full((1, 128, 128, 3), 127, np.uint8)  # no face: the fixed FFHQ box is used
    e = dlib_backend.embed(flat)
    assert e.shape == (1, 128) and dlib_backend.last_fallbacks == 1
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)


def test_dlib_fixed_box_on_aligned_crop(dlib_backend, images_dir):
    from PIL import Image

    path = images_dir / "celebahq_fse_00020.jpg"  # an FFHQ-style aligned 1024 crop
    if not path.exists():
        pytest.skip(f"{path} is absent")
    x = np.asarray(Image.open(path).convert("RGB").resize((256, 256)))[None]
    auto = dlib_backend.embed(x)
    assert dlib_backend.last_fallbacks == 0
    fixed = DlibBackend(box="ffhq")
    e = fixed.embed(x)
    assert fixed.last_fallbacks == 1
    assert float(auto[0] @ e[0]) > 0.97  # the fixed box seeds the same landmarks
    with pytest.raises(InputError, match="box"):
        DlibBackend(box="mtcnn")


def test_dlib_model_path_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDINV_DLIB_MODELS", str(tmp_path))
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    with pytest.raises(VidinvError, match="nope.dat not found"):
        ident.dlib_model_path("nope.dat")


def test_insightface_missing_is_clear(tmp_path):
    with pytest.raises(VidinvError, match="buffalo_l"):
        InsightFaceBackend(root=tmp_path)


class FakeZoo:
    def __init__(self, present):
        self.present, self.required = present, []

    def status(self, name):
        return {"name": name, "present": self.present}

    def require(self, name, offline=None):
        self.required.append(name)
        return f"/weights/{name}.pth"


def test_get_backend_auto_fallback_to_dlib(monkeypatch, tmp_path):
    pytest.importorskip("dlib")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))  # no insightface pack here
    zoo = FakeZoo(present=False)
    b = get_identity_backend("auto", zoo=zoo)
    assert b.name == "dlib" and zoo.required == []


def test_get_backend_auto_prefers_arcface(monkeypatch):
    fake = types.ModuleType("vidinv.models.iresnet")
    fake.load_iresnet = lambda src: TinyNet()
    monkeypatch.setitem(sys.modules, "vidinv.models.iresnet", fake)
    zoo = FakeZoo(present=True)
    b = get_identity_backend("auto", zoo=zoo)
    assert b.name == "arcface" and zoo.required == [ident.ARCFACE_ZOO_NAMES[0]] and b.dim == 24


def test_get_backend_with_real_zoo_missing_weights(monkeypatch, tmp_path):
    zoo_mod = pytest.importorskip("vidinv.zoo")
    pytest.importorskip("dlib")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    zoo = zoo_mod.Zoo(home=tmp_path / "cache")
    assert zoo.status(ident.arcface_name(zoo)) == "missing"
    assert get_identity_backend("auto", zoo=zoo).name == "dlib"


def test_get_backend_exception():
    with pytest.raises(VidinvError, match="unknown identity backend"):
        get_identity_backend("facenet")


def test_insightface_backend_on_exported_onnx(tmp_path):
    """A tiny net exported in the buffalo_l layout goes through insightface's ArcFaceONNX unchanged."""
    pytest.importorskip("insightface")
    pytest.importorskip("onnxruntime")
    import warnings

    net = TinyNet().eval()
    net.fc = torch.nn.Linear(6 * 14 * 14, 512)
    folder = tmp_path / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(folder / "w600k_r50.onnx"), input_names=["data"],
                          output_names=["fc1"], dynamic_axes={"data": {0: "batch"}}, dynamo=False)
    (folder / "det_10g.onnx").write_bytes(b"")  # the detector of the pack is not picked
    b = InsightFaceBackend(root=tmp_path)
    assert b.path.name == "w600k_r50.onnx" and b.name == "insightface"
    x = face_like(3)
    e = b.embed(x)
    assert e.shape == (3, 512)
    with torch.no_grad():
        ref = net(arcface_preprocess(x)).numpy()
    np.testing.assert_allclose(e, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-2)  # uint8 round trip
