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
