"""pSp and e4e encoders (IR-SE-50 trunk + FPN + style heads) in the official checkpoint layout.

The official checkpoints (pSp ``psp_ffhq_encode.pt``, e4e ``e4e_ffhq_encode.pt``) are
``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}``. ``encoder.*`` is:
``input_layer.{0,1,2}`` (conv3x3, BN, PReLU), ``body.{0..23}`` (IR-SE bottlenecks:
``shortcut_layer.{0,1}`` 1x1 conv + BN when the width changes, otherwise a parameterless
``MaxPool2d(1, stride)``; ``res_layer.{0..5}`` BN, conv3x3, PReLU, conv3x3(stride), BN, SE),
``styles.{i}`` (stride-2 conv stacks + ``linear`` EqualLinear) and the FPN laterals
``latlayer1`` / ``latlayer2``. Every size is inferred from the state_dict shapes.

Both encoders read ``c1, c2, c3`` = the outputs of the last unit of stages 2, 3, 4 (body indices
6, 20, 23 for the 50-layer trunk of every released checkpoint), build the FPN
``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` (bilinear, align_corners=True),
and read style ``i`` from c3 (i < 3), p2 (3 <= i < 7) or p1. pSp's
:class:`GradualStyleEncoder` stacks the heads' outputs; e4e's :class:`Encoder4Editing` uses head 0
as one W for every row and adds head ``i``'s output as a delta to row ``i``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.iresnet import count_blocks, load_strict
from vidinv.models.stylegan2 import EqualLinear, Generator, load_generator

__all__ = ["SEModule", "BottleneckIR", "GradualStyleBlock", "Encoder4Editing", "GradualStyleEncoder",
           "PSPCheckpoint", "load_psp_checkpoint", "encoder_config_from_state_dict", "tiny_e4e", "COARSE_IND",
           "MIDDLE_IND"]

COARSE_IND, MIDDLE_IND = 3, 7  # style rows read from c3 / p2 / p1
IR50_UNITS = (3, 4, 14, 3)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``. Shape: ``[B,C,H,W]``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """The IR (``se_hidden=0``) / IR-SE unit of pSp's ``helpers.py``: ``shortcut(x) + res(x)``.

    Shape:
        ``[B, in_c, H, W] -> [B, depth, H/stride, W/stride]``.
    """

    def __init__(self, in_c: int, depth: int, stride: int, se_hidden: int = 0) -> None:
        super().__init__()
        if in_c == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_c, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        res = [nn.BatchNorm2d(in_c), nn.Conv2d(in_c, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
               nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se_hidden:
            res.append(SEModule(depth, se_hidden))
        self.res_layer = nn.Sequential(*res)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


def ir_units(widths: Sequence[int], units: Sequence[int], in_c: int,
             se_hidden: Sequence[int] | None = None) -> list[BottleneckIR]:
    """The trunk: stage ``s`` has ``units[s]`` units of width ``widths[s]``, the first one with stride 2
    (IR-SE units with ``se_hidden[s]`` SE channels, or plain IR units when ``se_hidden`` is None)."""
    out = []
    for s, (w, n) in enumerate(zip(widths, units)):
        h = 0 if se_hidden is None else int(se_hidden[s])
        out += [BottleneckIR(in_c if u == 0 else w, w, 2 if u == 0 else 1, h) for u in range(n)]
        in_c = w
    return out


class GradualStyleBlock(nn.Module):
    """A style head: ``n_convs`` stride-2 3x3 convs with LeakyReLU(0.01) down to 1x1, then EqualLinear.

    Shape:
        ``[B, in_c, 2^n_convs, 2^n_convs] -> [B, out_c]``.
    """

    def __init__(self, in_c: int, out_c: int, n_convs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)
        self.out_c = out_c

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _FPNEncoder(nn.Module):
    """IR-SE trunk, FPN laterals and style heads shared by pSp and e4e.

    Args:
        widths: stage widths (official 64/128/256/512); the stem has ``widths[0]`` channels.
        units: units per stage (IR-50: 3/4/14/3).
        style_count: W+ rows (``2 log2(size) - 2``; 18 for 1024).
        style_dim: latent width (the heads' output).
        se_hidden: SE hidden widths per stage (``width // 16`` officially), or None for plain IR units.
        head_convs: convs per style head (4/5/6 for the c3/p2/p1 heads at 256 input), default from the FPN sizes.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), units: Sequence[int] = IR50_UNITS,
                 style_count: int = 18, style_dim: int = 512, se_hidden: Sequence[int] | None = (4, 8, 16, 32),
                 head_convs: Sequence[int] | None = None) -> None:
        super().__init__()
        if len(widths) != 4 or len(units) != 4 or min(units) < 1:
            raise VidinvError(f"pSp/e4e encoders need 4 stages, got widths={tuple(widths)} units={tuple(units)}")
        if style_count < 1:
            raise VidinvError(f"style_count must be >= 1, got {style_count}")
        self.widths, self.units = tuple(int(w) for w in widths), tuple(int(u) for u in units)
        self.style_count, self.style_dim = int(style_count), int(style_dim)
        w = self.widths
        self.input_layer = nn.Sequential(nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]),
                                         nn.PReLU(w[0]))
        self.body = nn.Sequential(*ir_units(w, units, w[0], se_hidden))
        ends = list(accumulate(self.units))
        self.c_idx = (ends[1] - 1, ends[2] - 1, ends[3] - 1)  # (6, 20, 23) for IR-50
        if head_convs is None:
            head_convs = [4 if i < COARSE_IND else 5 if i < MIDDLE_IND else 6 for i in range(style_count)]
        if len(head_convs) != style_count:
            raise VidinvError(f"head_convs must have {style_count} entries, got {len(head_convs)}")
        self.styles = nn.ModuleList(GradualStyleBlock(w[3], style_dim, n) for n in head_convs)
        self.latlayer1 = nn.Conv2d(w[2], w[3], 1)
        self.latlayer2 = nn.Conv2d(w[1], w[3], 1)

    def trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``c1, c2, c3``. Shape: ``[B,3,256,256] -> [B,w1,64,64], [B,w2,32,32], [B,w3,16,16]``."""
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise VidinvError(f"{type(self).__name__} expects float images [B,3,256,256] in [-1,1], got {shape}")
        x = self.input_layer(x)
        cs = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.c_idx:
                cs.append(x)
        return cs[0], cs[1], cs[2]

    def _features(self, c1: Tensor, c2: Tensor, c3: Tensor, i: int, cache: dict[str, Tensor]) -> Tensor:
        if i < COARSE_IND:
            return c3
        if "p2" not in cache:
            cache["p2"] = _upsample_add(c3, self.latlayer1(c2))
        if i < MIDDLE_IND:
            return cache["p2"]
        if "p1" not in cache:
            cache["p1"] = _upsample_add(cache["p2"], self.latlayer2(c1))
        return cache["p1"]


class GradualStyleEncoder(_FPNEncoder):
    """pSp's encoder: row ``i`` of W+ is ``styles[i]`` of its FPN level (no latent_avg added).

    Shape:
        ``[B, 3, 256, 256]`` in [-1, 1] -> ``[B, style_count, style_dim]``.
    """

    def forward(self, x: Tensor) -> Tensor:
        c1, c2, c3 = self.trunk(x)
        cache: dict[str, Tensor] = {}
        return torch.stack([s(self._features(c1, c2, c3, i, cache)) for i, s in enumerate(self.styles)], 1)


class Encoder4Editing(_FPNEncoder):
    """e4e's encoder: one W from ``styles[0]`` on every row, plus per-row deltas ``styles[i]``, i >= 1.

    ``forward(x, stage)``: only deltas ``1..stage`` are added (the official ``progressive_stage``;
    None = Inference = all of them; 0 = pure W).

    Shape:
        ``[B, 3, 256, 256]`` in [-1, 1] -> ``[B, style_count, style_dim]`` (no latent_avg added).
    """

    def forward(self, x: Tensor, stage: int | None = None, return_features: bool = False):
        c1, c2, c3 = self.trunk(x)
        w = self.styles[0](c3)[:, None].repeat(1, self.style_count, 1)  # [B, L, sd]
        last = self.style_count if stage is None else min(int(stage) + 1, self.style_count)
        cache: dict[str, Tensor] = {}
        for i in range(1, last):
            w[:, i] += self.styles[i](self._features(c1, c2, c3, i, cache))
        return (w, (c1, c2, c3)) if return_features else w


ENCODER_TYPES = {"Encoder4Editing": Encoder4Editing, "GradualStyleEncoder": GradualStyleEncoder}


def encoder_config_from_state_dict(sd: Mapping[str, Tensor], what: str = "pSp/e4e encoder") -> dict[str, Any]:
    """Infer ``widths, units, style_count, style_dim, se_hidden, head_convs`` from an ``encoder.*`` state_dict
    (prefix stripped)."""
    def shape(k: str) -> torch.Size:
        if k not in sd:
            raise VidinvError(f"{what} does not match the official layout: missing key {k}")
        return sd[k].shape

    n = count_blocks(sd, "body")
    if n < 4:
        raise VidinvError(f"{what} does not match the official layout: {n} body units")
    depths = [int(shape(f"body.{i}.res_layer.1.weight")[0]) for i in range(n)]
    widths, units = [depths[0]], [1]
    for d in depths[1:]:
        if d == widths[-1]:
            units[-1] += 1
        else:
            widths.append(d)
            units.append(1)
    if len(widths) != 4:
        raise VidinvError(f"{what}: expected 4 trunk stages, found widths {widths}")
    se = "body.0.res_layer.5.fc1.weight" in sd
    starts = [0, *accumulate(units[:-1])]
    se_hidden = [int(shape(f"body.{s}.res_layer.5.fc1.weight")[0]) for s in starts] if se else None
    style_count = count_blocks(sd, "styles")
    if style_count == 0:
        raise VidinvError(f"{what} does not match the official layout: no styles.* heads")
    head_convs = [len({k.split(".")[3] for k in sd if k.startswith(f"styles.{i}.convs.")})
                  for i in range(style_count)]
    style_dim = int(shape("styles.0.linear.weight")[0])
    return {"widths": widths, "units": units, "style_count": style_count, "style_dim": style_dim,
            "se_hidden": se_hidden, "head_convs": head_convs}


def build_encoder(sd: Mapping[str, Tensor], encoder_type: str = "Encoder4Editing",
                  what: str = "pSp/e4e encoder") -> _FPNEncoder:
    """An encoder of ``encoder_type`` sized from ``sd`` (prefix stripped), strictly loaded, eval mode."""
    if encoder_type not in ENCODER_TYPES:
        raise VidinvError(f"unsupported encoder_type {encoder_type!r}; supported: {', '.join(ENCODER_TYPES)}")
    cfg = encoder_config_from_state_dict(sd, what)
    enc = ENCODER_TYPES[encoder_type](**cfg)
    return load_strict(enc, sd, what).eval()


def get_keys(sd: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    """The official ``get_keys``: entries whose key starts with ``name``, with ``'<name>.'`` stripped."""
    return {k[len(name) + 1:]: v for k, v in sd.items() if k[:len(name)] == name}


class PSPCheckpoint(nn.Module):
    """An official pSp / e4e checkpoint as modules: ``encoder``, ``decoder`` (Generator), ``latent_avg``.

    Attributes:
        latent_avg: ``[L_enc, sd]`` (or ``[1, sd]``) buffer added to the encoder output, or None.
        opts: the checkpoint's ``opts`` dict.
    """

    def __init__(self, encoder: _FPNEncoder, decoder: Generator, latent_avg: Tensor | None,
                 opts: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder, self.opts = encoder, decoder, dict(opts or {})
        if latent_avg is not None:
            latent_avg = torch.as_tensor(latent_avg).detach().float()
            if latent_avg.ndim == 1:
                latent_avg = latent_avg[None]
            if latent_avg.ndim != 2 or latent_avg.shape[1] != encoder.style_dim or \
                    latent_avg.shape[0] not in (1, encoder.style_count):
                raise VidinvError(f"latent_avg must be [{encoder.style_count} or 1, {encoder.style_dim}], "
                                  f"got {list(latent_avg.shape)}")
        self.register_buffer("latent_avg", latent_avg)

    def encode(self, x: Tensor, **kw: Any) -> Tensor:
        """The official ``get_latents``: ``encoder(x) + latent_avg``. Shape: ``[B,3,256,256] -> [B,L_enc,sd]``."""
        codes = self.encoder(x, **kw)
        return codes if self.latent_avg is None else codes + self.latent_avg


def load_psp_checkpoint(src: str | PathLike | Mapping[str, Any], encoder_type: str | None = None,
                        use_latent_avg: bool | None = None) -> PSPCheckpoint:
    """Load an official pSp / e4e checkpoint strictly (sizes from the shapes, type from ``opts``).

    Args:
        src: a path (read with ``safe_load``, ``weights_only=True``) or the loaded dict
            ``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}``.
        encoder_type: ``'Encoder4Editing'`` or ``'GradualStyleEncoder'``; None = ``opts['encoder_type']``.
        use_latent_avg: add ``latent_avg`` to the codes; None = ``opts['start_from_latent_avg']`` (pSp's
            ``forward``; default True). e4e's inference script adds it unconditionally.

    Returns:
        A :class:`PSPCheckpoint` in eval mode on the CPU. ``latent_avg`` is used as stored (e4e stores
        ``[L, sd]``); None when not used or the checkpoint has none.
    """
    if isinstance(src, (str, PathLike)):
        from vidinv.models.checkpoint import safe_load

        src = safe_load(src)
    if not isinstance(src, Mapping) or not isinstance(src.get("state_dict"), Mapping):
        keys = ", ".join(list(src)[:6]) if isinstance(src, Mapping) else type(src).__name__
        raise VidinvError(f"not a pSp/e4e checkpoint: expected {{'state_dict', 'latent_avg', 'opts'}}, got {keys}")
    opts = dict(src.get("opts") or {})
    etype = encoder_type or opts.get("encoder_type", "Encoder4Editing")
    sd = src["state_dict"]
    enc_sd = get_keys(sd, "encoder")
    if not enc_sd:
        raise VidinvError("the pSp/e4e checkpoint has no 'encoder.*' keys")
    encoder = build_encoder(enc_sd, etype, f"{etype} checkpoint")
    decoder, _ = load_generator({"state_dict": sd})
    if use_latent_avg is None:
        use_latent_avg = bool(opts.get("start_from_latent_avg", True))
    latent_avg = src.get("latent_avg") if use_latent_avg else None
    return PSPCheckpoint(encoder, decoder, latent_avg, opts).eval()


@torch.no_grad()
def tiny_e4e(seed: int = 0, encoder_type: str = "Encoder4Editing",
             generator: Generator | None = None) -> PSPCheckpoint:
    """A tiny random e4e (or pSp) for fast tests: the tiny 64 px generator and a narrow encoder.

    The encoder has widths 8/12/16/24, one unit per stage (two in stage 3) and ``n_latent`` heads of the
    generator's style dim; BN statistics are calibrated so the random net stays well scaled.
    """
    from vidinv.models.tiny import calibrate_batchnorm, tiny_generator

    G = generator if generator is not None else tiny_generator(seed)
    torch.manual_seed(seed + 1)
    enc = ENCODER_TYPES[encoder_type](widths=(8, 12, 16, 24), units=(1, 1, 2, 1), style_count=G.n_latent,
                                      style_dim=G.style_dim, se_hidden=(1, 1, 1, 2))
    calibrate_batchnorm(enc, (3, 256, 256), seed)
    latent_avg = G.mean_latent(512).repeat(G.n_latent, 1)
    return PSPCheckpoint(enc, G, latent_avg, {"encoder_type": encoder_type, "start_from_latent_avg": True}).eval()
