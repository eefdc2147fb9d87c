"""Face detection backends: the offline dlib adapter on shared photos, selection and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from vidinv.errors import MissingWeightsError, VidinvError
from vidinv.faces import detect as D


def _load(path, max_side=None):
    import cv2

    img = cv2.imread(str(path))
    assert img is not None, path
    img = img[..., ::-1]
    if max_side:
        s = max_side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


@pytest.fixture(scope="module")
def dlib_det():
    if D.dlib_model_dir() is None:
        pytest.skip("face_recognition_models' .dat files are not installed")
    return D.DlibDetector()


def test_smoke_model_dir():
    d = D.dlib_model_dir()
    if d is None:
        pytest.skip("face_recognition_models not installed")
    assert (d / "shape_predictor_68_face_landmarks.dat").is_file()


@pytest.mark.parametrize("name", ["facerec_obama.jpg", "celebahq_fse_00020.jpg"])
def test_dlib_one_face_landmarks_in_box(dlib_det, images_dir, name):
    img = _load(images_dir / name, max_side=400)
    out = dlib_det.detect(img[None])
    assert len(out) == 1 and len(out[0]) == 1
    f = out[0][0]
    assert f.bbox.shape == (4,) and f.bbox.dtype == np.float32
    assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
    x0, y0, x1, y1 = f.bbox
    assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    lm = f.landmarks
    assert (lm[:, 0] >= x0).all() and (lm[:, 0] <= x1).all()
    assert (lm[:, 1] >= y0).all() and (lm[:, 1] <= y1).all()
    # ... and they span the face: their extent covers most of the box
    ext = np.prod(lm.max(0) - lm.min(0))
    assert ext > 0.5 * (x1 - x0) * (y1 - y0)
    # anatomical order: left eye (image left) left of the right eye, eyes above the mouth, chin lowest of the jaw
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean()
    assert lm[8, 1] == lm[0:17, 1].max()


def test_dlib_no_face_and_batch(dlib_det):
    rng = np.random.default_rng(0)
    frames = np.stack([np.full((120, 160, 3), 128, np.uint8), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)])
    out = dlib_det.detect(frames)
    assert out == [[], []]


def test_dlib_downscaled_detection_scales_back(images_dir):
    if D.dlib_model_dir() is None:
        pytest.skip("face_recognition_models not installed")
    img = _load(images_dir / "celebahq_fse_00020.jpg", max_side=512)
    full = D.DlibDetector().detect(img)[0]
    small = D.DlibDetector(max_side=256).detect(img)[0]
    assert len(full) == len(small) == 1
    size = full[0].bbox[2] - full[0].bbox[0]
    err = np.linalg.norm(full[0].landmarks - small[0].landmarks, axis=-1).mean()
    # measured: mean landmark distance ~2% of the box at half resolution; in frame pixels, not in the small ones
    assert err < 0.05 * size, (err, size)


def test_exception_bad_frames(dlib_det):
    with pytest.raises(VidinvError):
        dlib_det.detect(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(VidinvError):
        dlib_det.detect(np.zeros((2, 32, 32), np.uint8))


def test_get_detector_names():
    with pytest.raises(VidinvError, match="unknown face detector"):
        D.get_detector("nope")
    avail = D.available_backends()
    assert set(avail) <= set(D.BACKENDS)
    if avail:
        det = D.get_detector("auto")
        assert det.name == avail[0]
        assert isinstance(det, D.FaceDetector)


def test_missing_backends_raise_clear_errors(tmp_path, monkeypatch):
    if D.fan_weight_files()[1]:
        with pytest.raises(MissingWeightsError, match="face-alignment"):
            D.get_detector("fan")
    with pytest.raises(MissingWeightsError, match="buffalo_l"):
        D.InsightFaceDetector(root=tmp_path)


def test_face_dataclass_coerces():
    f = D.Face([0, 0, 10, 20], 1, np.zeros((68, 2)))
    assert f.bbox.dtype == np.float32 and f.landmarks.dtype == np.float32 and f.area == 200.0


def test_fan_cache_check_finds_files_without_download(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    present, missing = D.fan_weight_files()
    assert present == [] and len(missing) == 2
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    from face_alignment.api import models_urls as fan_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls

    (ckpt / fan_urls["2DFAN-4"].rsplit("/", 1)[1]).write_bytes(b"x")
    assert D.fan_weight_files()[1]  # the detector's weights are still missing
    assert "fan" not in D.available_backends()
    (ckpt / sfd_urls["s3fd"].rsplit("/", 1)[1]).write_bytes(b"x")
    present, missing = D.fan_weight_files()
    assert missing == [] and len(present) == 2
    assert D.available_backends()[0] == "fan"


# ----------------------------------------------------------------------------- small faces (issue 14)


def _decode(path, n, side):
    import av
    import cv2

    out = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            out.append(cv2.resize(fr.to_ndarray(format="rgb24"), (side, side), interpolation=cv2.INTER_AREA))
            if len(out) == n:
                break
    return out


def two_person_clip(videos_dir, n=10):
    """A 1280x720 video-chat layout: two shared clips side by side, each scaled so its face is ~150 px."""
    left = _decode(videos_dir / "liveportrait_d12_expressive_glasses.mp4", n, 358)  # face ~215 px at 512
    right = _decode(videos_dir / "retalking_face1.mp4", n, 443)  # face ~237 px at 700
    clip = np.full((n, 720, 1280, 3), 110, np.uint8)
    for t in range(n):
        clip[t, 181:181 + 358, 141:141 + 358] = left[t]
        clip[t, 138:138 + 443, 738:738 + 443] = right[t]
    return clip


def test_dlib_scale():
    assert D.dlib_scale((720, 1280), max_side=480) == pytest.approx(0.375)
    assert D.dlib_scale((720, 1280)) == 1.0 and D.dlib_scale((200, 300), max_side=480) == 1.0
    # min_face alone: just large enough that such a face spans the HOG window (down or up)
    assert D.dlib_scale((720, 1280), min_face=160) == pytest.approx(D.HOG_MIN_FACE / 160)
    assert D.dlib_scale((720, 1280), min_face=64) == pytest.approx(D.HOG_MIN_FACE / 64)
    # with max_side: max_side's downscale unless it would lose min_face faces
    assert D.dlib_scale((720, 1280), max_side=480, min_face=128) == pytest.approx(D.HOG_MIN_FACE / 128)
    assert D.dlib_scale((720, 1280), max_side=1280, min_face=300) == 1.0


def test_dlib_min_face_finds_both_video_chat_faces(videos_dir):
    if D.dlib_model_dir() is None:
        pytest.skip("face_recognition_models not installed")
    clip = two_person_clip(videos_dir)
    # the reported bug: at max side 480 the ~150 px faces shrink below HOG's window and one is lost
    assert min(len(f) for f in D.DlibDetector(max_side=480).detect(clip)) < 2
    det = D.get_detector("dlib", max_side=480, min_face=128)
    assert det.min_face == 128 and det.max_side == 480 and det.upsample == 0
    out = det.detect(clip)
    for faces in out:
        assert len(faces) == 2
        cx = sorted(float(f.bbox[0] + f.bbox[2]) / 2 for f in faces)
        assert cx[0] < 640 < cx[1]  # one face per person
        for f in faces:
            assert 110 < f.bbox[2] - f.bbox[0] < 200  # the faces really are video-chat sized


def test_dlib_defaults_come_from_caller():
    if D.dlib_model_dir() is None:
        pytest.skip("face_recognition_models not installed")
    det = D.DlibDetector()
    assert (det.upsample, det.max_side, det.min_face) == (0, None, None)
    with pytest.raises(VidinvError, match="min_face"):
        D.DlibDetector(min_face=-3)


# ----------------------------------------------------------------------------- registry (issue 13)


def test_registry_drives_selection(monkeypatch):
    assert D.BACKENDS == tuple(D.DETECTORS) == ("fan", "insightface", "dlib")
    built = {}

    class Fake:
        name = "fake"

        def __init__(self, device="cpu", knob=1):
            built.update(device=device, knob=knob)

        def detect(self, frames):
            return [[] for _ in frames]

    monkeypatch.setitem(D.DETECTORS, "fake", D.DetectorEntry(Fake, lambda: None, ("knob",)))
    for name in ("fan", "insightface", "dlib"):
        monkeypatch.setitem(D.DETECTORS, name, D.DetectorEntry(D.DETECTORS[name].build, lambda: "absent",
                                                               D.DETECTORS[name].settings))
    assert D.available_backends() == ["fake"]
    det = D.get_detector("auto", device="cuda:1", knob=5, max_side=480)  # max_side belongs to dlib: ignored
    assert det.name == "fake" and built == {"device": "cuda:1", "knob": 5}
    with pytest.raises(VidinvError, match="unknown face detector setting"):
        D.get_detector("fake", nope=1)
    monkeypatch.setitem(D.DETECTORS, "fake", D.DetectorEntry(Fake, lambda: "absent", ("knob",)))
    with pytest.raises(MissingWeightsError, match="fake: absent"):
        D.get_detector("auto")


def test_dlib_lookup_honours_env(tmp_path, monkeypatch):
    from vidinv.faces import weights

    (tmp_path / weights.DLIB_LANDMARKS_68).write_bytes(b"x")
    monkeypatch.setenv("VIDINV_DLIB_MODELS", str(tmp_path))
    assert D.dlib_model_dir() == tmp_path
    assert weights.dlib_model_path(weights.DLIB_LANDMARKS_68) == tmp_path / weights.DLIB_LANDMARKS_68
    with pytest.raises(MissingWeightsError, match="other.dat not found"):
        monkeypatch.setattr("sys.path", [str(tmp_path / "none")])
        monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
        weights.dlib_model_path("other.dat")


def test_insightface_lookup(tmp_path, monkeypatch):
    from vidinv.faces import weights

    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    assert weights.insightface_pack_dir() == tmp_path / "models" / "buffalo_l"
    assert weights.insightface_pack_files() == []
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "models" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    assert [p.name for p in weights.insightface_pack_files()] == ["det_10g.onnx"]
    assert weights.insightface_pack_dir("antelope", tmp_path / "x") == tmp_path / "x" / "models" / "antelope"


# ----------------------------------------------------------------------------- devices (issue 11)


def test_fan_gets_device(monkeypatch):
    import sys
    import types

    seen = {}

    class FakeFA:
        def __init__(self, lt, device="cpu", **kw):
            seen.update(device=device, detector=kw.get("face_detector"))

        def get_landmarks_from_image(self, f, return_bboxes=True):
            return [np.zeros((68, 2))], None, [np.array([1, 2, 30, 40, 0.9])]

    fake = types.ModuleType("face_alignment")
    fake.LandmarksType = types.SimpleNamespace(TWO_D="2d")
    fake.FaceAlignment = FakeFA
    monkeypatch.setitem(sys.modules, "face_alignment", fake)
    monkeypatch.setattr(D, "fan_weight_files", lambda: ([], []))
    det = D.get_detector("fan", device="cuda:0", min_score=0.5, min_face=64)
    assert seen == {"device": "cuda:0", "detector": "sfd"}
    out = det.detect(np.zeros((1, 48, 48, 3), np.uint8))
    assert len(out[0]) == 1 and out[0][0].score == pytest.approx(0.9)


@pytest.mark.parametrize("device, cuda_built, want", [
    ("cpu", True, (["CPUExecutionProvider"], -1)),
    ("cuda", True, (["CUDAExecutionProvider", "CPUExecutionProvider"], 0)),
    ("cuda:2", True, (["CUDAExecutionProvider", "CPUExecutionProvider"], 2)),
    ("cuda:1", False, (["CPUExecutionProvider"], -1)),
])
def test_insightface_gets_device(tmp_path, monkeypatch, device, cuda_built, want):
    import sys
    import types

    ort = pytest.importorskip("onnxruntime")
    provs = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda_built else ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: provs)
    seen = {}

    class FakeApp:
        def __init__(self, name, root, providers, allowed_modules):
            seen.update(root=root, providers=providers)

        def prepare(self, ctx_id, det_size):
            seen.update(ctx=ctx_id, det_size=det_size)

    fake = types.ModuleType("insightface.app")
    fake.FaceAnalysis = FakeApp
    monkeypatch.setitem(sys.modules, "insightface.app", fake)
    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    (pack / "det_10g.onnx").write_bytes(b"x")
    det = D.get_detector("insightface", device=device, root=tmp_path, det_size=320, max_side=480)
    assert (seen["providers"], seen["ctx"]) == want == (det.providers, want[1])
    assert seen["det_size"] == (320, 320) and seen["root"] == str(tmp_path)


def test_exception_resolve_detector_checks_before_building():
    from vidinv.errors import VidinvError

    with pytest.raises(VidinvError, match="unknown face detector 'nope'"):
        D.resolve_detector("nope")
    assert D.resolve_detector("DLIB") == "dlib"
    if D.available_backends():
        assert D.resolve_detector("auto") == D.available_backends()[0]
