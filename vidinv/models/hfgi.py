"""HFGI (Wang et al., CVPR 2022): e4e plus distortion consultation, in the official checkpoint layout.

The checkpoint is ``{'state_dict': {'encoder.*', 'residue.*', 'decoder.*', 'grid_align.*'},
'latent_avg', 'opts'}``. The inference path (``scripts/inference.py``, per image):

1. ``w = encoder(x) + latent_avg`` (e4e, always 18 rows; the generator reads the first ``n_latent``);
2. ``img = G(w)`` with the stored noise; the distortion map ``D = x - resize256(clamp(img))``;
3. for the code to render ``w~`` (``w`` itself for the inversion): ``img~ = G(w~)``,
   ``res_align = grid_align(cat(D, resize256(clamp(img~))))`` (the ADA aligner),
   ``(scale, shift) = residue(res_align)`` (the consultation encoder, ``[B, C64, 64, 64]`` each);
4. ``out = G(w~)`` with ``x <- x * (1 + scale) + shift`` right after the upsampling conv of the 64x64
   level (:func:`synthesis_with_conditions`).

Resizes are bilinear, align_corners=False, no antialias (``F.interpolate`` defaults). Widths are
inferred from the state_dict shapes; loading is strict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.iresnet import count_blocks, load_strict
from vidinv.models.psp import BottleneckIR, Encoder4Editing, PSPCheckpoint, build_encoder, get_keys
from vidinv.models.stylegan2 import Generator, load_generator

__all__ = ["EqualConv2d", "ScaledLeakyReLU", "ResidualEncoder", "ResidualAligner", "HFGIModel",
           "synthesis_with_conditions", "load_hfgi", "tiny_hfgi", "CONDITION_LEVEL", "HFGI_INPUT_SIZE"]

CONDITION_LEVEL = 64  # the generator level whose first conv output is modulated (official ``i == 7``)
HFGI_INPUT_SIZE = 256


class EqualConv2d(nn.Module):
    """Conv with the equalised-lr scale ``1/sqrt(in k k)`` applied at run time (rosinality). Shape: conv2d."""

    def __init__(self, in_c: int, out_c: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_c, in_c, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_c)) if bias else None
        self.scale = 1 / math.sqrt(in_c * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x, slope) * sqrt(2)``."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope) * math.sqrt(2)


def _ir_stage(widths: Sequence[int], in_c: int, first_stride: int) -> nn.Sequential:
    """Plain IR units ``in_c -> widths[0] -> widths[1] ...``; only the first one strided."""
    units = []
    for i, w in enumerate(widths):
        units.append(BottleneckIR(in_c, w, first_stride if i == 0 else 1))
        in_c = w
    return nn.Sequential(*units)


def _stem(in_c: int, out_c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_c, out_c, 3, 1, 1, bias=False), nn.BatchNorm2d(out_c), nn.PReLU(out_c))


def _condition_head(in_c: int, out_c: int) -> nn.Sequential:
    return nn.Sequential(EqualConv2d(in_c, out_c, 3, 1, 1), ScaledLeakyReLU(0.2),
                         EqualConv2d(out_c, out_c, 3, 1, 1))


class ResidualEncoder(nn.Module):
    """The consultation encoder E_c (key prefix ``residue.``): aligned residual -> (scale, shift).

    Args:
        widths: the three stage widths (official 32/48/64); stages 2 and 3 halve the resolution.
        units: IR units per strided stage (official 3).
        cond_channels: channels of the conditions (the generator's 64x64 width, 512 at 1024).

    Shape:
        ``[B, 3, 256, 256] -> ([B, C, 64, 64], [B, C, 64, 64])``.
    """

    def __init__(self, widths: Sequence[int] = (32, 48, 64), units: int = 3, cond_channels: int = 512) -> None:
        super().__init__()
        w = tuple(int(c) for c in widths)
        self.conv_layer1 = _stem(3, w[0])
        self.conv_layer2 = _ir_stage([w[1]] * units, w[0], 2)
        self.conv_layer3 = _ir_stage([w[2]] * units, w[1], 2)
        self.condition_scale3 = _condition_head(w[2], cond_channels)
        self.condition_shift3 = _condition_head(w[2], cond_channels)
        self.cond_channels = cond_channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.conv_layer3(self.conv_layer2(self.conv_layer1(x)))
        size = (CONDITION_LEVEL, CONDITION_LEVEL)
        scale = F.interpolate(self.condition_scale3(feat), size=size, mode="bilinear", align_corners=False)
        shift = F.interpolate(self.condition_shift3(feat), size=size, mode="bilinear", align_corners=False)
        return scale, shift


class ResidualAligner(nn.Module):
    """The distortion-aware aligner ADA (key prefix ``grid_align.``): a small IR U-Net.

    Args:
        enc_widths: stem and three strided stages (official 16/32/48/64).
        dec_widths: the three decoder stages' unit widths (official (64,32,32), (32,16,16), (16,3,3));
            each stage reads the upsampled previous output concatenated with the skip of the same size.

    Shape:
        ``cat(distortion, image) [B, 6, 256, 256] -> [B, 3, 256, 256]``.
    """

    def __init__(self, enc_widths: Sequence[int] = (16, 32, 48, 64),
                 dec_widths: Sequence[Sequence[int]] = ((64, 32, 32), (32, 16, 16), (16, 3, 3)),
                 units: int = 3) -> None:
        super().__init__()
        e = tuple(int(c) for c in enc_widths)
        self.conv_layer1 = _stem(6, e[0])
        self.conv_layer2 = _ir_stage([e[1]] * units, e[0], 2)
        self.conv_layer3 = _ir_stage([e[2]] * units, e[1], 2)
        self.conv_layer4 = _ir_stage([e[3]] * units, e[2], 2)
        d1, d2, d3 = (list(d) for d in dec_widths)
        self.dconv_layer1 = _ir_stage(d1, e[3] + e[2], 1)
        self.dconv_layer2 = _ir_stage(d2, d1[-1] + e[1], 1)
        self.dconv_layer3 = _ir_stage(d3, d2[-1] + e[0], 1)

    def forward(self, x: Tensor) -> Tensor:
        f1 = self.conv_layer1(x)
        f2 = self.conv_layer2(f1)
        f3 = self.conv_layer3(f2)
        f4 = self.conv_layer4(f3)
        y = f4
        for dconv, skip in ((self.dconv_layer1, f3), (self.dconv_layer2, f2), (self.dconv_layer3, f1)):
            up = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = dconv(torch.cat((up, skip), 1))
        return y


def synthesis_with_conditions(G: Generator, w: Tensor, conditions: tuple[Tensor, Tensor] | None = None,
                              noise: Sequence[Tensor] | None = None) -> Tensor:
    """HFGI's generator pass: after the upsampling conv of the 64x64 level, ``x * (1 + scale) + shift``.

    Args:
        G: a rosinality-layout :class:`~vidinv.models.stylegan2.Generator` (size >= 64).
        w: W+ codes ``[B, n_latent, sd]`` (or ``[B, sd]``, broadcast).
        conditions: ``(scale, shift)``; None renders plain ``G(w)``.
        noise: ``G.num_layers`` maps (batch 1 broadcasts); None = G's stored noise buffers.

    Shape:
        conditions ``[B, C64, 64, 64]`` each -> ``[B, 3, S, S]``.
    """
    if w.ndim == 2 and w.shape[1] == G.style_dim:
        w = w[:, None].expand(-1, G.n_latent, -1)
    if w.ndim != 3 or tuple(w.shape[1:]) != (G.n_latent, G.style_dim):
        raise VidinvError(f"w must be [B, {G.n_latent}, {G.style_dim}] or [B, {G.style_dim}], got {list(w.shape)}")
    B = w.shape[0]
    noise = G.stored_noise() if noise is None else list(noise)
    if len(noise) != G.num_layers:
        raise VidinvError(f"noise must be a list of {G.num_layers} tensors, got {len(noise)}")
    if conditions is not None:
        if G.size < CONDITION_LEVEL:
            raise VidinvError(f"HFGI conditions need a generator of size >= {CONDITION_LEVEL}, got {G.size}")
        c = G.channels[CONDITION_LEVEL]
        for t in conditions:
            if t.ndim != 4 or tuple(t.shape[1:]) != (c, CONDITION_LEVEL, CONDITION_LEVEL) or \
                    t.shape[0] not in (1, B):
                raise VidinvError(f"HFGI conditions must be [{B}, {c}, 64, 64], got {list(t.shape)}")
    x = G.input(B)
    if G.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = G.conv1(x, w[:, 0], noise[0])
    skip = G.to_rgb1(x, w[:, 1])
    for j, rgb in enumerate(G.to_rgbs):
        i = 2 * j + 1
        x = G.convs[2 * j](x, w[:, i], noise[i])
        if conditions is not None and x.shape[-1] == CONDITION_LEVEL:  # official: loop index i == 7
            x = x * (1 + conditions[0].to(x.dtype)) + conditions[1].to(x.dtype)
        x = G.convs[2 * j + 1](x, w[:, i + 1], noise[i + 1])
        skip = rgb(x, w[:, i + 2], skip)
    return skip.contiguous()


def _resize(img: Tensor, size: int = HFGI_INPUT_SIZE) -> Tensor:
    return F.interpolate(img.clamp(-1, 1), size=(size, size), mode="bilinear", align_corners=False)


class HFGIModel(PSPCheckpoint):
    """The official HFGI checkpoint as modules.

    ``encoder`` (e4e), ``decoder`` (Generator), ``residue`` (consultation encoder E_c), ``grid_align`` (ADA).

    Shape:
        ``x [B, 3, 256, 256]`` in [-1, 1]; codes ``[B, 18, sd]``; images ``[B, 3, S, S]``.
    """

    def __init__(self, encoder: Encoder4Editing, decoder: Generator, latent_avg: Tensor | None,
                 residue: ResidualEncoder, grid_align: ResidualAligner,
                 opts: Mapping[str, Any] | None = None) -> None:
        super().__init__(encoder, decoder, latent_avg, opts)
        if decoder.size >= CONDITION_LEVEL and residue.cond_channels != decoder.channels[CONDITION_LEVEL]:
            raise VidinvError(f"HFGI residue gives {residue.cond_channels} condition channels, the generator has "
                              f"{decoder.channels[CONDITION_LEVEL]} at 64x64")
        self.residue, self.grid_align = residue, grid_align

    @staticmethod
    def distortion(x: Tensor, image: Tensor) -> Tensor:
        """``x - resize256(clamp(image))``. Shape: ``[B,3,256,256], [B,3,S,S] -> [B,3,256,256]``."""
        return x - _resize(image, x.shape[-1])

    def consult(self, distortion: Tensor, image: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ADA + E_c: ``res_align`` ``[B,3,256,256]`` and the conditions ``(scale, shift)`` ``[B,C64,64,64]``."""
        res_align = self.grid_align(torch.cat((distortion, _resize(image, distortion.shape[-1])), 1))
        return res_align, self.residue(res_align)


def _widths_of(sd: Mapping[str, Tensor], prefix: str) -> list[int]:
    return [int(sd[f"{prefix}.{i}.res_layer.1.weight"].shape[0]) for i in range(count_blocks(sd, prefix))]


def residue_from_state_dict(sd: Mapping[str, Tensor]) -> ResidualEncoder:
    """A strictly loaded :class:`ResidualEncoder` sized from a ``residue.*`` state_dict (prefix stripped)."""
    what = "HFGI consultation encoder (residue.*)"
    try:
        w0 = int(sd["conv_layer1.0.weight"].shape[0])
        w1, w2 = _widths_of(sd, "conv_layer2"), _widths_of(sd, "conv_layer3")
        cond = int(sd["condition_scale3.0.weight"].shape[0])
    except KeyError as e:
        raise VidinvError(f"{what} does not match the official layout: missing key {e.args[0]}") from None
    if not w1 or len(w1) != len(w2):
        raise VidinvError(f"{what} does not match the official layout: stages of {len(w1)} and {len(w2)} units")
    return load_strict(ResidualEncoder((w0, w1[0], w2[0]), len(w1), cond), sd, what)


def aligner_from_state_dict(sd: Mapping[str, Tensor]) -> ResidualAligner:
    """A strictly loaded :class:`ResidualAligner` sized from a ``grid_align.*`` state_dict (prefix stripped)."""
    what = "HFGI aligner (grid_align.*)"
    try:
        enc = [int(sd["conv_layer1.0.weight"].shape[0])] + [_widths_of(sd, f"conv_layer{k}")[0] for k in (2, 3, 4)]
        units = count_blocks(sd, "conv_layer2")
        dec = [_widths_of(sd, f"dconv_layer{k}") for k in (1, 2, 3)]
    except (KeyError, IndexError) as e:
        raise VidinvError(f"{what} does not match the official layout: missing {e}") from None
    return load_strict(ResidualAligner(enc, dec, units), sd, what)


def load_hfgi(src: str | PathLike | Mapping[str, Any]) -> HFGIModel:
    """Load an official HFGI checkpoint strictly (``ckpt/ckpt.pt`` layout); sizes from the shapes; eval, CPU.

    Args:
        src: a path (``safe_load``, ``weights_only=True``) or the loaded dict
            ``{'state_dict': {'encoder.*', 'residue.*', 'decoder.*', 'grid_align.*'}, 'latent_avg', 'opts'}``.
    """
    if isinstance(src, (str, PathLike)):
        from vidinv.models.checkpoint import safe_load

        src = safe_load(src)
    if not isinstance(src, Mapping) or not isinstance(src.get("state_dict"), Mapping):
        keys = ", ".join(list(src)[:6]) if isinstance(src, Mapping) else type(src).__name__
        raise VidinvError(f"not an HFGI checkpoint: expected {{'state_dict', 'latent_avg', 'opts'}}, got {keys}")
    sd = src["state_dict"]
    parts = {name: get_keys(sd, name) for name in ("encoder", "residue", "grid_align", "decoder")}
    missing = [k for k, v in parts.items() if not v]
    if missing:
        names = ", ".join(m + ".*" for m in missing)
        raise VidinvError(f"not an HFGI checkpoint: no {names} keys in its state_dict")
    known = {k for k in sd if k.split(".", 1)[0] in parts}
    if len(known) != len(sd):
        extra = sorted(set(sd) - known)[:3]
        raise VidinvError(f"HFGI checkpoint has unexpected keys: {', '.join(extra)}")
    encoder = build_encoder(parts["encoder"], "Encoder4Editing", "HFGI encoder (encoder.*)")
    decoder, _ = load_generator({"state_dict": sd})
    model = HFGIModel(encoder, decoder, src.get("latent_avg"), residue_from_state_dict(parts["residue"]),
                      aligner_from_state_dict(parts["grid_align"]), src.get("opts"))
    return model.eval()


@torch.no_grad()
def tiny_hfgi(seed: int = 0, generator: Generator | None = None) -> HFGIModel:
    """A tiny random HFGI (the tiny 64 px generator, narrow encoders) for fast tests.

    BN statistics are calibrated on smooth random inputs, and the last conv of each condition head
    is scaled by 0.1 (conditions O(0.1-1), as in a trained model).
    """
    from vidinv.models.psp import tiny_e4e
    from vidinv.models.tiny import calibrate_batchnorm

    e4e = tiny_e4e(seed, generator=generator)
    G = e4e.decoder
    torch.manual_seed(seed + 2)
    residue = ResidualEncoder((8, 12, 16), units=1, cond_channels=G.channels[CONDITION_LEVEL])
    align = ResidualAligner((4, 8, 12, 16), ((8, 8), (8, 4), (4, 3)), units=1)
    calibrate_batchnorm(residue, (3, 128, 128), seed)
    calibrate_batchnorm(align, (6, 128, 128), seed)
    for head in (residue.condition_scale3, residue.condition_shift3):
        head[2].weight.mul_(0.1)
        head[2].bias.normal_(0, 0.01)
    return HFGIModel(e4e.encoder, G, e4e.latent_avg, residue, align, {"note": "tiny random HFGI"}).eval()
