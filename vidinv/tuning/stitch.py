"""Stitching tuning (STIT, Tzaban et al. 2022): after the edit, tune the generator again, per frame or
per chunk of frames, so the edited crop agrees with the original frame just outside the face.

Regions (all from the face mask of the *original* crop, as STIT computes them):

* border band: the ring between the mask and the mask dilated by ``outer_dilation``, plus the part
  of the mask within ``edge_band`` of the crop's edge (where the paste-back meets the frame);
  loss: the tuned render against the **original crop** there.
* content: the mask minus the border band; loss (weight ``content_lambda``): the tuned render
  against the **un-stitched edit** there, so the inside keeps the edit.
* full mask: the dilated mask, what STIT pastes the stitched crop back with.

Each chunk starts from a fresh copy of the (PTI-tuned) generator; its result is stored as its own
:class:`TunedWeights` group (self-contained: the values of every parameter that differs from the
generator as it was before any tuning).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as Fn
from torch import Tensor

from vidinv.errors import InputError
from vidinv.inverters.base import check_code, check_images
from vidinv.tuning.config import StitchConfig
from vidinv.tuning.core import (check_clip_noise, generator_of, load_params, masked_error, render_grad,
                                snapshot, trainable)
from vidinv.tuning.weights import TunedWeights, changed_params

Progress = Callable[[int, float], None]


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Grey dilation by a ``(2r+1)``-square (a max filter). Shape: ``[B, 1, S, S]`` -> same."""
    if radius <= 0:
        return mask
    return Fn.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def boundary_band(mask: Tensor, width: int) -> Tensor:
    """The ring just outside a mask: ``dilate(mask, width) - mask``, clipped to [0, 1].

    Shape:
        mask ``[B, 1, S, S]`` in [0, 1] -> ``[B, 1, S, S]``.
    """
    _check_mask(mask)
    return (dilate(mask, int(width)) - mask).clamp(0, 1)


def _check_mask(mask: Tensor) -> None:
    if not torch.is_tensor(mask) or mask.ndim != 4 or mask.shape[1] != 1 or not mask.is_floating_point():
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise InputError(f"masks: expected a float tensor [B,1,S,S] in [0,1], got {shape}")


def stitch_masks(mask: Tensor, cfg: StitchConfig | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """STIT's three regions from a face mask: ``(content, border, full)``.

    Shape:
        mask ``[B, 1, S, S]`` in [0, 1] -> three ``[B, 1, S, S]``.
    """
    cfg = cfg or StitchConfig()
    _check_mask(mask)
    S = mask.shape[-1]
    inner = dilate(mask, cfg.pixels(cfg.inner_dilation, S))
    full = dilate(inner, cfg.pixels(cfg.outer_dilation, S))
    e = cfg.pixels(cfg.edge_band, S)
    r = torch.arange(S, device=mask.device)
    near = (r < e) | (r >= S - e)
    edge = (near[:, None] | near[None, :]).to(mask.dtype)[None, None]  # [1, 1, S, S]
    border = torch.maximum(torch.minimum(edge, inner), full - inner).clamp(0, 1)
    content = (mask - border).clamp(0, 1)
    return content, border, full


def _check(inverter: Any, codes: Mapping[str, Tensor], w_edit: Tensor, crops: Tensor, masks: Tensor) -> int:
    check_images(crops, "stitch_tune crops")
    _check_mask(masks)
    n = check_code(codes, ("w",), "stitch_tune codes")
    if not (crops.shape[0] == masks.shape[0] == w_edit.shape[0] == n):
        raise InputError(f"stitch_tune: codes ({n}), w_edit ({w_edit.shape[0]}), crops ({crops.shape[0]}) "
                         f"and masks ({masks.shape[0]}) must have one row per frame")
    if crops.shape[-2:] != masks.shape[-2:] or crops.shape[-1] != inverter.size:
        raise InputError(f"stitch_tune: crops {list(crops.shape[-2:])} and masks {list(masks.shape[-2:])} "
                         f"must both be {inverter.size}x{inverter.size}")
    return n


def stitch_tune(inverter: Any, codes: Mapping[str, Tensor], w_edit: Tensor, crops: Tensor, masks: Tensor,
                cfg: StitchConfig | None = None, base: TunedWeights | None = None, noise: list | None = None,
                frames: Tensor | None = None, progress: Progress | None = None) -> list[TunedWeights]:
    """Stitching tuning of the edit ``render(codes, w_edit)`` to the original crops, chunk by chunk.

    The generator is left as it was. Render the stitched frames with :func:`render_tuned`.

    Args:
        inverter: the inverter the codes come from (renders through its generator).
        codes: the frames' codes (pivots).
        w_edit: the edited latents.
        crops: the original aligned crops in [-1, 1].
        masks: face masks of the original crops in [0, 1] (e.g. a parsing or landmark-hull mask).
        cfg: :class:`StitchConfig` (STIT's defaults: 100 steps per frame, lr 3e-4).
        base: the clip's PTI weights to start every chunk from (None = the generator as it is).
        noise: the clip's fixed noise (batch-1 maps).
        frames: the clip's frame indices of the rows (stored with each group; default ``0..N-1``).
        progress: ``progress(step, loss)`` after every optimizer step (1-based over all chunks; at most
            ``cfg.steps * ceil(N / cfg.chunk)``).

    Returns:
        One ``TunedWeights(kind='stitch')`` per chunk, its ``frames`` the rows' frame indices;
        ``info['border']`` is the chunk's last border loss.

    Shape:
        codes ``{'w': [N, L, sd], ...}``; w_edit ``[N, L, sd]``; crops ``[N, 3, S, S]``;
        masks ``[N, 1, S, S]``.
    """
    cfg = cfg or StitchConfig()
    N = _check(inverter, codes, w_edit, crops, masks)
    check_clip_noise(noise, "stitch_tune")
    G = generator_of(inverter)
    device = next(G.parameters()).device
    codes = {k: v.to(device) for k, v in codes.items()}
    w_edit, crops, masks = w_edit.to(device), crops.to(device), masks.to(device)
    frames = torch.arange(N) if frames is None else torch.as_tensor(frames, dtype=torch.int64).cpu()
    content, border, _ = stitch_masks(masks, cfg)
    before = snapshot(G)
    groups: list[TunedWeights] = []
    counter = [0]
    try:
        with base.applied(G) if base is not None else nullcontext():
            start = snapshot(G)
            chunks = [slice(i, i + cfg.chunk) for i in range(0, N, cfg.chunk)]
            edited = torch.cat([inverter.render({k: v[sl] for k, v in codes.items()}, w_edit[sl], noise)
                                for sl in chunks])
            for sl in chunks:
                load_params(G, start)
                last = _tune_chunk(inverter, {k: v[sl] for k, v in codes.items()}, w_edit[sl], crops[sl],
                                   edited[sl], content[sl], border[sl], cfg, noise, progress, counter)
                groups.append(TunedWeights(changed_params(G, before), frames[sl].clone(), "stitch",
                                           {"border": last}))
    finally:
        load_params(G, before)
    return groups


def _tune_chunk(inverter: Any, code: dict[str, Tensor], w_edit: Tensor, crop: Tensor, edited: Tensor,
                content: Tensor, border: Tensor, cfg: StitchConfig, noise: list | None,
                progress: Progress | None, counter: list[int]) -> float:
    """STIT's per-frame loop: stop early once the border loss is under the threshold."""
    G = generator_of(inverter)
    last = float("nan")
    with trainable(G) as params:
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(cfg.steps):
            out = render_grad(inverter, code, w_edit, noise)
            b = masked_error(out, crop, border, cfg.l2)
            last = float(b.detach())
            if last < cfg.border_threshold:
                break
            loss = b + cfg.content_lambda * masked_error(out, edited, content, cfg.l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            counter[0] += 1
            if progress is not None:
                progress(counter[0], float(loss.detach()))
    return last


def render_tuned(inverter: Any, code: Mapping[str, Tensor], w_edit: Tensor | None = None,
                 noise: list | None = None, weights: TunedWeights | list[TunedWeights] | None = None,
                 frames: Tensor | None = None) -> Tensor:
    """``inverter.render`` with tuned weights: one group for all rows (PTI), or each row with the group that
    serves its frame index (stitching); rows no group serves render with the generator as it is.

    Shape:
        as ``inverter.render``: -> ``[B, 3, S, S]``; frames ``[B]`` (default ``0..B-1``).
    """
    if weights is None:
        return inverter.render(dict(code), w_edit, noise)
    check_clip_noise(noise, "render_tuned")
    groups = [weights] if isinstance(weights, TunedWeights) else list(weights)
    B = check_code(code, ("w",), "render_tuned code")
    frames = torch.arange(B) if frames is None else torch.as_tensor(frames, dtype=torch.int64).cpu()
    G = generator_of(inverter)
    out: Tensor | None = None
    done = torch.zeros(B, dtype=torch.bool)
    for g in groups + [None]:
        rows = ~done if g is None else (~done & (torch.ones(B, dtype=torch.bool) if g.frames is None
                                                 else torch.isin(frames, g.frames.cpu())))
        if not rows.any():
            continue
        idx = rows.nonzero().flatten()
        sub = {k: v[idx.to(v.device)] for k, v in code.items()}
        we = None if w_edit is None else w_edit[idx.to(w_edit.device)]
        with g.applied(G) if g is not None else nullcontext():
            img = inverter.render(sub, we, noise)
        out = img.new_empty(B, *img.shape[1:]) if out is None else out
        out[idx.to(out.device)] = img
        done |= rows
    return out
