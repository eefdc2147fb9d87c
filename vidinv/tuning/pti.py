"""Pivotal tuning of the generator on one clip (PTI, Roich et al. 2022, as STIT applies it to videos).

Each frame's code from the inverter is its *pivot* and stays fixed; the generator's weights are
fine-tuned so that ``render(pivot)`` reproduces the frame (L2 + LPIPS), one optimizer step per
batch, every tuned frame once per pass, in clip order (STIT's loop). The optional locality
regulariser samples latents, moves each a fixed distance ``alpha`` from a pivot towards it, and
keeps the tuned generator's render there close to the original generator's.

Feature-Style (``fs``) codes: the feature code F is held fixed as part of the pivot (the encoder's
output is never recomputed). The reconstruction render replaces the generator's feature K by F,
so it trains the layers after K and, through the RGB skip branch of the layers before K, those
too; the locality term renders edits (``F~ = F + G^K(w~) - G^K(w)``) and so also constrains the
layers up to K the edit moves F with. The same code path serves every inverter, because tuning
goes through the inverter's own ``render``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from vidinv.errors import InputError, VidinvError
from vidinv.inverters.base import check_code, check_images, expand_w
from vidinv.tuning.config import TuneConfig
from vidinv.tuning.core import (check_clip_noise, generator_of, load_lpips_loss, load_params, render_grad,
                                snapshot, swapped, trainable)
from vidinv.tuning.weights import TunedWeights, changed_params

Progress = Callable[[int, float], None]


def _lpips_for(cfg_net: str, wanted: bool, lpips: Any, device: torch.device) -> nn.Module | None:
    if not wanted or lpips is None:
        return None
    if isinstance(lpips, str) and lpips == "auto":
        return load_lpips_loss(cfg_net, device)[0]
    if not callable(lpips):
        raise InputError(f"lpips must be 'auto', None or a callable loss, got {type(lpips).__name__}")
    return lpips


def _image_loss(x: Tensor, y: Tensor, l2_lambda: float, lpips_lambda: float, lp: nn.Module | None) -> Tensor:
    loss = l2_lambda * Fn.mse_loss(x, y)
    if lp is not None and lpips_lambda > 0:
        loss = loss + lpips_lambda * lp(x, y).mean()
    return loss


def _rows(code: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in code.items()}


class _Locality:
    """STIT's space regulariser: latents at distance ``alpha`` from the pivots, tuned G vs original G."""

    def __init__(self, inverter: Any, G: nn.Module, original: dict[str, Tensor], cfg: TuneConfig,
                 lp: nn.Module | None, device: torch.device) -> None:
        if not callable(getattr(G, "mapping", None)):
            raise VidinvError("the locality regulariser needs a generator with a mapping network")
        self.inv, self.G, self.original, self.cfg, self.lp = inverter, G, original, cfg, lp
        self.gen = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad(), swapped(G, original):
            z = torch.randn(4096, inverter.style_dim, generator=self.gen).to(device)
            self.w_avg = G.mapping(z).mean(0, keepdim=True)  # [1, sd]
        self.device = device

    def targets(self, code: Mapping[str, Tensor],
                noise: list | None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Sampled codes, their latents and the original generator's renders (no grad)."""
        cfg, B = self.cfg, code["w"].shape[0]
        j = torch.arange(cfg.locality_samples, device=self.device) % B
        piv = expand_w(code["w"], self.inv.n_latent, self.inv.style_dim)[j]  # [n, L, sd]
        z = torch.randn(len(j), self.inv.style_dim, generator=self.gen).to(self.device)
        with torch.no_grad(), swapped(self.G, self.original):
            w = self.w_avg + cfg.locality_psi * (self.G.mapping(z) - self.w_avg)  # truncated W
            d = w[:, None] - piv
            w_r = piv + cfg.locality_alpha * d / d.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, 1, 1)
            code_r = _rows(code, j)
            old = self.inv.render(code_r, w_r, noise)
        return code_r, w_r, old

    def loss(self, code_r: dict[str, Tensor], w_r: Tensor, old: Tensor, noise: list | None) -> Tensor:
        new = render_grad(self.inv, code_r, w_r, noise)
        return _image_loss(new, old, self.cfg.locality_l2, self.cfg.locality_lpips, self.lp)


def _check_inputs(inverter: Any, crops: Tensor, codes: Mapping[str, Tensor]) -> int:
    check_images(crops, "pivotal_tune crops")
    n = check_code(codes, ("w",), "pivotal_tune codes")
    if n != crops.shape[0]:
        raise InputError(f"pivotal_tune: {crops.shape[0]} crops but {n} codes")
    if crops.shape[-1] != inverter.size or crops.shape[-2] != inverter.size:
        raise InputError(f"pivotal_tune: crops must be {inverter.size}x{inverter.size} "
                         f"(the generator's size), got {list(crops.shape[-2:])}")
    return n


def pivotal_tune(inverter: Any, crops: Tensor, codes: Mapping[str, Tensor], cfg: TuneConfig | None = None,
                 noise: list | None = None, lpips: Any = "auto",
                 progress: Progress | None = None) -> TunedWeights:
    """Fine-tune the inverter's generator on a clip's aligned crops around their fixed codes.

    The generator is left as it was; the result holds the tuned values of the parameters that
    changed (apply with ``weights.applied(generator_of(inverter))`` or :func:`render_tuned`).

    Args:
        inverter: any inverter whose ``render`` goes through ``inverter.generator`` / ``inverter.G``.
        crops: the clip's aligned face crops in [-1, 1], in clip order.
        codes: the inverter's codes of those crops (the pivots; not modified).
        cfg: :class:`TuneConfig` (STIT's defaults).
        noise: the clip's fixed noise, batch-1 maps (None = the generator's stored noise), as the pipeline
            renders.
        lpips: ``'auto'`` (the ``lpips`` package if its backbone is cached, else L2 only, said once),
            None (L2 only) or a callable ``(x, y) -> [B,...]`` loss.
        progress: called ``progress(step, loss)`` after every optimizer step (1-based;
            the total is ``cfg.num_steps(N)``).

    Returns:
        ``TunedWeights(kind='pti', frames=None)``; ``info['loss']`` is the last step's loss.

    Shape:
        crops ``[N, 3, S, S]``; codes ``{'w': [N, L, sd], ...}`` (every entry ``[N, ...]``).
    """
    cfg = cfg or TuneConfig()
    N = _check_inputs(inverter, crops, codes)
    check_clip_noise(noise, "pivotal_tune")
    G = generator_of(inverter)
    device = next(G.parameters()).device
    crops = crops.to(device)
    codes = {k: v.to(device) for k, v in codes.items()}
    idx = torch.tensor(cfg.train_frames(N), dtype=torch.long, device=device)
    wants_lpips = cfg.lpips_lambda > 0 or (cfg.locality and cfg.locality_lpips > 0)
    lp = _lpips_for(cfg.lpips_net, wants_lpips, lpips, device)
    before = snapshot(G)
    loc = _Locality(inverter, G, before, cfg, lp, device) if cfg.locality else None
    step, last = 0, float("nan")
    try:
        with trainable(G) as params:
            opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
            for _ in range(cfg.epochs):
                for b in idx.split(cfg.batch):
                    last = _pti_step(inverter, opt, crops[b], _rows(codes, b), noise, cfg, lp,
                                     loc if loc is not None and step % cfg.locality_every == 0 else None)
                    step += 1
                    if progress is not None:
                        progress(step, last)
        tuned = changed_params(G, before)
    finally:
        load_params(G, before)
    return TunedWeights(tuned, None, "pti", {"loss": last, "steps": float(step)})


def _pti_step(inverter: Any, opt: torch.optim.Optimizer, target: Tensor, code: dict[str, Tensor],
              noise: list | None, cfg: TuneConfig, lp: nn.Module | None, loc: _Locality | None) -> float:
    reg = loc.targets(code, noise) if loc is not None else None  # original-G renders before the graph
    out = render_grad(inverter, code, None, noise)
    loss = _image_loss(out, target, cfg.l2_lambda, cfg.lpips_lambda, lp)
    if reg is not None:
        loss = loss + loc.loss(*reg, noise)
    if not loss.requires_grad:
        raise VidinvError(f"inverter {getattr(inverter, 'name', '?')!r} does not render differentiably "
                          "through its generator: it cannot be tuned")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())
