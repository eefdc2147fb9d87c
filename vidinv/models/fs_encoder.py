"""The Feature-Style encoder (Yao et al., ECCV 2022, ``fs_encoder_v2``) in the ``143_enc.pth`` layout.

An ArcFace IResNet-50 trunk (``conv`` stem, ``block_1..4`` = layer1..4) feeds two heads:

* styles: each stage output is average-pooled to 3x3, the four maps are concatenated on the
  channel axis and flattened (index ``c*9 + 3h + w``), and ``styles[i]`` (one Linear per W+
  layer) maps that vector to the raw latent ``w[:, i]``;
* content: ``content_layer`` (BN, conv3x3, BN, PReLU, conv3x3 stride 2, BN) turns the block_3
  output (32x32 for a 256 input) into the feature code ``F`` at 16x16, which replaces the
  generator's feature map at layer K=5.

State_dict layout (517 keys full, 501 narrow): ``conv.{0,1,2}``, ``block_1.{0..2}``,
``block_2.{0..3}``, ``block_3.{0..13}``, ``block_4.{0..2}``, ``content_layer.{0..5}``,
``styles.{0..L-1}``. The encoder input is 256x256: the official pipeline halves a 1024 crop
twice with :func:`downscale`; :func:`preprocess` does that and handles other sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.iresnet import IRESNET50_LAYERS, count_blocks, load_strict, make_stage, read_state_dict

__all__ = ["FSEncoder", "FSInverter", "downscale", "preprocess", "load_fs_encoder", "ENCODER_SIZE"]

ENCODER_SIZE = 256


def _check_images(x: Tensor, what: str) -> None:
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise VidinvError(f"{what} expects images [B,3,H,W] in [-1,1], got {shape}")
    if not x.is_floating_point():
        raise VidinvError(f"{what} expects float images in [-1,1], got dtype {x.dtype}")


def downscale(x: Tensor, times: int = 1) -> Tensor:
    """Halve the resolution ``times`` times, exactly as the official ``utils.functions.downscale``.

    Each step is ``F.interpolate(x, scale_factor=0.5, mode='bilinear')`` (align_corners False,
    no antialias), i.e. a 2x2 box average for even sizes.

    Shape:
        - Input: ``[B, C, H, W]``
        - Output: ``[B, C, H / 2^times, W / 2^times]`` (floored at each step)
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise VidinvError(f"downscale expects a float [B,C,H,W] tensor, got {tuple(x.shape)} {x.dtype}")
    if times < 0:
        raise VidinvError(f"downscale times must be >= 0, got {times}")
    for _ in range(times):
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    return x


def preprocess(x: Tensor, size: int = ENCODER_SIZE) -> Tensor:
    """Bring aligned face crops to the encoder's input size.

    While the crop is at least twice ``size`` it is halved with :func:`downscale` (so a 1024
    crop gets exactly the official two halvings, and 512 one); whatever is left that is not
    ``size`` (e.g. 768 -> 384, or an input below ``size``) is resized with one plain bilinear
    ``F.interpolate`` (align_corners False, no antialias; the ratio is then below 2, where
    antialiasing barely matters). A ``size`` input is returned unchanged.

    Shape:
        - Input: ``[B, 3, H, W]`` in [-1, 1]
        - Output: ``[B, 3, size, size]``
    """
    _check_images(x, "preprocess")
    while min(x.shape[-2:]) >= 2 * size:
        x = downscale(x, 1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``bn(conv(x))`` in eval mode as one conv.

    Weight ``W g / sqrt(v + eps)``, bias ``b - m g / sqrt(v + eps)`` (g, b, m, v: the BN's
    parameters and running stats).

    Folded in float64; the weight comes back channels_last (oneDNN's fast layout on the CPU).
    """
    inv = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.double() * inv.view(-1, 1, 1, 1)
    b = bn.bias.double() - bn.running_mean.double() * inv
    if conv.bias is not None:
        b = b + conv.bias.double() * inv
    return w.to(dtype).contiguous(memory_format=torch.channels_last), b.to(dtype)


def _conv(conv: nn.Conv2d, P: dict, x: Tensor) -> Tensor:
    w, b = P[conv]
    return F.conv2d(x, w, b, conv.stride, conv.padding)


def _stem_fast(enc: FSEncoder, P: dict, x: Tensor) -> Tensor:
    return enc.conv[2](_conv(enc.conv[0], P, x.contiguous(memory_format=torch.channels_last)))


def _block_fast(blk: nn.Module, P: dict, x: Tensor) -> Tensor:
    """An IBasicBlock with its conv1+bn2, conv2+bn3 (and shortcut conv+BN) folded."""
    out = _conv(blk.conv2, P, blk.prelu(_conv(blk.conv1, P, blk.bn1(x))))
    return out.add_(x if blk.downsample is None else _conv(blk.downsample[0], P, x))


def _content_fast(layer: nn.Sequential, P: dict, x: Tensor) -> Tensor:
    """content_layer: BN, (conv+BN), PReLU, (conv+BN) with the pairs folded."""
    return _conv(layer[4], P, layer[3](_conv(layer[1], P, layer[0](x))))


class FSEncoder(nn.Module):
    """``fs_encoder_v2``: W+ styles and the feature code F from one 256x256 face.

    Args:
        n_styles: W+ layers L (18 for a 1024 generator).
        style_dim: latent width sd.
        widths: channels of the four IResNet stages (the stem uses ``widths[0]``).
        content_channels: channels of F (the generator's 16x16 width, 512 at 1024).
        stride: stride of the last content conv (2 = config 001, F at 16x16 for a 256 input).
        layers: blocks per stage (iresnet50: 3/4/14/3).

    Shape:
        - Input: ``[B, 3, 256, 256]`` in [-1, 1] (any square size divisible by 16 runs; F is size/16).
        - Output: ``w_raw [B, n_styles, style_dim]`` (without latent_avg) and
          ``F [B, content_channels, 16, 16]``.
    """

    def __init__(
        self,
        n_styles: int = 18,
        style_dim: int = 512,
        widths: Sequence[int] = (64, 128, 256, 512),
        content_channels: int = 512,
        stride: int = 2,
        layers: Sequence[int] = IRESNET50_LAYERS,
    ):
        super().__init__()
        if len(widths) != 4 or len(layers) != 4:
            raise VidinvError(f"FSEncoder needs 4 stages, got widths={tuple(widths)} layers={tuple(layers)}")
        w = tuple(int(c) for c in widths)
        self.n_styles, self.style_dim, self.widths = n_styles, style_dim, w
        self.content_channels, self.stride, self.layers = content_channels, stride, tuple(layers)
        self.conv = nn.Sequential(
            nn.Conv2d(3, w[0], 3, padding=1, bias=False), nn.BatchNorm2d(w[0], eps=1e-5), nn.PReLU(w[0])
        )
        self.block_1 = make_stage(w[0], w[0], layers[0])
        self.block_2 = make_stage(w[0], w[1], layers[1])
        self.block_3 = make_stage(w[1], w[2], layers[2])
        self.block_4 = make_stage(w[2], w[3], layers[3])
        c = content_channels
        self.content_layer = nn.Sequential(
            nn.BatchNorm2d(w[2], eps=1e-5),
            nn.Conv2d(w[2], c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c, eps=1e-5),
            nn.PReLU(c),
            nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c, eps=1e-5),
        )
        self.avg_pool = nn.AdaptiveAvgPool2d((3, 3))
        self.styles = nn.ModuleList(nn.Linear(9 * sum(w), style_dim) for _ in range(n_styles))
        self.fast = True  # inference (eval, no grad): conv+BN folded, channels_last (not in the state_dict)
        self._fold_cache: tuple = ((), {})

    def _folded(self, x: Tensor) -> dict[nn.Module, tuple[Tensor, Tensor]]:
        """Every conv followed by a BN, folded (:func:`fold_conv_bn`); recomputed when a weight changes."""
        tensors = self.state_dict(keep_vars=True).values()
        key = (x.device, x.dtype, *((t.data_ptr(), t._version) for t in tensors))
        if self._fold_cache[0] != key:
            pairs = [(self.conv[0], self.conv[1]), (self.content_layer[1], self.content_layer[2]),
                     (self.content_layer[4], self.content_layer[5])]
            for stage in (self.block_1, self.block_2, self.block_3, self.block_4):
                for b in stage:
                    pairs += [(b.conv1, b.bn2), (b.conv2, b.bn3)]
                    if b.downsample is not None:
                        pairs.append((b.downsample[0], b.downsample[1]))
            self._fold_cache = (key, {c: fold_conv_bn(c, bn, x.dtype) for c, bn in pairs})
        return self._fold_cache[1]

    def forward(self, x: Tensor, return_intermediates: bool = False):
        """Encode faces; with ``return_intermediates`` also a dict with ``block_outputs`` (4 maps)
        and ``pooled_features`` (the four 3x3 pooled maps, in call order)."""
        _check_images(x, "FSEncoder")
        if x.shape[-1] != x.shape[-2] or x.shape[-1] % 16:
            raise VidinvError(
                f"FSEncoder expects square inputs with a side divisible by 16 (256), got {tuple(x.shape)}"
            )
        fast = self.fast and not self.training and not torch.is_grad_enabled()
        P = self._folded(x) if fast else None
        x = _stem_fast(self, P, x) if fast else self.conv(x)
        blocks, pooled = [], []
        content = None
        for i, stage in enumerate((self.block_1, self.block_2, self.block_3, self.block_4)):
            for block in stage:
                x = _block_fast(block, P, x) if fast else block(x)
            if i == 2:
                layer = self.content_layer
                content = _content_fast(layer, P, x) if fast else layer(x)  # [B, C, 16, 16]
            blocks.append(x)
            pooled.append(self.avg_pool(x))
        if fast:
            content, blocks = content.contiguous(), [b.contiguous() for b in blocks]
        flat = torch.cat(pooled, dim=1).flatten(1)  # [B, 9 * sum(widths)]
        w = torch.stack([style(flat) for style in self.styles], dim=1)  # [B, L, sd]
        if return_intermediates:
            return w, content, {"block_outputs": blocks, "pooled_features": pooled}
        return w, content


class FSInverter(nn.Module):
    """Aligned face crops -> (W+ latent incl. ``latent_avg``, feature code F).

    Args:
        encoder: a :class:`FSEncoder`.
        latent_avg: the generator's average latent, ``[sd]`` (rosinality) or ``[L, sd]`` (pSp).

    Shape:
        - Input: ``[B, 3, S, S]`` in [-1, 1], any S (see :func:`preprocess`; 1024 is the official path).
        - Output: ``w [B, L, sd]`` and ``F [B, C, 16, 16]``.
    """

    def __init__(self, encoder: FSEncoder, latent_avg: Tensor, size: int = ENCODER_SIZE):
        super().__init__()
        if not isinstance(encoder, FSEncoder):
            raise VidinvError(f"FSInverter needs an FSEncoder, got {type(encoder).__name__}")
        latent_avg = torch.as_tensor(latent_avg).detach().float()
        L, sd = encoder.n_styles, encoder.style_dim
        if latent_avg.ndim == 2 and latent_avg.shape[0] == 1:
            latent_avg = latent_avg[0]
        if tuple(latent_avg.shape) not in ((sd,), (L, sd)):
            raise VidinvError(
                f"latent_avg must be [{sd}] or [{L},{sd}] to match the encoder, got {tuple(latent_avg.shape)}"
            )
        self.encoder, self.size = encoder, size
        self.register_buffer("latent_avg", latent_avg.clone())

    @property
    def n_latent(self) -> int:
        return self.encoder.n_styles

    @property
    def style_dim(self) -> int:
        return self.encoder.style_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_images(x, "FSInverter")
        w_raw, content = self.encoder(preprocess(x, self.size))
        return w_raw + self.latent_avg, content


def load_fs_encoder(src: str | Path | Mapping[str, Any], stride: int = 2, copy: bool = True) -> FSEncoder:
    """Build an :class:`FSEncoder` from a ``143_enc.pth``-layout state_dict, strict, eval mode.

    ``n_styles`` is the number of ``styles.*`` layers, ``style_dim`` their output size, the
    stage widths come from ``block_k.0.conv1.weight``, the block counts from the indices and the
    content channels from ``content_layer.1.weight``. The content conv stride is not in the
    weights: 2 is the released configuration (``fs_stride: 2``). The model is built without random
    initialisation and takes the checkpoint's tensors; ``copy`` (for a dict ``src``) copies them first
    (False: the model takes the dict's tensors, for a dict read for it alone).
    """
    from types import SimpleNamespace

    from vidinv.models.checkpoint import assign_state_dict, fast_load, no_init

    what = "Feature-Style encoder checkpoint"
    sd = read_state_dict(src, what)
    try:
        widths = tuple(int(sd[f"block_{k}.0.conv1.weight"].shape[0]) for k in range(1, 5))
        content = int(sd["content_layer.1.weight"].shape[0])
        style_dim = int(sd["styles.0.weight"].shape[0])
    except KeyError as e:
        raise VidinvError(f"{what} does not match the official layout: missing key {e.args[0]}") from None
    layers = tuple(count_blocks(sd, f"block_{k}") for k in range(1, 5))
    n_styles = count_blocks(sd, "styles")
    with no_init():
        model = FSEncoder(n_styles, style_dim, widths, content, stride=stride, layers=layers)
    if not fast_load():
        return load_strict(model, sd, what).eval()
    own = model.state_dict()  # the strict check of load_strict, without its copy (the tensors are assigned)
    load_strict(SimpleNamespace(state_dict=lambda: own, load_state_dict=lambda *a, **k: None), sd, what)
    return assign_state_dict(model, sd, copy=copy and not isinstance(src, (str, Path))).eval()
