"""The Feature-Style encoder's training losses (Yao et al., eqs. 2-7).

Two inversions are scored against the target ``y``: ``x1 = G(w)`` (latent only) and
``x2 = G(w, F)`` (feature code at layer K). The terms, each returned unweighted in a dict:

* ``mse``        pixel MSE of ``x1`` (eq. 2; on synthetic samples only, as the official config);
* ``lpips_1/2``  LPIPS summed over full, 1/2 and 1/4 scale (eq. 3) for ``x1`` / ``x2``;
* ``feature``    ``mean (F - G^K(w))^2`` with the generator feature as a fixed target (eq. 4);
* ``id_1/2``     multi-layer ArcFace loss, ``sum_l 1 - cos(phi_l(x), phi_l(y))`` over the 4 IResNet
  stage outputs and the embedding (eq. 6);
* ``parsing_1/2`` multi-layer face-parsing loss, ``sum_h 1 - cos`` over BiSeNet's 3 heads (eq. 7).

``total = mse_w * mse + lpips_w * (lpips_1 + lpips_2) + feature_w * feature + id_w * (id_1 + id_2)
+ parsing_w * (parsing_1 + parsing_2)``. A term that is switched off (ablation flag, weight 0,
no feature branch, no synthetic sample) is absent from the dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.bisenet import to_parsing_input
from vidinv.models.fs_encoder import downscale

__all__ = ["LossConfig", "FSLoss", "multiscale_lpips", "identity_loss", "parsing_loss", "feature_loss",
           "build_lpips"]


@dataclass
class LossConfig:
    """Loss weights and switches (defaults: the paper / official ``configs/001.yaml``).

    Attributes:
        mse, lpips, feature, identity, parsing: the weights (1, lambda1 0.2, lambda2 0.01,
            lambda3 0.1, lambda4 0.1). A weight of 0 removes the term.
        lpips_scales: 3 = full + 1/2 + 1/4 (eq. 3); 1 = single scale.
        lpips_min_size: a scale smaller than this is upsampled to it (AlexNet needs >= 32 px; only
            small test generators hit this).
        mse_on: 'synthetic' (official: MSE only where the ground-truth noise is known) or 'all'.
        multi_layer_id: eq. 6 over 5 layers; False = the embedding only.
        parsing_size: BiSeNet input size (512 as trained; smaller in tests).
    """

    mse: float = 1.0
    lpips: float = 0.2
    feature: float = 0.01
    identity: float = 0.1
    parsing: float = 0.1
    lpips_scales: int = 3
    lpips_min_size: int = 32
    mse_on: str = "synthetic"
    multi_layer_id: bool = True
    parsing_size: int = 512

    def __post_init__(self):
        for k in ("mse", "lpips", "feature", "identity", "parsing"):
            if getattr(self, k) < 0:
                raise VidinvError(f"loss weight {k} must be >= 0, got {getattr(self, k)}")
        if self.lpips_scales < 1:
            raise VidinvError(f"lpips_scales must be >= 1, got {self.lpips_scales}")
        if self.mse_on not in ("synthetic", "all"):
            raise VidinvError(f"mse_on must be 'synthetic' or 'all', got {self.mse_on!r}")
        if self.parsing_size < 32 or self.parsing_size % 32:
            raise VidinvError(f"parsing_size must be a multiple of 32, got {self.parsing_size}")


def build_lpips(random_backbone: bool = False) -> nn.Module:
    """``lpips.LPIPS(net='alex')`` (v0.1 linear heads from the package), frozen, eval mode.

    ``random_backbone=True`` builds AlexNet with random weights: tests only (needs no download).
    Raises :class:`VidinvError` when the pretrained AlexNet is not cached.
    """
    import warnings

    if not random_backbone:
        from vidinv.metrics.image import lpips_available

        ok, why = lpips_available()
        if not ok:
            raise VidinvError(why)
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=random_backbone, verbose=False)
    return freeze(net)


def freeze(m: nn.Module) -> nn.Module:
    """requires_grad False on every parameter and eval mode. Returns ``m``."""
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def _check_pair(x: Tensor, y: Tensor, what: str) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise VidinvError(f"{what}: images must be two [B,3,H,W] tensors of one shape, got "
                          f"{tuple(x.shape)} and {tuple(y.shape)}")


def multiscale_lpips(net: nn.Module, x: Tensor, y: Tensor, scales: int = 3, min_size: int = 32) -> Tensor:
    """Eq. 3: ``sum_k mean LPIPS(down^k(x), down^k(y))`` for ``k < scales`` (official ``downscale``).

    Shape:
        - x, y: ``[B, 3, H, W]`` in [-1, 1]
        - Output: scalar
    """
    _check_pair(x, y, "multiscale_lpips")
    out = x.new_zeros(())
    for k in range(scales):
        a, b = downscale(x, k), downscale(y, k)
        if min(a.shape[-2:]) < min_size:
            a = F.interpolate(a, size=(min_size, min_size), mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=(min_size, min_size), mode="bilinear", align_corners=False)
        out = out + net(a, b).mean()
    return out


def identity_loss(arcface: nn.Module, x: Tensor, y: Tensor, multi_layer: bool = True) -> Tensor:
    """Eq. 6: ``mean_b sum_l 1 - cos(phi_l(x), phi_l(y))``; images resized to 112 (nearest, as official).

    Shape:
        - x, y: ``[B, 3, H, W]`` in [-1, 1]
        - Output: scalar
    """
    _check_pair(x, y, "identity_loss")
    a = F.interpolate(x, size=(112, 112))
    b = F.interpolate(y, size=(112, 112))
    fa = arcface(a, return_features=True) if multi_layer else [arcface(a)]
    fb = arcface(b, return_features=True) if multi_layer else [arcface(b)]
    terms = [1 - F.cosine_similarity(u.flatten(1), v.flatten(1), dim=1, eps=1e-6) for u, v in zip(fa, fb)]
    return torch.stack(terms).sum(0).mean()


def parsing_loss(parser: nn.Module, x: Tensor, y: Tensor, size: int = 512) -> Tensor:
    """Eq. 7: ``mean_b sum_h 1 - cos(P_h(x), P_h(y))`` over BiSeNet's three output heads.

    Shape:
        - x, y: ``[B, 3, H, W]`` in [-1, 1]
        - Output: scalar
    """
    _check_pair(x, y, "parsing_loss")
    oa = parser(to_parsing_input(x, size))
    ob = parser(to_parsing_input(y, size))
    terms = [1 - F.cosine_similarity(u.flatten(1), v.flatten(1), dim=1, eps=1e-6) for u, v in zip(oa, ob)]
    return torch.stack(terms).sum(0).mean()


def feature_loss(feat: Tensor, feat_gen: Tensor) -> Tensor:
    """Eq. 4: ``mean (F - G^K(w))^2``, the generator feature detached (a target, as the official).

    Shape:
        - feat, feat_gen: ``[B, C, r, r]``
        - Output: scalar
    """
    if feat.shape != feat_gen.shape:
        raise VidinvError(f"feature_loss: F {tuple(feat.shape)} and G^K(w) {tuple(feat_gen.shape)} differ")
    return F.mse_loss(feat, feat_gen.detach())


class FSLoss(nn.Module):
    """All training terms and their weighted total.

    Args:
        cfg: weights and switches.
        lpips_net: an LPIPS module (needed when ``cfg.lpips > 0``).
        arcface: an IResNet (needed when ``cfg.identity > 0``).
        parser: a BiSeNet (needed when ``cfg.parsing > 0``).

    Shape:
        forward(y, x1, x2, feat, feat_gen, synthetic): images ``[B, 3, S, S]``, ``x2``/``feat`` may be
        None (no feature branch), ``synthetic`` a bool ``[B]`` -> dict of scalars incl. ``'total'``.
    """

    def __init__(self, cfg: LossConfig, lpips_net: Optional[nn.Module] = None, arcface: Optional[nn.Module] = None,
                 parser: Optional[nn.Module] = None):
        super().__init__()
        for weight, net, name in ((cfg.lpips, lpips_net, "an LPIPS net"), (cfg.identity, arcface, "an ArcFace IResNet"),
                                  (cfg.parsing, parser, "a BiSeNet face parser")):
            if weight > 0 and net is None:
                raise VidinvError(f"the loss config needs {name} (or set its weight to 0)")
        self.cfg = cfg
        self.lpips_net = freeze(lpips_net) if lpips_net is not None else None
        self.arcface = freeze(arcface) if arcface is not None else None
        self.parser = freeze(parser) if parser is not None else None

    def train(self, mode: bool = True):  # the loss networks always stay in eval mode
        return super().train(False)

    def image_terms(self, y: Tensor, x: Tensor, suffix: str) -> dict[str, Tensor]:
        c, out = self.cfg, {}
        if c.lpips > 0:
            out[f"lpips_{suffix}"] = multiscale_lpips(self.lpips_net, x, y, c.lpips_scales, c.lpips_min_size)
        if c.identity > 0:
            out[f"id_{suffix}"] = identity_loss(self.arcface, x, y, c.multi_layer_id)
        if c.parsing > 0:
            out[f"parsing_{suffix}"] = parsing_loss(self.parser, x, y, c.parsing_size)
        return out

    def forward(self, y: Tensor, x1: Tensor, x2: Optional[Tensor], feat: Optional[Tensor],
                feat_gen: Optional[Tensor], synthetic: Tensor) -> dict[str, Tensor]:
        _check_pair(x1, y, "FSLoss")
        if synthetic.shape != (y.shape[0],):
            raise VidinvError(f"FSLoss: synthetic must be a bool [B={y.shape[0]}] mask, got {tuple(synthetic.shape)}")
        c, terms = self.cfg, {}
        sel = synthetic if c.mse_on == "synthetic" else torch.ones_like(synthetic)
        if c.mse > 0 and bool(sel.any()):
            terms["mse"] = F.mse_loss(x1[sel], y[sel])
        terms.update(self.image_terms(y, x1, "1"))
        if x2 is not None:
            terms.update(self.image_terms(y, x2, "2"))
            if c.feature > 0 and feat is not None and feat_gen is not None:
                terms["feature"] = feature_loss(feat, feat_gen)
        terms["total"] = sum(self.weight(k) * v for k, v in terms.items())
        return terms

    def weight(self, name: str) -> float:
        """The weight of a term of the loss dict (``'lpips_2'`` -> ``cfg.lpips``)."""
        base = name.split("_")[0]
        return {"mse": self.cfg.mse, "lpips": self.cfg.lpips, "feature": self.cfg.feature,
                "id": self.cfg.identity, "parsing": self.cfg.parsing}[base]
