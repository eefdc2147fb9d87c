"""PadInv (Bai et al., "High-fidelity GAN inversion with padding space"): encoder and generator.

PadInv is built on the genforce/Hammer codebase, so both networks use genforce key names:

* :class:`PadInvEncoder`: IR-SE backbone (``backbone_stages.{s}.{b}``), an FPN whose top level is
  not projected, pSp-style ``latent_heads`` giving W+ (``avg_latent`` added), and the padding
  branch: ``padding_extractor`` (IR-SE blocks on the 32x32 FPN level), a bicubic resize to
  ``2**(pad_layer_num+1)+2`` and 1x1 ``padding_modulation_heads`` (one map per padded layer).
* :class:`PadInvGenerator`: genforce ``StyleGAN2GeneratorPadInv`` (``mapping.dense{i}``,
  ``synthesis.early_layer.const``, ``synthesis.layer{k}``, ``synthesis.output{j}``, ``w_avg``).
  ``padding_maps[0]`` (center-cropped) replaces the constant input; layer ``k`` gets
  ``padding_maps[k+1]``: the modulated input is written into the map's center and the conv
  runs without zero padding. Unlike the official code the maps are not modified in place.

The IR-SE blocks and the modulated conv are shared with :mod:`vidinv.models.hyperinverter`.
Checkpoints are the runner layout ``{'models': {'encoder', 'generator', 'generator_smooth'}, ...}``
read with ``torch.load(weights_only=True)``; sizes are inferred from the state_dicts.
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
from vidinv.models.stylegan2 import SQRT2, make_kernel, upfirdn2d

# ----------------------------------------------------------------------------- IR-SE blocks (pSp / genforce)


class SEModule(nn.Module):
    """Squeeze-and-excitation with bias-free 1x1 convs ``fc1``/``fc2``. Shape: ``[B,C,H,W]`` -> same."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class BottleneckIRSE(nn.Module):
    """IR(-SE) unit: ``res_layer`` (BN, conv3x3, PReLU, conv3x3/stride, BN, SE) + ``shortcut_layer``.

    The shortcut is a parameterless ``MaxPool2d(1, stride)`` when widths match, else 1x1 conv + BN.

    Shape:
        ``[B, cin, H, W] -> [B, cout, H/stride, W/stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, se_hidden: int | None = None) -> None:
        super().__init__()
        if cin == cout:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        layers = [
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if se_hidden:
            layers.append(SEModule(cout, se_hidden))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


UnitSpec = tuple[int, int, int, int | None]  # (cin, cout, stride, SE hidden width or None)


def irse_unit_specs(sd: Mapping[str, Tensor], prefix: str, strides: str = "first") -> list[UnitSpec]:
    """Sizes of the IR-SE units ``{prefix}.{i}`` read from their weights.

    Args:
        sd: state_dict.
        prefix: e.g. ``'backbone_stages.1'``, ``'padding_extractor'`` or ``'body'``.
        strides: ``'first'`` (unit 0 has stride 2: a genforce stage), ``'none'`` (all 1), or ``'psp'``
            (a whole pSp body: unit 0 and every unit with a conv shortcut start a stage, stride 2).
    """
    specs = []
    for i in range(count_blocks(sd, prefix)):
        p = f"{prefix}.{i}"
        cout, cin = sd[f"{p}.res_layer.1.weight"].shape[:2]
        se = sd.get(f"{p}.res_layer.5.fc1.weight")
        first = i == 0 or (strides == "psp" and f"{p}.shortcut_layer.0.weight" in sd)
        stride = 2 if first and strides != "none" else 1
        specs.append((int(cin), int(cout), stride, None if se is None else int(se.shape[0])))
    return specs


def input_layer(cin: int, width: int) -> nn.Sequential:
    """``input_layer``: conv3x3 (no bias), BN, PReLU. Shape: ``[B,cin,H,W] -> [B,width,H,W]``."""
    return nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


class EqualLinear(nn.Module):
    """pSp/genforce ``EqualLinear``: ``x @ (W / sqrt(in) * lr)^T + b * lr``. Shape: ``[B,in] -> [B,out]``."""

    def __init__(self, cin: int, cout: int, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.lr_mul = lr_mul / math.sqrt(cin), lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


# ----------------------------------------------------------------------------- encoder


class StyleHead(nn.Module):
    """``Map2StyleCodeHead``: stride-2 3x3 convs + LeakyReLU(0.01) down to 1x1, then EqualLinear.

    Shape:
        ``[B, cin, s, s] -> [B, dim]`` with ``s = 2**n_convs``.
    """

    def __init__(self, cin: int, dim: int, n_convs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(cin if i == 0 else dim, dim, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(dim, dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).reshape(-1, self.dim))


class FPN(nn.Module):
    """Top-down FPN; 1x1 ``lateral_layers`` on all levels but the top, which is used as is.

    Shape:
        list of ``[B, C_i, H_i, W_i]`` (high resolution first) -> list of ``[B, fpn, H_i, W_i]``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.lateral_layers = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels[:-1])

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        out = [lat(f) for lat, f in zip(self.lateral_layers, feats)] + [feats[-1]]
        for i in range(len(out) - 1, 0, -1):
            scale = out[i - 1].shape[2] // out[i].shape[2]
            out[i - 1] = out[i - 1] + F.interpolate(
                out[i], scale_factor=scale, mode="bilinear", align_corners=True
            )
        return out


class PadInvEncoder(nn.Module):
    """PadInv encoder (genforce ``PadInvEncoder`` key layout), built from explicit sizes.

    Args:
        stages: per stage a list of ``(cin, cout, stride, se_hidden)`` units.
        inplanes: width of ``input_layer``.
        latent_dims: per W+ row its dimension (all equal in practice).
        latents_per_level: how many rows each FPN level (low resolution first) predicts.
        head_convs: number of stride-2 convs per head.
        fpn_channels: FPN width (= width of the top stage).
        padding_blocks: ``(cin, cout, stride, se_hidden)`` of the padding extractor (empty: pSp mode).
        n_modulation_heads: number of 1x1 padding modulation heads (= ``pad_layer_num``; 0 = none).
        pad_layer_num: number of padded layers (padding map size ``2**(pad_layer_num+1)+2``).
        only_pad_even: maps go to padding_maps[1, 3, 5, ...] (the non-upsampling convs).
        encode_const_input: padding_maps[0] (the constant-input replacement) is set.
        feature_idx: FPN level (after the low-resolution-first reorder) feeding the padding branch.

    Shape:
        x ``[B, 3, 256, 256]`` -> ``{'style_latents': [B, L, W], 'padding_maps': list of L
        ([B, fpn, P, P] or None)}``.
    """

    def __init__(
        self,
        stages: Sequence[Sequence[UnitSpec]],
        inplanes: int,
        latent_dims: Sequence[int],
        latents_per_level: Sequence[int],
        head_convs: Sequence[int],
        fpn_channels: int,
        padding_blocks: Sequence[UnitSpec] = (),
        n_modulation_heads: int = 0,
        pad_layer_num: int = 4,
        only_pad_even: bool = True,
        encode_const_input: bool = True,
        feature_idx: int = 1,
    ) -> None:
        super().__init__()
        self.input_layer = input_layer(3, inplanes)
        self.backbone_stages = nn.ModuleList(
            nn.Sequential(*(BottleneckIRSE(*u) for u in st)) for st in stages
        )
        self.use_padding_space = len(padding_blocks) > 0
        if self.use_padding_space:
            self.padding_extractor = nn.Sequential(*(BottleneckIRSE(*u) for u in padding_blocks))
            if n_modulation_heads:
                self.padding_modulation_heads = nn.ModuleList(
                    nn.Conv2d(fpn_channels, fpn_channels, 1) for _ in range(n_modulation_heads)
                )
        self.latents_per_level = list(latents_per_level)
        n_levels = len(self.latents_per_level)
        outs = [st[-1][1] for st in stages]
        self.fpn = FPN(outs[-n_levels:], fpn_channels)
        self.latent_heads = nn.ModuleList(
            StyleHead(fpn_channels, d, n) for d, n in zip(latent_dims, head_convs)
        )
        self.pad_layer_num, self.only_pad_even = pad_layer_num, only_pad_even
        self.encode_const_input, self.feature_idx = encode_const_input, feature_idx
        self.register_buffer("avg_latent", torch.zeros(latent_dims[0]), persistent=False)

    @property
    def n_latent(self) -> int:
        return len(self.latent_heads)

    def forward(self, x: Tensor) -> dict[str, Any]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise VidinvError(f"PadInvEncoder: expected images [B,3,H,W], got {tuple(x.shape)}")
        x = self.input_layer(x)
        feats = []
        for stage in self.backbone_stages:
            x = stage(x)
            feats.append(x)
        levels = self.fpn(feats[-len(self.latents_per_level) :])[::-1]  # low resolution first
        heads = iter(self.latent_heads)
        codes = [next(heads)(f) for f, n in zip(levels, self.latents_per_level) for _ in range(n)]
        style = torch.stack(codes, dim=1) + self.avg_latent  # [B, L, W]
        maps: list[Tensor | None] = [None] * len(codes)
        if self.use_padding_space:
            size = 2 ** (self.pad_layer_num + 1) + 2
            pm = F.interpolate(
                self.padding_extractor(levels[self.feature_idx]),
                size=(size, size),
                mode="bicubic",
                align_corners=True,
            )
            if self.encode_const_input:
                maps[0] = pm
            heads_pm = getattr(self, "padding_modulation_heads", None)
            per_layer = [h(pm) for h in heads_pm] if heads_pm is not None else [pm] * self.pad_layer_num
            for i, m in enumerate(per_layer):
                maps[2 * i + 1 if self.only_pad_even else i + (1 if heads_pm is None else 0)] = m
        return {"style_latents": style, "padding_maps": maps}


def _n_head_convs(sd: Mapping[str, Tensor], prefix: str) -> int:
    return len([k for k in sd if k.startswith(prefix + ".convs.") and k.endswith(".weight")])


def padinv_encoder_from_state_dict(sd: Mapping[str, Tensor], **kw: Any) -> PadInvEncoder:
    """Build (unloaded) a :class:`PadInvEncoder` whose sizes match the state_dict ``sd``.

    ``kw`` overrides ``pad_layer_num`` / ``only_pad_even`` / ``encode_const_input`` / ``feature_idx``
    (not recoverable from the weights when there are no modulation heads).
    """
    what = "PadInv encoder checkpoint"
    if "input_layer.0.weight" not in sd:
        raise VidinvError(f"{what} does not match the official layout: missing key input_layer.0.weight")
    stages = [irse_unit_specs(sd, f"backbone_stages.{s}") for s in range(count_blocks(sd, "backbone_stages"))]
    n_heads = count_blocks(sd, "latent_heads")
    if n_heads == 0 or not stages:
        raise VidinvError(f"{what} does not match the official layout: no latent_heads / backbone_stages")
    head_convs = [_n_head_convs(sd, f"latent_heads.{i}") for i in range(n_heads)]
    latent_dims = [int(sd[f"latent_heads.{i}.linear.weight"].shape[0]) for i in range(n_heads)]
    # heads of level l have 4 + l convs (spatial 16 * 2**l); consecutive groups form the levels
    levels = sorted(set(head_convs))
    per_level = [head_convs.count(n) for n in levels]
    pblocks = irse_unit_specs(sd, "padding_extractor", strides="none")
    n_mod = count_blocks(sd, "padding_modulation_heads")
    cfg: dict[str, Any] = dict(pad_layer_num=n_mod or 4)
    cfg.update(kw)
    return PadInvEncoder(
        stages,
        int(sd["input_layer.0.weight"].shape[0]),
        latent_dims,
        per_level,
        head_convs,
        int(sd["latent_heads.0.convs.0.weight"].shape[1]),
        pblocks,
        n_mod,
        **cfg,
    )


# ----------------------------------------------------------------------------- generator ops


def center_crop(x: Tensor, size: int) -> Tensor:
    """Central ``size x size`` window. Shape: ``[B,C,H,W] -> [B,C,size,size]``."""
    H, W = x.shape[-2:]
    if H < size or W < size:
        raise VidinvError(f"padding map {H}x{W} is smaller than the {size}x{size} the layer needs")
    y0, x0 = (H - size) // 2, (W - size) // 2
    return x[..., y0 : y0 + size, x0 : x0 + size]


def _pad_with(x: Tensor, padding_map: Tensor) -> Tensor:
    """``x`` written into the center of a copy of ``padding_map`` (cropped to ``x`` + 1 px border)."""
    pm = center_crop(padding_map, x.shape[-1] + 2).to(x.dtype)
    pm = pm.expand(x.shape[0], -1, -1, -1).clone()
    pm[:, :, 1:-1, 1:-1] = x
    return pm


def modulated_conv(
    x: Tensor,
    weight: Tensor,
    style: Tensor,
    demodulate: bool = True,
    up: int = 1,
    kernel: Tensor | None = None,
    padding_map: Tensor | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """NVlabs-semantics modulated conv (non-fused): ``conv(x * s, W) * d`` with d the demodulation.

    ``weight`` may be per sample (``[B,out,in,k,k]``, e.g. with HyperInverter's residuals): then
    the conv is grouped per sample. With ``up=2`` the conv is a stride-2 transposed conv followed
    by the FIR ``kernel`` (gain 4). ``padding_map`` replaces the zero padding (see module doc).

    Shape:
        x ``[B,in,H,W]``, weight ``[out,in,k,k]`` or ``[B,out,in,k,k]``, style ``[B,in]``
        -> ``[B,out,H*up,W*up]``.
    """
    B, cin, H, W = x.shape
    per_sample = weight.ndim == 5
    cout, k = weight.shape[-4], weight.shape[-1]
    x = x * style.reshape(B, cin, 1, 1)
    if demodulate:
        wm = (weight if per_sample else weight[None]) * style.reshape(B, 1, cin, 1, 1)
        dcoef = (wm.square().sum(dim=(2, 3, 4)) + eps).rsqrt()  # [B, out]
    if per_sample:
        x = x.reshape(1, B * cin, H, W)
    groups = B if per_sample else 1
    if up == 1:
        w = weight.reshape(-1, cin, k, k)
        if padding_map is not None:
            if per_sample:
                x = _pad_with(x.reshape(B, cin, H, W), padding_map).reshape(1, B * cin, H + 2, W + 2)
            else:
                x = _pad_with(x, padding_map)
            x = F.conv2d(x, w, groups=groups)
        else:
            x = F.conv2d(x, w, padding=k // 2, groups=groups)
    else:
        w = weight.transpose(-4, -3).reshape(-1, cout, k, k)  # [(B*)in, out, k, k]
        x = F.conv_transpose2d(x, w, stride=up, groups=groups)  # [.., up*H + k - up]
        assert kernel is not None
        kk = kernel * up**2
        if padding_map is not None:
            n = x.shape[-1]
            if per_sample:
                x = _pad_with(x.reshape(B, cout, n, n), padding_map).reshape(1, B * cout, n + 2, n + 2)
            else:
                x = _pad_with(x, padding_map)
            x = upfirdn2d(x, kk)
        else:
            p = (kernel.shape[-1] - up) - (k - 1)  # NVlabs filter padding minus the transposed-conv growth
            x = upfirdn2d(x, kk, pad=((p + 1) // 2 + up - 1, p // 2 + 1))
    x = x.reshape(B, cout, x.shape[-2], x.shape[-1])
    return x * dcoef.reshape(B, cout, 1, 1) if demodulate else x


def upsample_rgb(img: Tensor, kernel: Tensor) -> Tensor:
    """NVlabs ``upsample2d`` (FIR, gain 4). Shape: ``[B,C,H,W] -> [B,C,2H,2W]``."""
    p = kernel.shape[-1] - 2
    return upfirdn2d(img, kernel * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def bias_lrelu(x: Tensor, bias: Tensor) -> Tensor:
    """``leaky_relu(x + b, 0.2) * sqrt(2)`` (NVlabs ``bias_act`` 'lrelu', no clamp)."""
    return F.leaky_relu(x + bias.reshape(1, -1, 1, 1), 0.2) * SQRT2


# ----------------------------------------------------------------------------- generator (genforce layout)


class DenseLayer(nn.Module):
    """genforce ``DenseLayer``: ``x @ (W * gain/sqrt(in) * lr)^T + b * lr`` (optional lrelu).

    Shape:
        ``[B, in] -> [B, out]``.
    """

    def __init__(
        self, cin: int, cout: int, lr_mul: float = 1.0, bias_init: float = 0.0, act: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), bias_init / lr_mul))
        self.wscale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: Tensor) -> Tensor:
        if self.act:
            return F.leaky_relu(x @ (self.weight * self.wscale).t() + self.bias * self.lr_mul, 0.2) * SQRT2
        return torch.addmm(self.bias * self.lr_mul, x, (self.weight * self.wscale).t())


class ModulateConvLayer(nn.Module):
    """genforce ``ModulateConvLayer``: style affine, modulated conv, noise, bias + lrelu.

    ``kernel_size 1`` with ``demodulate False`` and no noise is the ToRGB ``output{j}`` layer.

    Shape:
        x ``[B,in,H,W]``, w ``[B,w_dim]`` -> ``[B,out,H*up,W*up]``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        w_dim: int,
        res: int,
        kernel_size: int = 3,
        up: int = 1,
        noise: bool = True,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.style = DenseLayer(w_dim, cin, bias_init=1.0)
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros(()))
            self.register_buffer("noise", torch.randn(1, 1, res, res))
        if up > 1:
            self.register_buffer("filter", make_kernel([1, 3, 3, 1]))
        self.up, self.demodulate, self.has_noise = up, demodulate, noise
        self.wscale = 1 / math.sqrt(cin * kernel_size * kernel_size)

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        padding_map: Tensor | None = None,
        noise: Tensor | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        style = self.style(w)
        if not self.demodulate:
            x = modulated_conv(x, self.weight, style * self.wscale, demodulate=False)
            return x + self.bias.reshape(1, -1, 1, 1)
        x = modulated_conv(
            x, self.weight, style, up=self.up, kernel=getattr(self, "filter", None), padding_map=padding_map
        )
        if self.has_noise and noise_mode != "none":
            if noise is None:
                noise = torch.randn_like(x[:, :1]) if noise_mode == "random" else self.noise
            x = x + noise.to(x.dtype) * self.noise_strength
        return bias_lrelu(x, self.bias)


class InputLayer(nn.Module):
    """The learned constant ``const`` ``[1, C, r, r]``."""

    def __init__(self, channels: int, res: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels, res, res))


class MappingNetwork(nn.Module):
    """Pixel norm + ``dense{i}`` (lrelu, lr_mul 0.01). Shape: z ``[B,z_dim] -> w [B,w_dim]``."""

    def __init__(self, z_dim: int, w_dim: int, n_layers: int, hidden: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.n_layers = n_layers
        for i in range(n_layers):
            self.add_module(
                f"dense{i}",
                DenseLayer(
                    z_dim if i == 0 else hidden,
                    w_dim if i == n_layers - 1 else hidden,
                    lr_mul=lr_mul,
                    act=True,
                ),
            )

    def forward(self, z: Tensor) -> Tensor:
        w = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.n_layers):
            w = getattr(self, f"dense{i}")(w)
        return w


class SynthesisNetwork(nn.Module):
    """genforce 'skip' synthesis with padding-map hooks (layer ``k`` reads ``padding_maps[k+1]``).

    Shape:
        wp ``[B, L, w_dim]`` -> image ``[B, 3, S, S]``.
    """

    def __init__(self, channels: Mapping[int, int], w_dim: int, init_res: int = 4) -> None:
        super().__init__()
        res_list = sorted(channels)
        self.init_res, self.resolution = init_res, res_list[-1]
        self.early_layer = InputLayer(channels[init_res], init_res)
        k = 0
        for j, res in enumerate(res_list):
            if res > init_res:
                self.add_module(
                    f"layer{k}", ModulateConvLayer(channels[res // 2], channels[res], w_dim, res, up=2)
                )
                k += 1
            self.add_module(f"layer{k}", ModulateConvLayer(channels[res], channels[res], w_dim, res))
            k += 1
            self.add_module(
                f"output{j}",
                ModulateConvLayer(channels[res], 3, w_dim, res, 1, noise=False, demodulate=False),
            )
        self.n_conv = k
        self.num_layers = k + 1
        self.register_buffer("filter", make_kernel([1, 3, 3, 1]))

    def forward(
        self,
        wp: Tensor,
        padding_maps: Sequence[Tensor | None] | None = None,
        noise: Sequence[Tensor | None] | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        maps = list(padding_maps or [])
        maps += [None] * (self.num_layers + 1 - len(maps))
        noise = list(noise or [])
        noise += [None] * (self.n_conv - len(noise))
        if maps[0] is not None:
            x = center_crop(maps[0], self.init_res).to(wp.dtype).expand(wp.shape[0], -1, -1, -1)
        else:
            x = self.early_layer.const.expand(wp.shape[0], -1, -1, -1)
        img = None
        for k in range(self.n_conv):
            x = getattr(self, f"layer{k}")(x, wp[:, k], maps[k + 1], noise[k], noise_mode)
            if k % 2 == 0:
                y = getattr(self, f"output{k // 2}")(x, wp[:, k + 1])
                img = y if img is None else y + upsample_rgb(img, self.filter)
        assert img is not None
        return img


class PadInvGenerator(nn.Module):
    """genforce StyleGAN2 generator (``StyleGAN2GeneratorPadInv`` keys) with padding-space input.

    Args:
        channels: width per resolution ``{4: c4, 8: c8, ..., S: cS}`` (genforce ``get_nf``).
        w_dim, z_dim, mapping_layers, mapping_fmaps: mapping network sizes.

    Attributes:
        size, n_latent (= num_layers), style_dim.
    """

    def __init__(
        self,
        channels: Mapping[int, int],
        w_dim: int = 512,
        z_dim: int = 512,
        mapping_layers: int = 8,
        mapping_fmaps: int = 512,
    ) -> None:
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_fmaps)
        self.synthesis = SynthesisNetwork(channels, w_dim, init_res=min(channels))
        self.size, self.style_dim, self.n_latent = self.synthesis.resolution, w_dim, self.synthesis.num_layers

    def render(
        self,
        wp: Tensor,
        padding_maps: Sequence[Tensor | None] | None = None,
        noise: Sequence[Tensor | None] | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        """``synthesis(wp, padding_maps)['image']`` of the official call, noise 'const' by default.

        Shape:
            wp ``[B, L, w_dim]`` (or ``[B, w_dim]``), maps ``[B|1, C, P, P]`` -> ``[B, 3, S, S]``.
        """
        if wp.ndim == 2:
            wp = wp[:, None].expand(-1, self.n_latent, -1)
        if wp.ndim != 3 or wp.shape[1] < self.n_latent or wp.shape[2] != self.style_dim:
            raise VidinvError(
                f"PadInvGenerator: expected wp [B,{self.n_latent},{self.style_dim}], got {tuple(wp.shape)}"
            )
        return self.synthesis(wp, padding_maps, noise, noise_mode)


def padinv_generator_from_state_dict(sd: Mapping[str, Tensor]) -> PadInvGenerator:
    """Build (unloaded) a :class:`PadInvGenerator` sized from a genforce state_dict."""
    what = "PadInv generator checkpoint"
    for key in ("synthesis.early_layer.const", "mapping.dense0.weight", "synthesis.layer0.style.weight"):
        if key not in sd:
            raise VidinvError(f"{what} does not match the official layout: missing key {key}")
    r0 = int(sd["synthesis.early_layer.const"].shape[-1])
    channels, j = {r0: int(sd["synthesis.early_layer.const"].shape[1])}, 0
    while f"synthesis.output{j + 1}.weight" in sd:
        j += 1
        channels[r0 * 2**j] = int(sd[f"synthesis.layer{2 * j}.weight"].shape[0])
    n_map = len([k for k in sd if k.startswith("mapping.dense") and k.endswith(".weight")])
    w_dim = int(sd["synthesis.layer0.style.weight"].shape[1])
    return PadInvGenerator(
        channels,
        w_dim,
        int(sd["mapping.dense0.weight"].shape[1]),
        n_map,
        int(sd["mapping.dense0.weight"].shape[0]),
    )


# ----------------------------------------------------------------------------- loading


def split_padinv_checkpoint(ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """``(encoder_sd, generator_sd, avg_latent)`` from the runner layout, as ``PadInvRunner.load`` picks.

    The generator is ``models['generator_smooth']`` when present and non-empty, else ``models['generator']``;
    ``avg_latent`` is ``models['generator']['w_avg']``. Entries other than ``models`` are ignored.
    """
    models = ckpt.get("models", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(models, Mapping) or "encoder" not in models or "generator" not in models:
        raise VidinvError(
            "PadInv checkpoint: expected {'models': {'encoder', 'generator', 'generator_smooth'}, ...}"
        )
    gen = models.get("generator_smooth") or models["generator"]
    if "w_avg" not in models["generator"]:
        raise VidinvError("PadInv checkpoint: models['generator'] has no w_avg (the encoder's avg_latent)")
    return dict(models["encoder"]), dict(gen), models["generator"]["w_avg"]


def load_padinv(
    src: str | PathLike | Mapping[str, Any], **encoder_kw: Any
) -> tuple[PadInvEncoder, PadInvGenerator]:
    """Load an official PadInv runner checkpoint: strict loads, sizes inferred, eval mode, CPU.

    Args:
        src: path to the checkpoint (read with ``weights_only=True``) or the loaded dict.
        encoder_kw: overrides for :func:`padinv_encoder_from_state_dict`.

    Returns:
        ``(encoder, generator)`` with ``encoder.avg_latent`` set from the generator's ``w_avg``.
    """
    if not isinstance(src, Mapping):
        from vidinv.models.checkpoint import safe_load

        src = safe_load(src)
    esd, gsd, avg = split_padinv_checkpoint(src)
    kwinit = (src.get("model_kwargs_init") or {}).get("encoder", {}) if isinstance(src, Mapping) else {}
    for key in ("only_pad_even", "encode_const_input", "pad_layer_num"):
        if key in kwinit and key not in encoder_kw:
            encoder_kw[key] = kwinit[key]
    E = load_strict(padinv_encoder_from_state_dict(esd, **encoder_kw), esd, "PadInv encoder checkpoint")
    G = load_strict(padinv_generator_from_state_dict(gsd), gsd, "PadInv generator checkpoint")
    E.avg_latent.copy_(avg)
    return E.eval(), G.eval()


def tiny_padinv(seed: int = 0) -> tuple[PadInvEncoder, PadInvGenerator]:
    """A 64 px PadInv pair with random weights (the narrow golden sizes), CPU, eval mode.

    Encoder widths 16/16/20/24/32 (units 1/1/2/1), FPN 32, 10 rows of dim 32; generator
    channels 32 at 4-32 and 16 at 64, w_dim 32, 2 mapping layers.
    """
    from vidinv.models.tiny import calibrate_batchnorm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    G = PadInvGenerator(
        {4: 32, 8: 32, 16: 32, 32: 32, 64: 16}, w_dim=32, z_dim=32, mapping_layers=2, mapping_fmaps=32
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and ".style." not in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        G.w_avg.copy_(G.mapping(torch.randn(256, 32, generator=g)).mean(0))
    stages = [[(16, 16, 2, 1)], [(16, 20, 2, 1)], [(20, 24, 2, 1), (24, 24, 1, 1)], [(24, 32, 2, 2)]]
    E = PadInvEncoder(
        stages,
        16,
        [32] * 10,
        [3, 4, 3],
        [4] * 3 + [5] * 4 + [6] * 3,
        32,
        [(32, 32, 1, 2)] * 2,
        n_modulation_heads=4,
    )
    with torch.no_grad():
        for h in E.padding_modulation_heads:
            h.weight.mul_(0.1)
        E.avg_latent.copy_(G.w_avg)
    calibrate_batchnorm(E, (3, 256, 256), seed)
    return E.eval(), G.eval()
