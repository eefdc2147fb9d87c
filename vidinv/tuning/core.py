"""What both tunings share: the inverter's generator, a differentiable render, weight swaps, LPIPS.

Tuning goes through the inverter's own ``render(code, w_edit, noise)`` (so the Feature-Style
feature replacement, HFGI's conditions, ... stay exactly what the pipeline renders), called
without its ``torch.no_grad`` decorator so gradients reach the generator's weights.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

GENERATOR_ATTRS = ("generator", "G", "net.decoder")  # fs/padinv, psp/e4e/hfgi, hyperinverter
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_WARNED: set[str] = set()


def generator_of(inverter: Any) -> nn.Module:
    """The generator module an inverter renders through (``inverter.generator``, ``.G`` or ``.net.decoder``).

    Raises:
        VidinvError: the inverter exposes no generator module.
    """
    for path in GENERATOR_ATTRS:
        G = inverter
        for attr in path.split("."):
            G = getattr(G, attr, None)
        if isinstance(G, nn.Module):
            return G
    raise VidinvError(f"inverter {getattr(inverter, 'name', type(inverter).__name__)!r} exposes no generator "
                      f"module ({' or '.join(GENERATOR_ATTRS)}): it cannot be tuned")


def render_grad(inverter: Any, code: Mapping[str, Tensor], w_edit: Tensor | None = None,
                noise: list | None = None) -> Tensor:
    """``inverter.render(code, w_edit, noise)`` with gradients (the method's ``no_grad`` wrapper skipped).

    Shape:
        -> ``[B, 3, S, S]``.
    """
    fn = inspect.unwrap(type(inverter).render)
    with torch.enable_grad():
        return fn(inverter, dict(code), w_edit, noise)


def check_clip_noise(noise: list | None, who: str) -> None:
    """Tuning renders row subsets of the clip, so its noise must be one fixed noise for the whole clip."""
    if noise is None:
        return
    bad = [i for i, n in enumerate(noise) if n is not None and n.shape[0] != 1]
    if bad:
        raise InputError(f"{who}: noise must be one fixed noise for the clip (batch-1 maps); "
                         f"entries {bad[:4]} have a batch dimension")


def snapshot(G: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter (name -> tensor)."""
    return {n: p.detach().clone() for n, p in G.named_parameters()}


@torch.no_grad()
def load_params(G: nn.Module, params: Mapping[str, Tensor]) -> None:
    """Copy ``params`` into G's parameters of the same names, in place (exact values).

    In-place copies under ``no_grad`` bump each parameter's version, so weight-derived caches
    (the modulated convs') are recomputed.
    """
    own = dict(G.named_parameters())
    unknown = [n for n in params if n not in own]
    if unknown:
        raise VidinvError(f"tuned weights do not fit this generator: unknown parameters {unknown[:4]}")
    for n, v in params.items():
        if own[n].shape != v.shape:
            raise VidinvError(f"tuned weights do not fit this generator: {n} is {list(v.shape)}, "
                              f"the generator's {list(own[n].shape)}")
        own[n].copy_(v)


@contextmanager
def swapped(G: nn.Module, params: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """Within the block G holds ``params`` (a subset of its parameters); the old values come back after."""
    own = dict(G.named_parameters())
    keep = {n: own[n].detach().clone() for n in params if n in own}
    load_params(G, params)
    try:
        yield G
    finally:
        load_params(G, keep)


@contextmanager
def trainable(G: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Within the block every parameter of G records gradients; the flags come back after."""
    flags = {n: p.requires_grad for n, p in G.named_parameters()}
    G.requires_grad_(True)
    try:
        yield list(G.parameters())
    finally:
        for n, p in G.named_parameters():
            p.requires_grad_(flags[n])
            p.grad = None


def _warn_once(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        log.warning(reason)


def load_lpips_loss(net: str = "alex", device: torch.device | str = "cpu") -> tuple[nn.Module | None, str]:
    """The ``lpips`` package's loss with a pretrained backbone, or ``(None, reason)`` (warned once).

    The backbone's torchvision weights must already be in the torch hub cache: nothing is downloaded.
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES.get(net, "?")
    if net not in LPIPS_BACKBONES:
        raise VidinvError(f"lpips net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    reason = ""
    if not path.is_file():
        reason = (f"LPIPS ({net}) unavailable: {path} is missing; tuning uses the L2 loss only "
                  f"(put torchvision's {path.name} there to add LPIPS)")
    else:
        try:
            import warnings

            import lpips

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                m = lpips.LPIPS(net=net, verbose=False).eval().to(device).requires_grad_(False)
            return m, ""
        except Exception as e:  # a broken cache file or package: say so, go on without LPIPS
            reason = f"LPIPS ({net}) unavailable: {e}; tuning uses the L2 loss only"
    _warn_once(reason)
    return None, reason


def masked_error(x: Tensor, y: Tensor, mask: Tensor, l2: bool = True) -> Tensor:
    """STIT's masked loss: the squared (or absolute) error summed over channels and masked pixels, divided
    by the mask's sum. Shape: x, y ``[B, 3, S, S]``, mask ``[B|1, 1, S, S]`` -> scalar."""
    d = (x - y) * mask
    err = d.square() if l2 else d.abs()
    return err.sum() / mask.expand(x.shape[0], 1, *x.shape[2:]).sum().clamp_min(1e-8)
