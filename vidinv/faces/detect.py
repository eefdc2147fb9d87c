"""Face detection + 68-point landmarks: one small protocol, three adapters (dlib, face-alignment, insightface).

Every backend returns, per frame, a list of :class:`Face` with the bounding box, a confidence and the 68 iBUG
landmarks in the pixel coordinates of the frame it was given. Heavy libraries are imported inside the adapters.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vidinv.errors import MissingWeightsError, VidinvError

log = logging.getLogger(__name__)

BACKENDS = ("fan", "insightface", "dlib")


@dataclass
class Face:
    """One detected face.

    Attributes:
        bbox: ``[4]`` float32 ``x0, y0, x1, y1`` in frame pixels.
        score: detector confidence (backend-specific scale).
        landmarks: ``[68, 2]`` float32 iBUG landmarks ``(x, y)`` in frame pixels.
    """

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        self.bbox = np.asarray(self.bbox, np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, np.float32).reshape(68, 2)
        self.score = float(self.score)

    @property
    def area(self) -> float:
        """Box area in pixels^2."""
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))


@runtime_checkable
class FaceDetector(Protocol):
    """A face detector: ``detect(frames uint8 [T,H,W,3] RGB) -> list[list[Face]]`` (one list per frame)."""

    name: str

    def detect(self, frames: np.ndarray) -> list[list[Face]]: ...


def check_frames(frames: np.ndarray, who: str) -> np.ndarray:
    """Validate a frame batch and return it as uint8 ``[T,H,W,3]`` (a single ``[H,W,3]`` frame is promoted)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VidinvError(f"{who}: expected RGB frames uint8 [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise VidinvError(f"{who}: expected uint8 frames, got {frames.dtype}")
    return frames


def _bbox_of(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(0), *points.max(0)], np.float32)


# ----------------------------------------------------------------------------- dlib


def dlib_model_dir() -> Path | None:
    """The folder holding face_recognition_models' ``.dat`` files, found without importing the package."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        d = Path(root) / "models"
        if (d / "shape_predictor_68_face_landmarks.dat").is_file():
            return d
    import site
    import sys

    for sp in [*site.getsitepackages(), *sys.path]:
        for hit in glob.glob(os.path.join(sp, "face_recognition_models", "models", "shape_predictor_68_face_landmarks.dat")):
            return Path(hit).parent
    return None


class DlibDetector:
    """dlib HOG frontal-face detector + the 68-point shape predictor shipped in ``face_recognition_models``.

    Works offline on the CPU (~125 ms per 1080p-class frame at full size; much less with ``max_side``).

    Args:
        upsample: HOG pyramid upsampling (1 finds faces down to ~40 px; 0 is ~4x faster).
        max_side: if set, detect on a copy downscaled so its longer side is at most this; boxes and landmarks
            are scaled back to the input frame (landmarks are refined at that resolution).
        min_score: drop detections whose HOG score is below this.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, max_side: int | None = None, min_score: float = 0.0) -> None:
        try:
            import dlib
        except ImportError as e:  # pragma: no cover - dlib-bin is a dependency
            raise VidinvError("the dlib detector needs the 'dlib-bin' package: pip install dlib-bin") from e
        d = dlib_model_dir()
        if d is None:
            raise MissingWeightsError("dlib landmarks: shape_predictor_68_face_landmarks.dat not found; "
                                      "install it with: pip install face_recognition_models")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))
        self.upsample = int(upsample)
        self.max_side = int(max_side) if max_side else None
        self.min_score = float(min_score)

    def _detect_one(self, img: np.ndarray) -> list[Face]:
        import cv2

        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / max(h, w)) if self.max_side else 1.0
        small = img
        if scale < 1.0:
            small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = w / small.shape[1], h / small.shape[0]
        small = np.ascontiguousarray(small)
        rects, scores, _ = self._detector.run(small, self.upsample, self.min_score)
        faces = []
        for r, s in zip(rects, scores):
            shape = self._predictor(small, r)
            lm = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            # dlib reports integer pixel indices; centre them on the source pixel grid when scaling back
            lm = (lm + 0.5) * np.array([sx, sy], np.float32) - 0.5
            box = (np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) + 0.5) * \
                np.array([sx, sy, sx, sy], np.float32) - 0.5
            # HOG boxes usually cut the chin: report the union with the landmarks' extent (as FAN/SCRFD boxes do)
            box = np.concatenate([np.minimum(box[:2], lm.min(0)), np.maximum(box[2:], lm.max(0))])
            faces.append(Face(box, float(s), lm))
        return faces

    def detect(self, frames: np.ndarray) -> list[list[Face]]:
        """Detect faces in each frame.

        Shape:
            - frames: ``[T, H, W, 3]`` uint8 RGB
            - output: ``T`` lists of :class:`Face`
        """
        frames = check_frames(frames, "DlibDetector.detect")
        return [self._detect_one(f) for f in frames]


# ----------------------------------------------------------------------------- face-alignment (FAN)


def fan_weight_files() -> tuple[list[Path], list[Path]]:
    """(present, missing) weight files face-alignment needs in torch hub's cache (2D FAN + the S3FD detector)."""
    import torch.hub

    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    need = [("2DFAN4*", None), ("s3fd*", None)]
    if ckpt.is_dir() and all(list(ckpt.glob(g)) for g, _ in need):
        try:  # the exact names this version of face_alignment will look for
            from face_alignment.api import models_urls as fan_urls
            from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls

            names = [os.path.basename(fan_urls["2DFAN-4"]), os.path.basename(sfd_urls["s3fd"])]
        except Exception:  # pragma: no cover - unusual install
            names = []
        files = [ckpt / n for n in names]
        return [f for f in files if f.is_file()], [f for f in files if not f.is_file()]
    return [], [ckpt / "2DFAN4-<hash>.pth.tar", ckpt / "s3fd-<hash>.pth"]


class FANDetector:
    """face-alignment (Bulat & Tzimiropoulos): S3FD boxes + 2D-FAN 68 landmarks, only from an existing cache.

    Args:
        device: torch device string.
        min_score: drop S3FD boxes below this confidence.
    """

    name = "fan"

    def __init__(self, device: str = "cpu", min_score: float = 0.5) -> None:
        present, missing = fan_weight_files()
        if missing:
            raise MissingWeightsError(
                "face-alignment weights are not in torch hub's cache (missing " + ", ".join(str(m) for m in missing)
                + "); run face_alignment once on a connected machine, or copy the files there, or use --detector dlib")
        import face_alignment

        lt = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
        try:
            self._fa = face_alignment.FaceAlignment(lt, device=str(device), flip_input=False, face_detector="sfd",
                                                    face_detector_kwargs={"filter_threshold": min_score},
                                                    compile=False)
        except TypeError:  # older face_alignment without compile/face_detector_kwargs
            self._fa = face_alignment.FaceAlignment(lt, device=str(device), flip_input=False, face_detector="sfd")
        self.min_score = float(min_score)

    def detect(self, frames: np.ndarray) -> list[list[Face]]:
        """Detect faces in each frame. Shape: frames ``[T,H,W,3]`` uint8 RGB -> ``T`` lists of :class:`Face`."""
        frames = check_frames(frames, "FANDetector.detect")
        out: list[list[Face]] = []
        for f in frames:
            lms, _, boxes = self._fa.get_landmarks_from_image(f, return_bboxes=True)
            faces = []
            for lm, box in zip(lms or [], boxes or []):
                box = np.asarray(box, np.float32)
                score = float(box[4]) if box.shape[0] > 4 else 1.0
                if score >= self.min_score:
                    faces.append(Face(box[:4], score, np.asarray(lm, np.float32)[:, :2]))
            out.append(faces)
        return out


# ----------------------------------------------------------------------------- insightface


def insightface_model_dir(name: str = "buffalo_l", root: str | os.PathLike | None = None) -> Path:
    """Where insightface keeps a model pack: ``<root or ~/.insightface>/models/<name>``."""
    root = Path(root or os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()
    return root / "models" / name


class InsightFaceDetector:
    """insightface ``FaceAnalysis`` (buffalo_l: SCRFD detection + ``landmark_3d_68``), only from an existing folder.

    Args:
        device: ``'cpu'`` or ``'cuda[:N]'`` (onnxruntime provider).
        det_size: detector input size.
        min_score: drop detections below this confidence.
        root: insightface root (default ``~/.insightface``).
    """

    name = "insightface"

    def __init__(self, device: str = "cpu", det_size: int = 640, min_score: float = 0.5,
                 root: str | os.PathLike | None = None) -> None:
        d = insightface_model_dir("buffalo_l", root)
        if not d.is_dir() or not list(d.glob("*.onnx")):
            raise MissingWeightsError(f"insightface buffalo_l models not found in {d}; unzip buffalo_l.zip there, "
                                      "or use --detector dlib")
        from insightface.app import FaceAnalysis

        dev = str(device)
        ctx = int(dev.split(":")[1]) if dev.startswith("cuda:") else (0 if dev.startswith("cuda") else -1)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ctx >= 0 else ["CPUExecutionProvider"]
        self._app = FaceAnalysis(name="buffalo_l", root=str(d.parent.parent), providers=providers,
                                 allowed_modules=["detection", "landmark_3d_68"])
        self._app.prepare(ctx_id=ctx, det_size=(det_size, det_size))
        self.min_score = float(min_score)

    def detect(self, frames: np.ndarray) -> list[list[Face]]:
        """Detect faces in each frame. Shape: frames ``[T,H,W,3]`` uint8 RGB -> ``T`` lists of :class:`Face`."""
        frames = check_frames(frames, "InsightFaceDetector.detect")
        out = []
        for f in frames:
            res = self._app.get(np.ascontiguousarray(f[..., ::-1]))  # insightface wants BGR
            out.append([Face(r.bbox, float(r.det_score), np.asarray(r.landmark_3d_68)[:, :2])
                        for r in res if float(r.det_score) >= self.min_score])
        return out


# ----------------------------------------------------------------------------- selection


def available_backends() -> list[str]:
    """Backends usable right now without any download, in preference order (fan > insightface > dlib)."""
    out = []
    if importlib.util.find_spec("face_alignment") is not None and not fan_weight_files()[1]:
        out.append("fan")
    d = insightface_model_dir()
    if importlib.util.find_spec("insightface") is not None and d.is_dir() and list(d.glob("*.onnx")):
        out.append("insightface")
    if importlib.util.find_spec("dlib") is not None and dlib_model_dir() is not None:
        out.append("dlib")
    return out


def get_detector(name: str = "auto", device: str = "cpu", **kwargs) -> FaceDetector:
    """Build a face detector by name.

    Args:
        name: ``'auto'`` (the first available of fan > insightface > dlib), ``'fan'``, ``'insightface'`` or ``'dlib'``.
        device: torch / onnxruntime device for the neural backends (dlib always runs on the CPU).
        **kwargs: passed to the backend's constructor.

    Returns:
        A :class:`FaceDetector`.
    """
    name = str(name).lower()
    if name not in ("auto", *BACKENDS):
        raise VidinvError(f"unknown face detector {name!r}: choose auto, {', '.join(BACKENDS)}")
    if name == "auto":
        avail = available_backends()
        if not avail:
            raise MissingWeightsError("no face detector available: install dlib-bin and face_recognition_models, "
                                      "or put face-alignment / insightface weights in their caches")
        name = avail[0]
        log.info("face detector: %s (auto; available: %s)", name, ", ".join(avail))
    cls = {"dlib": DlibDetector, "fan": FANDetector, "insightface": InsightFaceDetector}[name]
    if cls is DlibDetector:
        return DlibDetector(**kwargs)
    return cls(device=device, **kwargs)
