"""Editing directions in W and W+: the file formats, one in-memory type, and the edit itself.

Formats read by :func:`load_direction` (auto-detected):

* Feature-Style W+ boundaries ``*_boundary.npy``: ``[1, L*sd]`` float32 (``[1, 18*512]`` for FFHQ 1024),
  unit norm over all ``L*sd`` values. The official video script (``video_processing.py``) moves the
  flattened W+ code by ``15 * alpha`` along the boundary, so **strength 1 = a step of 15** along the unit
  boundary (``scale=15``).
* InterFaceGAN / e4e W directions ``.pt`` / ``.npy``: ``[1, sd]`` or ``[sd]`` (unit norm). e4e's
  ``LatentEditor.apply_interfacegan`` adds ``factor * direction`` to every W+ layer; e4e's notebook
  shows ``factor=-3`` for age and ranges of ``(-5, 5)``. A raw file loads with ``scale=1`` (strength =
  e4e's factor); the attribute table (``configs/attributes.yaml``) uses ``scale=3`` so that strength 1
  is e4e's example edit. e4e's ``pose.pt`` is ``[1, 18, 512]`` with 18 identical unit rows: it loads as
  a W direction on every layer (the same edit).
* GANSpace PCA ``ffhq_pca.pt`` (e4e): ``{'comp': [80, 1, sd], 'mean': [1, sd], 'std': [80]}``, unit
  components sorted by ``std``. e4e's named edit ``(idx, start, end, s)`` *sets* the coordinate of W+
  layer 0 along ``comp[idx]`` (in units of ``std[idx]``) to ``s`` and writes that change into layers
  ``[start, end)``. We apply it **additively** (``delta = strength * scale * comp[idx]`` on layers
  ``[start, end)``, ``scale = s * std[idx]``), so strength 0 is the identity and a schedule can ramp
  it; for a latent whose coordinate is ``c`` std the two differ by ``c * std * comp`` (small next to
  ``|s| = 20``; tests/test_directions.py checks this against e4e's formula).

Our own files (:func:`save_direction`): a W+ direction as ``.npy`` ``[1, L*sd]`` (the Feature-Style
layout) or ``.pt`` ``[1, L, sd]``; a W direction as ``.pt`` (or ``.npy``) ``[1, sd]``. Files carry the
vector only; the strength-1 scale comes from the attribute table or the defaults above.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from vidinv.errors import InputError, VidinvError

KINDS = ("wplus", "w", "pca")
FS_SCALE = 15.0  # Feature-Style video script: w + 15 * alpha * boundary
E4E_FACTOR = 1.0  # raw e4e file: strength = e4e's factor
DEFAULT_STYLE_DIM = 512

Strength = Union[float, torch.Tensor]


@dataclass
class Direction:
    """One editing direction.

    Args:
        name: a label (attribute name or file stem).
        kind: ``'wplus'`` (a full W+ offset), ``'w'`` (one W vector added to ``layers``) or ``'pca'``
            (a GANSpace component, applied like ``'w'``).
        vector: ``[L, sd]`` for ``'wplus'``, ``[sd]`` otherwise.
        layers: W+ layer indices the W vector is added to (``None`` = every layer); ignored for ``'wplus'``.
        scale: what strength 1 stands for: the edit adds ``strength * scale * vector``.
        meta: provenance (file, component index, fit accuracy, ...).

    Shape:
        vector: ``[L, sd]`` (wplus) or ``[sd]`` (w, pca).
    """

    name: str
    kind: str
    vector: torch.Tensor
    layers: tuple[int, ...] | None = None
    scale: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VidinvError(f"direction {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        self.vector = torch.as_tensor(self.vector, dtype=torch.float32).detach().cpu()
        want = 2 if self.kind == "wplus" else 1
        if self.vector.ndim != want:
            raise VidinvError(f"direction {self.name!r} ({self.kind}): vector must have {want} dims, "
                              f"got shape {tuple(self.vector.shape)}")
        if self.layers is not None:
            self.layers = tuple(int(i) for i in self.layers)
        self.scale = float(self.scale)

    @property
    def style_dim(self) -> int:
        return int(self.vector.shape[-1])

    def delta(self, n_latent: int, style_dim: int | None = None) -> torch.Tensor:
        """The W+ offset of strength 1: ``scale * vector`` on the direction's layers.

        Shape:
            returns ``[n_latent, sd]``.
        """
        check_compatible(self, n_latent, style_dim)
        if self.kind == "wplus":
            return self.scale * self.vector
        out = torch.zeros(n_latent, self.style_dim)
        idx = list(range(n_latent)) if self.layers is None else list(self.layers)
        out[idx] = self.scale * self.vector
        return out


def check_compatible(d: Direction, n_latent: int, style_dim: int | None = None) -> None:
    """Raise a clear :class:`VidinvError` when ``d`` does not fit a generator with these dims."""
    if style_dim is not None and d.style_dim != style_dim:
        raise VidinvError(f"direction {d.name!r} has style dim {d.style_dim} but the generator's is {style_dim} "
                          "(was it made for another StyleGAN?)")
    if d.kind == "wplus" and d.vector.shape[0] != n_latent:
        raise VidinvError(f"direction {d.name!r} is a {d.vector.shape[0]}-layer W+ direction but the generator has "
                          f"{n_latent} W+ layers (a {d.vector.shape[0]}-layer direction needs a "
                          f"{2 ** ((d.vector.shape[0] + 2) // 2)} px generator)")
    if d.kind != "wplus" and d.layers is not None and any(not 0 <= i < n_latent for i in d.layers):
        raise VidinvError(f"direction {d.name!r} acts on W+ layers {list(d.layers)} but the generator has "
                          f"only {n_latent} (0..{n_latent - 1})")


def layer_range(start: int, end: int) -> tuple[int, ...]:
    """W+ layers ``[start, end)`` as an index tuple (GANSpace's convention)."""
    if not 0 <= start < end:
        raise VidinvError(f"bad layer range [{start}, {end}): need 0 <= start < end")
    return tuple(range(start, end))


# ----------------------------------------------------------------------------------------------- loading


def _read(path: Path):
    if not path.is_file():
        raise InputError(f"direction file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix in (".pt", ".pth"):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or pickled-code file
        raise InputError(f"cannot read direction file {path}: {type(exc).__name__}: {exc}") from None
    raise InputError(f"unsupported direction file {path.name}: expected .npy, .pt or .pth")


def _split_flat(n: int, n_latent: int | None, style_dim: int | None, name: str) -> tuple[int, int]:
    """Split a flattened W+ length ``n`` into ``(L, sd)`` and check it against the generator."""
    sd = style_dim or DEFAULT_STYLE_DIM
    if n % sd:
        if style_dim is None and n_latent and n % n_latent == 0:
            return n_latent, n // n_latent
        raise VidinvError(f"direction {name!r}: {n} values do not split into W+ layers of style dim {sd}"
                          + ("" if n_latent is None else f" for a {n_latent}-layer generator"))
    L = n // sd
    if n_latent is not None and L != n_latent:
        hint = f"; it looks like {n // 512} x 512" if style_dim not in (None, 512) and n % 512 == 0 else ""
        raise VidinvError(f"direction {name!r} has {n} values = {L} x {sd} but the generator has {n_latent} "
                          f"W+ layers of style dim {sd}{hint}: use a direction made for this generator")
    return L, sd


def _from_array(a: torch.Tensor, name: str, kind: str | None, n_latent: int | None,
                style_dim: int | None, scale: float | None, flat_scale: float) -> Direction:
    """Classify a loaded tensor: ``[sd]`` -> W, ``[L*sd]`` -> W+ (flattened), ``[L, sd]`` -> W+
    (or W when all rows agree)."""
    a = a.float()
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]  # [1, D] -> [D]
    sd = style_dim or DEFAULT_STYLE_DIM
    if a.ndim == 1:
        n = a.numel()
        if kind == "w" or (kind is None and n == sd):
            if style_dim is not None and n != style_dim:
                raise VidinvError(f"direction {name!r} is a W vector of style dim {n} "
                                  f"but the generator's is {style_dim}")
            return Direction(name, "w", a, None, E4E_FACTOR if scale is None else scale)
        if kind is None and n == DEFAULT_STYLE_DIM:
            raise VidinvError(f"direction {name!r} is a W vector of style dim {n} but the generator's is {style_dim}")
        L, sd = _split_flat(n, n_latent, style_dim, name)
        return Direction(name, "wplus", a.reshape(L, sd), None, flat_scale if scale is None else scale)
    if a.ndim == 2:
        L, sd = a.shape
        if style_dim is not None and sd != style_dim:
            raise VidinvError(f"direction {name!r} has style dim {sd} but the generator's is {style_dim}")
        if kind != "wplus" and torch.equal(a, a[:1].expand_as(a)):
            # e4e's pose.pt: the same W vector on every layer == a W direction on all layers
            return Direction(name, "w", a[0], None, E4E_FACTOR if scale is None else scale, {"rows": L})
        if kind == "w":
            raise VidinvError(f"direction {name!r}: a {L}x{sd} array with different rows is not a W direction")
        if n_latent is not None and L != n_latent:
            raise VidinvError(f"direction {name!r} is a {L}-layer W+ direction "
                              f"but the generator has {n_latent} W+ layers")
        return Direction(name, "wplus", a, None, 1.0 if scale is None else scale)
    raise VidinvError(f"direction {name!r}: unsupported array shape {tuple(a.shape)}")


def load_ganspace(path_or_dict, component: int, start: int | None = None, end: int | None = None,
                  sigmas: float = 1.0, name: str | None = None, style_dim: int | None = None) -> Direction:
    """One GANSpace component as a :class:`Direction` of kind ``'pca'``.

    Args:
        path_or_dict: ``ffhq_pca.pt`` or its loaded dict ``{'comp', 'mean', 'std'}``.
        component: component index (e4e's named edits use e.g. 54 for eye openness).
        start, end: the W+ layers ``[start, end)`` it acts on (e4e's convention); ``None`` = all layers.
        sigmas: strength 1 = ``sigmas`` standard deviations along the component (e4e's named edits use ±20).

    Shape:
        vector ``[sd]`` (unit), ``meta['mean']`` ``[sd]``.
    """
    pca = _read(Path(path_or_dict)) if isinstance(path_or_dict, (str, Path)) else path_or_dict
    if not (isinstance(pca, dict) and {"comp", "std"} <= set(pca)):
        raise VidinvError("not a GANSpace PCA file: expected a dict with 'comp', 'mean' and 'std'")
    comp = torch.as_tensor(pca["comp"]).float().reshape(len(pca["comp"]), -1)
    std = torch.as_tensor(pca["std"]).float().reshape(-1)
    if not 0 <= component < len(comp):
        raise VidinvError(f"GANSpace component {component} out of range: "
                          f"the file has {len(comp)} components (0..{len(comp) - 1})")
    if style_dim is not None and comp.shape[1] != style_dim:
        raise VidinvError(f"GANSpace components have style dim {comp.shape[1]} but the generator's is {style_dim}")
    layers = None if start is None else layer_range(start, start + 1 if end is None else end)
    meta = {"component": int(component), "std": float(std[component]), "sigmas": float(sigmas)}
    if "mean" in pca:
        meta["mean"] = torch.as_tensor(pca["mean"]).float().reshape(-1)
    scale = sigmas * float(std[component])
    return Direction(name or f"ganspace{component}", "pca", comp[component], layers, scale, meta)


def load_direction(path: str | Path, kind: str | None = None, n_latent: int | None = None,
                   style_dim: int | None = None, scale: float | None = None, name: str | None = None,
                   component: int | None = None, layers: Sequence[int] | None = None) -> Direction:
    """Read a direction file of any supported format (see the module docstring).

    Args:
        path: ``.npy`` / ``.pt`` / ``.pth``.
        kind: force ``'wplus'`` / ``'w'`` / ``'pca'``; ``None`` auto-detects.
        n_latent, style_dim: the generator's dims, checked when given (an 18-layer boundary with a
            10-layer generator is an error).
        scale: what strength 1 stands for; default 15 for W+ ``*_boundary.npy`` files, 1 otherwise
            (1 std for a GANSpace component).
        component: the component index, for GANSpace files (``scale`` then counts standard deviations).
        layers: explicit W+ indices a W / GANSpace direction is restricted to.

    Returns:
        the :class:`Direction`.

    Shape:
        vector ``[L, sd]`` (wplus) or ``[sd]``.
    """
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise VidinvError(f"kind must be one of {KINDS}, got {kind!r}")
    name = name or path.stem
    data = _read(path)
    if isinstance(data, dict):
        if not {"comp", "std"} <= set(data):
            raise VidinvError(f"{path.name}: a dict without 'comp'/'std' is not a known direction format "
                              f"(keys: {sorted(map(str, data))[:8]})")
        if component is None:
            raise VidinvError(f"{path.name} is a GANSpace PCA with {len(data['comp'])} components: pass a component "
                              "index (e.g. an attribute from `vidinv directions list`)")
        d = load_ganspace(data, component, sigmas=1.0 if scale is None else scale, name=name, style_dim=style_dim)
        if layers is not None:
            d.layers = tuple(int(i) for i in layers)
        if n_latent is not None:
            check_compatible(d, n_latent, style_dim)
        d.meta["file"] = str(path)
        return d
    if kind == "pca":
        raise VidinvError(f"{path.name} is not a GANSpace PCA file")
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.asarray(data, dtype=np.float32))
    if not isinstance(data, torch.Tensor):
        raise VidinvError(f"{path.name}: unsupported content {type(data).__name__} "
                          "(expected an array or a GANSpace dict)")
    # a flattened W+ .npy is the Feature-Style boundary layout: strength 1 = their step of 15
    d = _from_array(data, name, kind, n_latent, style_dim, scale, FS_SCALE if path.suffix.lower() == ".npy" else 1.0)
    if layers is not None:
        if d.kind == "wplus":
            raise VidinvError(f"{path.name}: a W+ direction already covers every layer; "
                              "layers= applies to W directions")
        d.layers = tuple(int(i) for i in layers)
    if n_latent is not None:
        check_compatible(d, n_latent, style_dim)
    d.meta["file"] = str(path)
    return d


def save_direction(d: Direction, path: str | Path) -> Path:
    """Write ``d``'s vector in our format: W+ as ``.npy [1, L*sd]`` (Feature-Style layout) or ``.pt [1, L, sd]``;
    W as ``.pt`` / ``.npy [1, sd]``. The scale and layers are not stored (they belong to the attribute table).

    Shape:
        file: ``[1, L*sd]`` / ``[1, L, sd]`` (wplus), ``[1, sd]`` (w, pca).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".pt", ".pth"):
        raise VidinvError(f"save a direction as .npy or .pt, not {path.name}")
    if d.kind == "wplus":
        arr = d.vector.reshape(1, -1) if suffix == ".npy" else d.vector[None]
    else:
        arr = d.vector[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    if suffix == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, arr.numpy().astype(np.float32))
    else:
        torch.save(arr.clone().float(), tmp)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------- editing


def condition(primary: Direction, *others: Direction, n_latent: int | None = None) -> Direction:
    """InterFaceGAN's conditional manipulation: remove from ``primary`` its components along ``others``.

    The W+ offsets of strength 1 are compared (so W and W+ directions mix); the result keeps the
    norm of ``primary``'s offset. When every direction is a W direction on the same layers the result
    stays a W direction, otherwise it becomes a W+ direction.

    Shape:
        returns a direction of ``primary``'s kind (or ``'wplus'`` ``[L, sd]``).
    """
    if not others:
        return primary
    same_w = primary.kind != "wplus" and all(o.kind != "wplus" and o.layers == primary.layers for o in others)
    if same_w:
        d = primary.vector.double()
        C = torch.stack([o.vector.double() for o in others], 1)  # [sd, K]
    else:
        L = n_latent or next((x.vector.shape[0] for x in (primary, *others) if x.kind == "wplus"), None)
        if L is None:
            L = 1 + max(max(x.layers) for x in (primary, *others) if x.layers is not None)
        d = primary.delta(L).double().reshape(-1)
        C = torch.stack([o.delta(L).double().reshape(-1) for o in others], 1)
    if C.shape[0] != d.shape[0]:
        raise VidinvError(f"cannot condition {primary.name!r} on directions of another size")
    Q, R = torch.linalg.qr(C)
    Q = Q[:, torch.diagonal(R).abs() > 1e-8 * max(1.0, float(R.abs().max()))]
    res = d - Q @ (Q.T @ d)
    if res.norm() < 1e-6 * d.norm():
        raise VidinvError(f"direction {primary.name!r} lies in the span of the conditions: "
                          "nothing is left after projection")
    res = res * (d.norm() / res.norm())
    names = "|".join(o.name for o in others)
    meta = {**primary.meta, "conditioned_on": [o.name for o in others]}
    if same_w:
        return replace(primary, name=f"{primary.name}|{names}", vector=res.float(), meta=meta)
    res = res.reshape(L, -1)
    n = float(res.norm())
    return Direction(f"{primary.name}|{names}", "wplus", (res / n).float(), None, n, meta)


def apply_edits(w: torch.Tensor, edits: Sequence[tuple[Direction, Strength]],
                conditioning: Sequence[Direction] | None = None) -> torch.Tensor:
    """Move W+ codes along directions: ``w~ = w + sum_i s_i * scale_i * vector_i`` (on each one's layers).

    Args:
        w: W+ codes.
        edits: ``(direction, strength)`` pairs; a strength is a float or a ``[B]`` tensor (one per code,
            e.g. a schedule over frames).
        conditioning: directions every edit is made orthogonal to first (:func:`condition`), e.g.
            edit smile while keeping age.

    Returns:
        the edited codes (a new tensor; ``w`` is left unchanged).

    Shape:
        w: ``[B, L, sd]``; returns ``[B, L, sd]``.
    """
    if not isinstance(w, torch.Tensor) or w.ndim != 3:
        raise VidinvError(f"apply_edits expects W+ codes [B, L, sd], got {getattr(w, 'shape', type(w))}")
    B, L, sd = w.shape
    out = w.clone()
    for item in edits:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Direction)):
            raise VidinvError("apply_edits: each edit must be a (Direction, strength) pair")
        d, s = item
        if conditioning:
            rest = [c for c in conditioning if c is not d]
            d = condition(d, *rest, n_latent=L) if rest else d
        delta = d.delta(L, sd).to(device=w.device, dtype=w.dtype)  # [L, sd]
        s = torch.as_tensor(s, dtype=w.dtype, device=w.device)
        if s.ndim == 0:
            out = out + s * delta
        elif s.shape == (B,):
            out = out + s[:, None, None] * delta
        else:
            raise VidinvError(f"strength for {d.name!r} must be a number or [B={B}] values, got shape {tuple(s.shape)}")
    return out
