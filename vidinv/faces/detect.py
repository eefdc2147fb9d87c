"""Face detection + 68-point landmarks: one small protocol, three adapters (dlib, face-alignment, insightface).

Every backend returns, per frame, a list of :class:`Face` with the bounding box, a confidence and the 68 iBUG
landmarks in the pixel coordinates of the frame it was given. Heavy libraries are imported inside the adapters.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from vidinv.errors import MissingWeightsError, VidinvError
from vidinv.faces.weights import (DLIB_LANDMARKS_68, dlib_model_path, find_dlib_model, insightface_pack_dir,
                                  insightface_pack_files)

log = logging.getLogger(__name__)


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

# dlib's frontal HOG detector scans an 80x80 window over a 5/6 image pyramid: faces smaller than this (in the image
# it is given) are not found. The margin over 80 covers the box definition: min_face is measured on our boxes (the
# HOG box united with the landmarks), which are somewhat larger than dlib's own.
HOG_MIN_FACE = 80.0


def dlib_model_dir() -> Path | None:
    """The folder holding dlib's 68-point shape predictor (see :mod:`vidinv.faces.weights`), or None."""
    path = find_dlib_model(DLIB_LANDMARKS_68)
    return None if path is None else path.parent


def dlib_scale(frame_hw: tuple[int, int], max_side: int | None = None, min_face: float | None = None) -> float:
    """The factor a frame is resized by before HOG detection.

    Without ``min_face`` it is the downscale to ``max_side`` (1 when ``max_side`` is None or larger than the
    frame). With ``min_face`` (frame pixels), the image is made just large enough that such a face spans
    :data:`HOG_MIN_FACE` pixels: ``HOG_MIN_FACE / min_face`` (a downscale for large faces, an upscale of only
    the needed amount for small ones); when ``max_side`` is also set, the larger of the two factors is taken
    (``max_side`` never makes ``min_face`` faces undetectable).
    """
    long_side = max(int(frame_hw[0]), int(frame_hw[1]))
    by_side = min(1.0, float(max_side) / long_side) if max_side else 1.0
    if not min_face:
        return by_side
    need = HOG_MIN_FACE / float(min_face)
    return max(by_side, need) if max_side else need


class DlibDetector:
    """dlib HOG frontal-face detector + the 68-point shape predictor shipped in ``face_recognition_models``.

    Works offline on the CPU. Its cost grows with the pixel count of the detection image, whose scale
    :func:`dlib_scale` derives from the frame, ``max_side`` and ``min_face``. Settings come from the caller
    (the pipeline's config); the defaults here only mean "detect on the frame as it is".

    Args:
        upsample: extra HOG pyramid upsampling steps (each doubles the image; 0 with ``min_face``, which
            already resizes by the needed amount).
        max_side: detect on a copy scaled so its longer side is at most this (boxes and landmarks are scaled back
            to the frame; landmarks are refined at the detection scale).
        min_face: smallest face to find, in frame pixels: the detection image is sized so that such a face
            spans ~80 px, HOG's window (see :func:`dlib_scale`).
        min_score: drop detections whose HOG score is below this.
        device: accepted for a uniform interface; HOG runs on the CPU.
    """

    name = "dlib"

    def __init__(self, upsample: int = 0, max_side: int | None = None, min_face: float | None = None,
                 min_score: float = 0.0, device: str = "cpu") -> None:
        try:
            import dlib
        except ImportError as e:  # pragma: no cover - dlib-bin is a dependency
            raise VidinvError("the dlib detector needs the 'dlib-bin' package: pip install dlib-bin") from e
        if min_face is not None and float(min_face) <= 0:
            raise VidinvError(f"DlibDetector: min_face must be a positive number of pixels, got {min_face}")
        path = dlib_model_path(DLIB_LANDMARKS_68)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self.upsample = int(upsample)
        self.max_side = int(max_side) if max_side else None
        self.min_face = float(min_face) if min_face else None
        self.min_score = float(min_score)
        if not str(device).startswith("cpu"):
            log.debug("dlib's HOG detector runs on the CPU (device %s ignored)", device)

    def _detect_one(self, img: np.ndarray) -> list[Face]:
        import cv2

        h, w = img.shape[:2]
        scale = dlib_scale((h, w), self.max_side, self.min_face)
        small = img
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
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
    """Where insightface keeps a model pack (see :func:`vidinv.faces.weights.insightface_pack_dir`)."""
    return insightface_pack_dir(name, root)


def onnx_providers(device: str) -> tuple[list[str], int]:
    """onnxruntime execution providers and insightface's ``ctx_id`` for a device string.

    ``'cuda[:N]'`` asks for the CUDAExecutionProvider (then the CPU as fallback) on GPU N; when this onnxruntime
    build has no CUDA provider a warning says so and the CPU is used.
    """
    dev = str(device)
    if not dev.startswith("cuda"):
        return ["CPUExecutionProvider"], -1
    ctx = int(dev.split(":", 1)[1]) if ":" in dev else 0
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log.warning("insightface: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                    "detecting on the CPU")
        return ["CPUExecutionProvider"], -1
    return ["CUDAExecutionProvider", "CPUExecutionProvider"], ctx


class InsightFaceDetector:
    """insightface ``FaceAnalysis`` (buffalo_l: SCRFD detection + ``landmark_3d_68``), only from an existing folder.

    Args:
        device: ``'cpu'`` or ``'cuda[:N]'`` (onnxruntime's CUDA provider, see :func:`onnx_providers`).
        det_size: detector input size.
        min_score: drop detections below this confidence.
        root: insightface home (default ``$INSIGHTFACE_HOME`` or ``~/.insightface``).
    """

    name = "insightface"

    def __init__(self, device: str = "cpu", det_size: int = 640, min_score: float = 0.5,
                 root: str | os.PathLike | None = None) -> None:
        d = insightface_pack_dir("buffalo_l", root)
        if not insightface_pack_files("buffalo_l", root):
            raise MissingWeightsError(f"insightface buffalo_l models not found in {d}; unzip buffalo_l.zip there, "
                                      "or use --detector dlib")
        from insightface.app import FaceAnalysis

        providers, ctx = onnx_providers(device)
        self.providers = providers
        self._app = FaceAnalysis(name="buffalo_l", root=str(d.parent.parent), providers=providers,
                                 allowed_modules=["detection", "landmark_3d_68"])
        self._app.prepare(ctx_id=ctx, det_size=(int(det_size), int(det_size)))
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


# ----------------------------------------------------------------------------- registry


def _fan_missing() -> str | None:
    if importlib.util.find_spec("face_alignment") is None:
        return "face_alignment is not installed"
    missing = fan_weight_files()[1]
    return f"weights not in torch hub's cache ({', '.join(m.name for m in missing)})" if missing else None


def _insightface_missing() -> str | None:
    if importlib.util.find_spec("insightface") is None:
        return "insightface is not installed"
    return None if insightface_pack_files("buffalo_l") else f"no buffalo_l pack in {insightface_pack_dir()}"


def _dlib_missing() -> str | None:
    if importlib.util.find_spec("dlib") is None:
        return "dlib-bin is not installed"
    return None if dlib_model_dir() is not None else f"{DLIB_LANDMARKS_68} not found (pip install face-recognition-models)"


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: how to build it, whether it can run here, and the settings it accepts.

    Attributes:
        build: the class (called as ``build(device=..., **settings)``).
        missing: ``() -> None`` when usable now without any download, else the reason it is not (one line).
        settings: keyword settings the constructor accepts besides ``device``.
    """

    build: Callable[..., FaceDetector]
    missing: Callable[[], str | None]
    settings: tuple[str, ...]


# name -> entry, in the order 'auto' prefers them
DETECTORS: dict[str, DetectorEntry] = {
    "fan": DetectorEntry(FANDetector, _fan_missing, ("min_score",)),
    "insightface": DetectorEntry(InsightFaceDetector, _insightface_missing, ("det_size", "min_score", "root")),
    "dlib": DetectorEntry(DlibDetector, _dlib_missing, ("upsample", "max_side", "min_face", "min_score")),
}
BACKENDS = tuple(DETECTORS)


def available_backends() -> list[str]:
    """Backends usable right now without any download, in preference order (fan > insightface > dlib)."""
    return [name for name, entry in DETECTORS.items() if entry.missing() is None]


def resolve_detector(name: str = "auto") -> str:
    """The backend ``name`` stands for (``'auto'``: the first available of fan > insightface > dlib), checked
    without building anything: an unknown name, or no usable backend for ``'auto'``, is a one-line error.
    Cheap enough to call before any work."""
    name = str(name).lower()
    if name not in ("auto", *DETECTORS):
        raise VidinvError(f"unknown face detector {name!r}: choose auto, {', '.join(DETECTORS)}")
    if name != "auto":
        return name
    why = {n: e.missing() for n, e in DETECTORS.items()}
    avail = [n for n, reason in why.items() if reason is None]
    if not avail:
        raise MissingWeightsError("no face detector available (" + "; ".join(f"{n}: {r}" for n, r in why.items())
                                  + "): install dlib-bin and face-recognition-models, or put face-alignment / "
                                  "insightface weights in their caches")
    log.debug("face detector: %s (auto; available: %s)", avail[0], ", ".join(avail))
    return avail[0]


def get_detector(name: str = "auto", device: str = "cpu", **settings: Any) -> FaceDetector:
    """Build a face detector by name from :data:`DETECTORS`.

    Settings that only other detectors accept are ignored, so one config (e.g. ``max_side``, ``min_face`` for
    dlib, ``det_size`` for insightface) serves whichever backend ``'auto'`` picks; a setting no detector knows
    is an error.

    Args:
        name: ``'auto'`` (the first available of fan > insightface > dlib) or a key of :data:`DETECTORS`.
        device: ``'cpu'`` or ``'cuda[:N]'`` for the neural backends (dlib's HOG always runs on the CPU).
        **settings: the backend's settings (see each entry's ``settings``).

    Returns:
        A :class:`FaceDetector`.
    """
    auto = str(name).lower() == "auto"
    name = resolve_detector(name)
    if auto:
        log.info("face detector: %s (auto)", name)
    known = {k for e in DETECTORS.values() for k in e.settings}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise VidinvError(f"unknown face detector setting(s) {unknown}; known: {sorted(known)}")
    entry = DETECTORS[name]
    kwargs = {k: v for k, v in settings.items() if k in entry.settings}
    return entry.build(device=device, **kwargs)
