"""SeFa: closed-form factorisation of a StyleGAN2's style modulations (Shen & Zhou, CVPR 2021).

Every modulated layer maps a W vector to its channel styles through an affine weight ``A_l [C_l, sd]``.
SeFa stacks the affine weights of the chosen layers, normalises each row (one output channel) to unit
norm, and takes the eigenvectors of ``A^T A`` (``[sd, sd]``) with the largest eigenvalues: moving W
along them changes the styles the most. Here an edit ``--attr sefa:N`` adds the ``N``-th eigenvector
(0-based, largest first) to the W+ layers it was computed from; strength 1 is a step of 3 (genforce
SeFa's default end distance).

Which W+ index feeds which layer (rosinality's ``Generator.forward``): index 0 -> ``conv1``;
index ``i >= 1`` -> ``convs[i-1]``; to-RGB layers: index 1 -> ``to_rgb1``, index ``2j+3`` -> ``to_rgbs[j]``.
The last index feeds only a to-RGB layer, so it is always factorised through it (as genforce does);
the other to-RGB layers are included with ``include_rgb=True``.

The weights are read from the ``state_dict`` (``*.modulation.weight``, rosinality layout; a pSp
``decoder.`` prefix is stripped), so this module does not depend on the generator's code.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from vidinv.editing.directions import Direction
from vidinv.errors import VidinvError

SEFA_SCALE = 3.0  # genforce SeFa's default distance range is [-3, 3]


def _modulations(src) -> dict[str, torch.Tensor]:
    """``{layer name: modulation weight [C, sd]}`` from a generator, a state_dict or a checkpoint dict."""
    if isinstance(src, torch.nn.Module):
        sd = {k: v.detach() for k, v in src.state_dict().items()}
    elif isinstance(src, Mapping):
        sd = src
        for key in ("g_ema", "state_dict"):
            if key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
                break
    else:
        raise VidinvError(f"SeFa needs a generator or its state_dict, got {type(src).__name__}")
    out = {}
    for k, v in sd.items():
        m = re.fullmatch(r"(?:decoder\.)?((?:conv1|to_rgb1|convs\.\d+|to_rgbs\.\d+))\.conv\.modulation\.weight", k)
        if m:
            out[m.group(1)] = torch.as_tensor(v).detach().float().cpu()
    if "conv1" not in out:
        raise VidinvError("no StyleGAN2 modulation weights found (expected rosinality keys such as "
                          "'conv1.conv.modulation.weight')")
    return out


def layer_map(n_convs: int, n_rgbs: int) -> dict[int, list[str]]:
    """W+ index -> the layers it modulates (rosinality's forward).

    ``n_convs`` counts ``convs.*`` (2 per resolution above 4), ``n_rgbs`` counts ``to_rgbs.*``.
    """
    m: dict[int, list[str]] = {0: ["conv1"], 1: ["to_rgb1"]}
    for i in range(n_convs):
        m.setdefault(i + 1, []).insert(0, f"convs.{i}")
    for j in range(n_rgbs):
        m.setdefault(2 * j + 3, []).append(f"to_rgbs.{j}")
    return m


def sefa_factorize(src, layers: Sequence[int] | None = None, include_rgb: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Eigen-decomposition of the stacked, row-normalised modulation weights.

    Args:
        src: a generator (``nn.Module``), its ``state_dict``, or a checkpoint dict (``g_ema`` / pSp ``decoder.*``).
        layers: W+ indices whose layers are factorised; ``None`` = all.
        include_rgb: also use the to-RGB modulations of those indices (the last index always does).

    Returns:
        ``(vectors [sd, sd] one unit eigenvector per row, largest eigenvalue first; eigenvalues [sd]; layers)``.

    Shape:
        vectors ``[sd, sd]``, eigenvalues ``[sd]``.
    """
    mods = _modulations(src)
    n_convs = sum(k.startswith("convs.") for k in mods)
    n_rgbs = sum(k.startswith("to_rgbs.") for k in mods)
    lmap = layer_map(n_convs, n_rgbs)
    n_latent = max(lmap) + 1
    layers = tuple(range(n_latent)) if layers is None else tuple(int(i) for i in layers)
    if not layers or any(not 0 <= i < n_latent for i in layers):
        raise VidinvError(f"SeFa layers must be W+ indices in 0..{n_latent - 1}, got {list(layers)}")
    names = []
    for i in layers:
        convs = [n for n in lmap[i] if not n.startswith("to_rgb")]
        rgbs = [n for n in lmap[i] if n.startswith("to_rgb")]
        names += convs + (rgbs if include_rgb or not convs else [])
    missing = [n for n in names if n not in mods]
    if missing:
        raise VidinvError(f"modulation weights missing from the state_dict: {missing[:4]}")
    A = torch.cat([mods[n] for n in names], 0).double()  # [sum C, sd]
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    vals, vecs = torch.linalg.eigh(A.T @ A)  # ascending
    vals, vecs = vals.flip(0), vecs.flip(1).T  # [sd], [sd(k), sd]
    # a deterministic sign: the largest-magnitude entry positive
    sign = torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    return (vecs * sign).float(), vals.float(), layers


def sefa_directions(src, layers: Sequence[int] | None = None, k: int = 5, include_rgb: bool = False,
                    scale: float = SEFA_SCALE) -> list[Direction]:
    """The top ``k`` SeFa directions as W :class:`Direction` objects on ``layers``.

    Args:
        src: a generator, its ``state_dict`` or a checkpoint dict.
        layers: W+ indices (``None`` = all); each direction acts on exactly these.
        k: how many directions (largest eigenvalue first).
        include_rgb: factorise the to-RGB modulations too.
        scale: what strength 1 stands for (a step of ``scale`` along the unit eigenvector).

    Shape:
        each vector ``[sd]``, unit norm.
    """
    vecs, vals, layers = sefa_factorize(src, layers, include_rgb)
    if not 1 <= k <= len(vecs):
        raise VidinvError(f"SeFa k must be in 1..{len(vecs)}, got {k}")
    return [Direction(f"sefa:{i}", "w", vecs[i], layers, scale, {"eigenvalue": float(vals[i])}) for i in range(k)]
