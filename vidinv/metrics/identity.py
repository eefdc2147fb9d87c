"""Face identity embeddings for the metrics: ArcFace IResNet, insightface, dlib.

Every backend follows :class:`IdentityBackend`: a ``name``, the embedding size ``dim``
and ``embed(images) -> [N, D]`` unit rows, where ``images`` are uint8 ``[N,H,W,3]`` RGB
FFHQ-aligned face crops (the crops the pipeline inverts). :func:`get_identity_backend`
picks the best one present on this machine and every report names the one used.

Heavy packages (insightface, dlib) are imported inside the backends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

__all__ = ["IdentityBackend", "ArcFaceBackend", "InsightFaceBackend", "DlibBackend", "get_identity_backend",
           "arcface_preprocess", "dlib_model_path", "insightface_model_path", "PSP_CROP"]

# pSp's IDLoss: pool to 256, keep rows 35:223 and columns 32:220 (the inner face of the
# FFHQ alignment), pool to 112 for the ArcFace IR-50.
PSP_CROP = (35, 223, 32, 220)
# the zoo's name for ArcFace ``backbone.pth`` (configs/zoo.yaml), then names other versions may use
ARCFACE_ZOO_NAMES = ("arcface_r50", "arcface_iresnet50", "arcface")


@runtime_checkable
class IdentityBackend(Protocol):
    """A face recognition network used as the ``R`` of the identity metrics.

    Attributes:
        name: short name written into reports (``'arcface'``, ``'insightface'``, ``'dlib'``).
        dim: embedding size D.

    Shape:
        - embed(images): uint8 ``[N,H,W,3]`` RGB aligned crops -> float ``[N, D]`` unit rows.
    """

    name: str
    dim: int

    def embed(self, images: np.ndarray) -> np.ndarray: ...


def _check_crops(images: Any) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"identity backends take uint8 [N,H,W,3] RGB crops, got {x.dtype} {tuple(x.shape)}")
    return x


def _unit(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def arcface_preprocess(images: np.ndarray, size: int = 112, crop: str = "psp") -> torch.Tensor:
    """Aligned uint8 crops to the ArcFace input: float ``[N,3,size,size]`` in [-1,1].

    Args:
        images: uint8 ``[N,H,W,3]`` RGB FFHQ-aligned crops (square).
        size: the network's input size (112).
        crop: ``'psp'``: average-pool to 256, keep ``[35:223, 32:220]``, average-pool to
            ``size`` (pSp/e4e ``IDLoss.extract_feats``); ``'none'``: resize the whole
            crop to ``size`` (nearest, as the Feature-Style trainer's ``IDloss`` does).

    Shape:
        - images: ``[N,H,W,3]`` -> ``[N,3,size,size]``.
    """
    x = _check_crops(images)
    if crop not in ("psp", "none"):
        raise InputError(f"crop must be 'psp' or 'none', got {crop!r}")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if crop == "none":
        return F.interpolate(t, size=(size, size), mode="nearest")
    if t.shape[-2:] != (256, 256):
        t = F.adaptive_avg_pool2d(t, (256, 256))
    r0, r1, c0, c1 = PSP_CROP
    return F.adaptive_avg_pool2d(t[:, :, r0:r1, c0:c1], (size, size))


class ArcFaceBackend:
    """ArcFace IResNet (``vidinv.models.iresnet``) on the pSp crop of aligned faces.

    Args:
        iresnet: a network mapping ``[B,3,112,112]`` in [-1,1] to ``[B,D]``.
        device: where to run it (the module is moved there).
        batch: crops per forward pass.
        crop: see :func:`arcface_preprocess`.

    Shape:
        - embed(images): uint8 ``[N,H,W,3]`` -> ``[N, D]`` float32 unit rows.
    """

    name = "arcface"

    def __init__(self, iresnet: torch.nn.Module, device: Union[str, torch.device] = "cpu", batch: int = 32,
                 crop: str = "psp"):
        if not isinstance(iresnet, torch.nn.Module):
            raise InputError(f"ArcFaceBackend needs a torch module, got {type(iresnet).__name__}")
        if crop not in ("psp", "none"):
            raise InputError(f"crop must be 'psp' or 'none', got {crop!r}")
        self.device = torch.device(device)
        self.net = iresnet.eval().to(self.device)
        self.batch, self.crop = int(batch), crop
        dim = getattr(iresnet, "embedding", None)
        self.dim = dim if isinstance(dim, int) and dim > 0 else self._probe_dim()

    @torch.no_grad()
    def _probe_dim(self) -> int:
        return int(self.net(torch.zeros(2, 3, 112, 112, device=self.device)).shape[-1])

    @classmethod
    def from_zoo(cls, zoo: Any = None, **kwargs: Any) -> "ArcFaceBackend":
        """Load ``backbone.pth`` (zoo name ``arcface_r50``) through ``vidinv.zoo`` (fetched when online).

        Raises:
            MissingWeightsError: the file is absent and cannot be fetched (the zoo's message).
        """
        from vidinv.models.iresnet import load_iresnet

        if zoo is None:
            from vidinv.zoo import Zoo

            zoo = Zoo()
        net = load_iresnet(zoo.require(arcface_name(zoo)))
        net = net[0] if isinstance(net, tuple) else net
        return cls(net, **kwargs)

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        x = _check_crops(images)
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, x.shape[0], self.batch):
            t = arcface_preprocess(x[i : i + self.batch], crop=self.crop).to(self.device)
            out.append(self.net(t).float().cpu().numpy())
        return _unit(np.concatenate(out))


def insightface_model_path(root: Union[str, Path, None] = None, pack: str = "buffalo_l") -> Path:
    """The recognition ONNX of an insightface model pack, or a :class:`VidinvError` saying where to put it."""
    from vidinv.faces.weights import insightface_pack_dir, insightface_pack_files

    files = insightface_pack_files(pack, root)
    preferred = [p for p in files if p.name.startswith("w600k")]
    others = [p for p in files if not p.name.startswith(("det_", "2d106", "1k3d68", "genderage"))]
    if preferred or others:
        return (preferred or others)[0]
    raise VidinvError(f"insightface recognition model not found: put the {pack} pack (w600k_r50.onnx) "
                      f"in {insightface_pack_dir(pack, root)}")


class InsightFaceBackend:
    """The insightface ``buffalo_l`` recognition model (ArcFace R50 on WebFace600K, ONNX).

    Args:
        root: the insightface home (default ``$INSIGHTFACE_HOME`` or ``~/.insightface``).
        pack: the model pack name.
        crop: see :func:`arcface_preprocess` (the same pSp crop, then 112x112).

    Raises:
        VidinvError: the model file is absent (with the folder to put it in).

    Shape:
        - embed(images): uint8 ``[N,H,W,3]`` -> ``[N, 512]`` float32 unit rows.
    """

    name = "insightface"
    dim = 512

    def __init__(self, root: Union[str, Path, None] = None, pack: str = "buffalo_l", crop: str = "psp"):
        self.path = insightface_model_path(root, pack)
        self.crop = crop
        from insightface.model_zoo import get_model

        self.model = get_model(str(self.path), providers=["CPUExecutionProvider"])
        if self.model is None:
            raise VidinvError(f"insightface could not load {self.path} as a recognition model")

    def embed(self, images: np.ndarray) -> np.ndarray:
        t = arcface_preprocess(images, crop=self.crop)
        u8 = ((t.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in u8]  # insightface takes BGR, swaps to RGB itself
        if not bgr:
            return np.zeros((0, self.dim), np.float32)
        return _unit(self.model.get_feat(bgr))


def dlib_model_path(filename: str) -> Path:
    """Path of a ``.dat`` shipped in face_recognition_models (see :func:`vidinv.faces.weights.dlib_model_path`;
    ``$VIDINV_DLIB_MODELS`` overrides the folder).

    Raises:
        VidinvError: the file is in none of the places looked at.
    """
    from vidinv.faces.weights import dlib_model_path as find

    return find(filename)


class DlibBackend:
    """dlib's ResNet face descriptor (128-d, ``dlib_face_recognition_resnet_model_v1.dat``).

    dlib aligns the face itself from 5 landmarks (``shape_predictor_5_face_landmarks.dat``)
    inside a face box. With ``box='auto'`` the box is dlib's HOG detection on the crop
    (the largest one), or the usual face box of an FFHQ-aligned crop when nothing is
    detected; ``box='ffhq'`` always takes the fixed box (deterministic on aligned crops,
    no detector jitter between frames). ``last_fallbacks`` counts the crops of the last
    call that used the fixed box.

    Args:
        upsample: HOG detector upsampling (1 finds faces down to ~40 px).
        jitter: dlib's ``num_jitters`` (1 = no jitter).
        box: ``'auto'`` or ``'ffhq'``.

    Shape:
        - embed(images): uint8 ``[N,H,W,3]`` -> ``[N, 128]`` float32 unit rows.
    """

    name = "dlib"
    dim = 128
    FFHQ_BOX = (0.22, 0.31, 0.78, 0.88)  # left, top, right, bottom as fractions of the crop

    def __init__(self, upsample: int = 1, jitter: int = 1, box: str = "auto"):
        if box not in ("auto", "ffhq"):
            raise InputError(f"box must be 'auto' or 'ffhq', got {box!r}")
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        self.net = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
        self.upsample, self.jitter, self.box = int(upsample), int(jitter), box
        self.last_fallbacks = 0

    def _box(self, im: np.ndarray):
        dets = self.detector(im, self.upsample) if self.box == "auto" else []
        if len(dets):
            return max(dets, key=lambda r: r.width() * r.height()), False
        h, w = im.shape[:2]
        l, t, r, b = self.FFHQ_BOX
        return self._dlib.rectangle(int(l * w), int(t * h), int(r * w), int(b * h)), True

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = _check_crops(images)
        out, self.last_fallbacks = [], 0
        for im in x:
            im = np.ascontiguousarray(im)
            box, fallback = self._box(im)
            self.last_fallbacks += int(fallback)
            desc = self.net.compute_face_descriptor(im, self.shape(im, box), self.jitter)
            out.append(np.asarray(desc, dtype=np.float32))
        return _unit(np.stack(out)) if out else np.zeros((0, self.dim), np.float32)


def arcface_name(zoo: Any) -> str:
    """The first of :data:`ARCFACE_ZOO_NAMES` the zoo knows (the first one when it cannot say)."""
    get = getattr(zoo, "get", None)
    for name in ARCFACE_ZOO_NAMES if callable(get) else ():
        try:
            get(name)
            return name
        except Exception:
            continue
    return ARCFACE_ZOO_NAMES[0]


def _zoo_has(zoo: Any, name: str) -> bool:
    """True when the zoo reports ``name`` as present (any of the status shapes it may use)."""
    try:
        st = zoo.status(name)
    except TypeError:
        st = zoo.status()
    if isinstance(st, dict) and name in st:
        st = st[name]
    if isinstance(st, bool):
        return st
    if isinstance(st, str):
        return st.lower() in ("ok", "present", "verified", "available", "cached")
    if isinstance(st, dict):
        for k in ("present", "available", "ok", "exists"):
            if k in st:
                return bool(st[k])
        return str(st.get("status", "")).lower() in ("ok", "present", "verified", "available", "cached")
    for k in ("present", "available", "ok", "exists"):
        if hasattr(st, k):
            return bool(getattr(st, k))
    return False


def get_identity_backend(name: str = "auto", zoo: Any = None, device: Union[str, torch.device] = "cpu"
                         ) -> IdentityBackend:
    """The identity backend to use: ``'arcface'``, ``'insightface'``, ``'dlib'`` or ``'auto'``.

    ``'auto'`` takes ArcFace when the zoo holds ``backbone.pth`` (``arcface_r50``),
    else insightface when its ``buffalo_l`` recognition model is present, else dlib. The
    choice is logged; read it back from ``backend.name``.

    Args:
        name: the backend name.
        zoo: a ``vidinv.zoo.Zoo`` (default: a new one, when the module exists).
        device: device for the torch backend.

    Raises:
        VidinvError: an unknown name, or the named backend cannot be built.
    """
    if name not in ("auto", "arcface", "insightface", "dlib"):
        raise VidinvError(f"unknown identity backend {name!r}; one of auto, arcface, insightface, dlib")
    if name == "arcface":
        return ArcFaceBackend.from_zoo(zoo, device=device)
    if name == "insightface":
        return InsightFaceBackend()
    if name == "dlib":
        return DlibBackend()
    why = []
    try:
        if zoo is None:
            from vidinv.zoo import Zoo

            zoo = Zoo()
        if _zoo_has(zoo, arcface_name(zoo)):
            backend: IdentityBackend = ArcFaceBackend.from_zoo(zoo, device=device)
            log.info("identity backend: arcface")
            return backend
        why.append("arcface: backbone.pth not in the zoo")
    except Exception as e:  # the zoo or the iresnet module may be missing or broken
        why.append(f"arcface: {type(e).__name__}: {e}")
    try:
        backend = InsightFaceBackend()
        log.info("identity backend: insightface (%s)", "; ".join(why))
        return backend
    except Exception as e:
        why.append(f"insightface: {e}")
    backend = DlibBackend()
    log.info("identity backend: dlib (%s)", "; ".join(why))
    return backend
