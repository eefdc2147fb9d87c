"""HyperInverter (Dinh et al., CVPR 2022): W encoder, W-bar encoder, hypernetwork, StyleGAN2-ADA generator.

Two phases, as the official ``HyperInverter.forward``:

1. **W encoder E1** (:class:`WEncoder`, pSp ``BackboneEncoderUsingLastLayerIntoW``): IR-SE body,
   global average pool, EqualLinear -> one W code, plus ``w_avg``, broadcast to all ``num_ws`` rows;
   the generator renders the *W image* from it.
2. **W-bar encoder E2** (:class:`LayerWiseEncoder`) maps the input and the W image to per-layer
   feature maps ``[B, L, C, 8, 8]``; the :class:`Hypernetwork` turns each pair into a residual
   for one generator conv weight (``b{r}.conv0/conv1/torgb.weight``), and the generator renders
   the final image with ``weight + residual`` (per sample).

The generator is StyleGAN2-ADA (NVlabs key layout ``mapping.fc{i}``, ``synthesis.b{r}.*``). Its
official release is an NVlabs pickle whose classes embed code; we never unpickle it by default.
Convert it once, on a machine where you trust the file, with :func:`convert_ada_pickle` (needs the
NVlabs ``dnnlib``/``torch_utils`` packages importable), which writes a plain
``{'G_ema': state_dict, 'G_ema_init_kwargs': {...}}`` file; :func:`load_ada_generator` reads it
with ``weights_only=True``. Editing is in W (``w_codes + a * d``) with the image's own residuals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.models.iresnet import count_blocks, load_strict
from vidinv.models.padinv import (
    BottleneckIRSE,
    DenseLayer,
    EqualLinear,
    bias_lrelu,
    input_layer,
    irse_unit_specs,
    modulated_conv,
    upsample_rgb,
)
from vidinv.models.stylegan2 import make_kernel

ENCODER_SIZE = 256

# ----------------------------------------------------------------------------- StyleGAN2-ADA generator


class AdaSynthesisLayer(nn.Module):
    """NVlabs ``SynthesisLayer``: affine, modulated conv (optionally with a per-sample weight residual),
    const noise, bias + lrelu.

    Shape:
        x ``[B,in,H,W]``, w ``[B,w_dim]`` -> ``[B,out,H*up,W*up]``.
    """

    def __init__(
        self, cin: int, cout: int, w_dim: int, res: int, up: int = 1, use_noise: bool = True
    ) -> None:
        super().__init__()
        self.affine = DenseLayer(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(res, res))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("resample_filter", make_kernel([1, 3, 3, 1]))
        self.up, self.use_noise = up, use_noise

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        added: Tensor | None = None,
        noise: Tensor | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        weight = self.weight if added is None else self.weight + added  # [out,in,3,3] or [B,out,in,3,3]
        x = modulated_conv(x, weight, self.affine(w), up=self.up, kernel=self.resample_filter)
        if self.use_noise and noise_mode != "none":
            if noise is None:
                noise = torch.randn_like(x[:, :1]) if noise_mode == "random" else self.noise_const
            x = x + noise.to(x.dtype) * self.noise_strength
        return bias_lrelu(x, self.bias)


class AdaToRGB(nn.Module):
    """NVlabs ``ToRGBLayer``: 1x1 modulated conv, no demodulation. Shape: ``[B,in,H,W] -> [B,3,H,W]``."""

    def __init__(self, cin: int, w_dim: int, channels: int = 3) -> None:
        super().__init__()
        self.affine = DenseLayer(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(cin)

    def forward(self, x: Tensor, w: Tensor, added: Tensor | None = None) -> Tensor:
        weight = self.weight if added is None else self.weight + added
        x = modulated_conv(x, weight, self.affine(w) * self.weight_gain, demodulate=False)
        return x + self.bias.reshape(1, -1, 1, 1)


class AdaSynthesisBlock(nn.Module):
    """``b{r}``: (const | conv0 up) -> conv1 -> torgb ('skip' architecture)."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int) -> None:
        super().__init__()
        if cin == 0:
            self.const = nn.Parameter(torch.randn(cout, res, res))
        else:
            self.conv0 = AdaSynthesisLayer(cin, cout, w_dim, res, up=2)
        self.conv1 = AdaSynthesisLayer(cout, cout, w_dim, res)
        self.torgb = AdaToRGB(cout, w_dim)
        self.register_buffer("resample_filter", make_kernel([1, 3, 3, 1]))
        self.first = cin == 0


class AdaMapping(nn.Module):
    """NVlabs ``MappingNetwork`` (no label): normalize z, ``fc{i}`` lrelu layers (lr 0.01), ``w_avg``.

    Shape:
        z ``[B, z_dim]`` -> w ``[B, w_dim]``.
    """

    def __init__(
        self, z_dim: int, w_dim: int, n_layers: int, hidden: int | None = None, lr_mul: float = 0.01
    ) -> None:
        super().__init__()
        dims = [z_dim] + [hidden or w_dim] * (n_layers - 1) + [w_dim]
        for i in range(n_layers):
            self.add_module(f"fc{i}", DenseLayer(dims[i], dims[i + 1], lr_mul=lr_mul, act=True))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.n_layers = n_layers

    def forward(self, z: Tensor) -> Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.n_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class AdaSynthesis(nn.Module):
    """NVlabs ``SynthesisNetwork`` ('skip') accepting per-sample weight residuals.

    Layer ``k`` of the flat order (b4.conv1, b8.conv0, b8.conv1, ...) reads ``ws[:, k]``; the torgb
    after conv layer ``k`` reads ``ws[:, k+1]``.
    """

    def __init__(self, channels: Mapping[int, int], w_dim: int) -> None:
        super().__init__()
        self.resolutions = sorted(channels)
        for r in self.resolutions:
            cin = 0 if r == self.resolutions[0] else channels[r // 2]
            self.add_module(f"b{r}", AdaSynthesisBlock(cin, channels[r], w_dim, r))
        self.num_ws = 2 * len(self.resolutions)
        self.w_dim = w_dim

    def layer_names(self) -> list[str]:
        """Conv layers in ws order, as ``'b{r}.conv{0|1}'``."""
        return [
            f"b{r}.conv{i}" for r in self.resolutions for i in ((1,) if r == self.resolutions[0] else (0, 1))
        ]

    def forward(
        self,
        ws: Tensor,
        added_weights: Mapping[str, Tensor] | None = None,
        noise: Sequence[Tensor | None] | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        aw = added_weights or {}
        noise = list(noise or [])
        noise += [None] * (self.num_ws - 1 - len(noise))
        x = img = None
        k = 0
        for r in self.resolutions:
            blk = getattr(self, f"b{r}")
            if blk.first:
                x = blk.const[None].expand(ws.shape[0], -1, -1, -1)
            else:
                x = blk.conv0(x, ws[:, k], aw.get(f"b{r}.conv0.weight"), noise[k], noise_mode)
                k += 1
            x = blk.conv1(x, ws[:, k], aw.get(f"b{r}.conv1.weight"), noise[k], noise_mode)
            k += 1
            y = blk.torgb(x, ws[:, k], aw.get(f"b{r}.torgb.weight"))
            img = y if img is None else upsample_rgb(img, blk.resample_filter) + y
        assert img is not None
        return img


class AdaGenerator(nn.Module):
    """StyleGAN2-ADA generator (NVlabs ``Generator`` keys: ``mapping.*``, ``synthesis.b{r}.*``).

    Args:
        channels: width per resolution ``{4: c4, ..., S: cS}`` (``min(channel_base // r, channel_max)``).
        w_dim, z_dim, mapping_layers: mapping network sizes.

    Attributes:
        size, num_ws (= n_latent), w_dim.
    """

    def __init__(
        self, channels: Mapping[int, int], w_dim: int = 512, z_dim: int = 512, mapping_layers: int = 8
    ) -> None:
        super().__init__()
        self.synthesis = AdaSynthesis(channels, w_dim)
        self.mapping = AdaMapping(z_dim, w_dim, mapping_layers)
        self.size, self.num_ws, self.w_dim = max(channels), self.synthesis.num_ws, w_dim

    def render(
        self,
        ws: Tensor,
        added_weights: Mapping[str, Tensor] | None = None,
        noise: Sequence[Tensor | None] | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        """``synthesis(ws, added_weights=..., noise_mode='const')`` of the official call.

        Shape:
            ws ``[B, num_ws, w_dim]`` (or ``[B, w_dim]``), residuals ``[B,out,in,k,k]`` -> ``[B, 3, S, S]``.
        """
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise VidinvError(
                f"AdaGenerator: expected ws [B,{self.num_ws},{self.w_dim}], got {tuple(ws.shape)}"
            )
        return self.synthesis(ws, added_weights, noise, noise_mode)


def ada_generator_from_state_dict(sd: Mapping[str, Tensor]) -> AdaGenerator:
    """Build (unloaded) an :class:`AdaGenerator` sized from an NVlabs ``G_ema`` state_dict."""
    res = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    if not res or "mapping.fc0.weight" not in sd:
        raise VidinvError(
            "StyleGAN2-ADA generator does not match the NVlabs layout: missing synthesis.b*.conv1.weight "
            "or mapping.fc0.weight"
        )
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in res}
    n_map = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    w_dim = int(sd[f"synthesis.b{res[0]}.conv1.affine.weight"].shape[1])
    return AdaGenerator(channels, w_dim, int(sd["mapping.fc0.weight"].shape[1]), n_map)


def load_ada_generator(src: str | PathLike | Mapping[str, Any]) -> AdaGenerator:
    """Load a StyleGAN2-ADA generator from a plain state_dict file (strict, eval, CPU).

    Accepts ``{'G_ema': sd, ...}`` (what :func:`convert_ada_pickle` writes), a bare ``G_ema``
    state_dict, or the pSp-wrapper layout ``{'state_dict': {'decoder.*', ...}}`` of HyperInverter's
    ``w_encoder.pt``. Raises :class:`VidinvError` for a pickle (convert it first) or a bad layout.
    """
    if not isinstance(src, Mapping):
        from vidinv.models.checkpoint import safe_load

        p = Path(src)
        if p.suffix == ".pkl":
            raise VidinvError(
                f"{p} is an NVlabs pickle; convert it once with "
                "vidinv.models.hyperinverter.convert_ada_pickle(pkl, out.pt) and load the .pt"
            )
        src = safe_load(p)
    sd: Mapping[str, Any] = src
    if "G_ema" in sd:
        sd = sd["G_ema"]
    elif "state_dict" in sd:
        sd = {k[len("decoder.") :]: v for k, v in sd["state_dict"].items() if k.startswith("decoder.")}
    G = ada_generator_from_state_dict(sd)
    return load_strict(G, dict(sd), "StyleGAN2-ADA generator").eval()


def convert_ada_pickle(pkl_path: str | PathLike, out_path: str | PathLike, key: str = "G_ema") -> Path:
    """One-time conversion of an NVlabs StyleGAN2-ADA pickle into a plain tensor file.

    **Unpickles code**: run it only on a file from a source you trust, with NVlabs ``dnnlib`` and
    ``torch_utils`` (stylegan2-ada-pytorch) importable. Writes ``{'G_ema': state_dict,
    'G_ema_init_kwargs': dict}``, which :func:`load_ada_generator` reads with ``weights_only=True``.
    """
    import pickle

    with open(pkl_path, "rb") as f:
        try:
            data = pickle.load(f)  # noqa: S301 - explicit, documented opt-in
        except ModuleNotFoundError as e:
            raise VidinvError(
                f"unpickling {pkl_path} needs the NVlabs package {e.name!r} "
                "(clone NVlabs/stylegan2-ada-pytorch and put it on PYTHONPATH)"
            ) from None
    G = data[key]
    sd = {k: v.detach().float().cpu().clone() for k, v in G.state_dict().items()}
    out = {
        "G_ema": sd,
        "G_ema_init_kwargs": dict(getattr(G, "init_kwargs", {}) or {}),
        "note": f"converted from {Path(pkl_path).name} by vidinv.models.hyperinverter.convert_ada_pickle",
    }
    torch.save(out, out_path)
    return Path(out_path)


# ----------------------------------------------------------------------------- encoders


def _irse_body(sd: Mapping[str, Tensor], prefix: str) -> nn.Sequential:
    """pSp ``body`` from a state_dict (stage starts found from the conv shortcuts)."""
    units = [BottleneckIRSE(*u) for u in irse_unit_specs(sd, prefix, strides="psp")]
    if not units:
        raise VidinvError(f"IR-SE encoder does not match the pSp layout: no {prefix}.* units")
    return nn.Sequential(*units)


class WEncoder(nn.Module):
    """E1, pSp ``BackboneEncoderUsingLastLayerIntoW``: IR-SE body, global pool, EqualLinear.

    Shape:
        x ``[B, 3, 256, 256]`` -> w ``[B, w_dim]`` (without ``w_avg``).
    """

    def __init__(self, body: nn.Sequential, inplanes: int, w_dim: int) -> None:
        super().__init__()
        self.input_layer = input_layer(3, inplanes)
        self.body = body
        self.linear = EqualLinear(body[-1].res_layer[3].out_channels, w_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(self.input_layer(x))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Tensor]) -> WEncoder:
        if "linear.weight" not in sd or "input_layer.0.weight" not in sd:
            raise VidinvError(
                "W encoder does not match the pSp layout: missing linear.weight / input_layer.0.weight"
            )
        return cls(
            _irse_body(sd, "body"),
            int(sd["input_layer.0.weight"].shape[0]),
            int(sd["linear.weight"].shape[0]),
        )


class LayerWiseEncoder(nn.Module):
    """E2, HyperInverter ``LayerWiseEncoder``: IR-SE body + FPN + per-layer stride-2 conv stacks.

    Features ``c1, c2, c3`` are the ends of the last three stages (body indices 6/20/23 for IR-SE-50);
    rows ``< 3`` read ``c3`` (1 conv), ``3..6`` read ``p2`` (2 convs), ``>= 7`` read ``p1`` (3 convs).

    Shape:
        x ``[B, 3, 256, 256]`` -> ``[B, L, C, 8, 8]``.
    """

    def __init__(
        self,
        body: nn.Sequential,
        inplanes: int,
        n_styles: int,
        width: int,
        lat1_in: int,
        lat2_in: int,
        coarse: int = 3,
        middle: int = 7,
    ) -> None:
        super().__init__()
        self.input_layer = input_layer(3, inplanes)
        self.body = body
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            n = 1 if i < coarse else 2 if i < middle else 3
            layers: list[nn.Module] = []
            for _ in range(n):
                layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.01)]
            self.styles.append(nn.Module())
            self.styles[-1].convs = nn.Sequential(*layers)
        self.latlayer1 = nn.Conv2d(lat1_in, width, 1)
        self.latlayer2 = nn.Conv2d(lat2_in, width, 1)
        self.coarse, self.middle = coarse, middle
        starts = [i for i, u in enumerate(body) if i > 0 and u.res_layer[3].stride[0] == 2] + [len(body)]
        self.taps = (starts[-3] - 1, starts[-2] - 1, starts[-1] - 1)  # (6, 20, 23) for IR-SE-50

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x
        c1, c2, c3 = (feats[i] for i in self.taps)
        p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer1(c2)
        p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer2(c1)
        src = [c3 if i < self.coarse else p2 if i < self.middle else p1 for i in range(len(self.styles))]
        return torch.stack([s.convs(f) for s, f in zip(self.styles, src)], dim=1)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Tensor]) -> LayerWiseEncoder:
        for key in (
            "input_layer.0.weight",
            "latlayer1.weight",
            "latlayer2.weight",
            "styles.0.convs.0.weight",
        ):
            if key not in sd:
                raise VidinvError(f"W-bar encoder does not match the official layout: missing key {key}")
        return cls(
            _irse_body(sd, "body"),
            int(sd["input_layer.0.weight"].shape[0]),
            count_blocks(sd, "styles"),
            int(sd["latlayer1.weight"].shape[0]),
            int(sd["latlayer1.weight"].shape[1]),
            int(sd["latlayer2.weight"].shape[1]),
        )


# ----------------------------------------------------------------------------- hypernetwork


class WeightRegressor(nn.Module):
    """Official ``WeightRegressor``: fuse two feature maps, reduce to a vector, two linear maps to a kernel.

    The ``[B, in, out*k*k]`` product is reinterpreted as ``[B, out, in, k, k]`` with a plain view
    (official memory order, no transpose).

    Shape:
        ``[B, C, 8, 8]`` x 2 -> ``[B, out, in, k, k]``.
    """

    def __init__(self, width: int, hidden: int, shape: Sequence[int], features: int = 64) -> None:
        super().__init__()
        out_c, in_c = int(shape[0]), int(shape[1])
        k = int(shape[2]) if len(shape) == 4 else 1
        self.fusion = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.InstanceNorm2d(width), nn.ReLU())
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(width, features, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(features, features, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(features, features, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(features, hidden, 4, 2, 1),
            nn.ReLU(),
        )
        self.w1 = nn.Parameter(torch.randn(hidden, in_c * hidden) / math.sqrt(hidden))
        self.b1 = nn.Parameter(torch.zeros(in_c * hidden))
        self.w2 = nn.Parameter(torch.randn(hidden, out_c * k * k) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(out_c * k * k))
        self.shape, self.hidden = (out_c, in_c, k, k), hidden

    def forward(self, w_image_codes: Tensor, w_bar_codes: Tensor) -> Tensor:
        B = w_image_codes.shape[0]
        h = self.feature_extractor(self.fusion(torch.cat((w_image_codes, w_bar_codes), 1))).reshape(B, -1)
        h = (h @ self.w1 + self.b1).reshape(B, self.shape[1], self.hidden)
        return (h @ self.w2 + self.b2).reshape(B, *self.shape)


def target_w_idx(name: str) -> int:
    """Which W-bar code row feeds the residual of ``'b{r}.{conv0|conv1|torgb}.weight'`` (official table)."""
    m = re.fullmatch(r"b(\d+)\.(conv0|conv1|torgb)\.weight", name)
    if not m:
        raise VidinvError(f"HyperInverter: unsupported predicted layer {name!r} (only conv/torgb weights)")
    r, layer = int(m.group(1)), m.group(2)
    if r == 4:
        return 0 if layer == "conv1" else 1
    k = int(math.log2(r)) - 2
    return 2 * k if layer == "conv0" else 2 * k + 1


class Hypernetwork(nn.Module):
    """``weight_regressors`` keyed ``'b{r}_{layer}_weight'``; residuals keyed ``'b{r}.{layer}.weight'``.

    Shape:
        w_image_codes, w_bar_codes ``[B, L, C, 8, 8]`` -> dict of ``[B, out, in, k, k]``.
    """

    def __init__(
        self, width: int, hidden: int, target_shapes: Mapping[str, Sequence[int]], features: int = 64
    ) -> None:
        super().__init__()
        self.weight_regressors = nn.ModuleDict(
            {
                n.replace(".", "_"): WeightRegressor(width, hidden, s, features)
                for n, s in target_shapes.items()
            }
        )
        self.targets = {n: target_w_idx(n) for n in target_shapes}

    def forward(self, w_image_codes: Tensor, w_bar_codes: Tensor) -> dict[str, Tensor]:
        return {
            n: self.weight_regressors[n.replace(".", "_")](w_image_codes[:, i], w_bar_codes[:, i])
            for n, i in self.targets.items()
        }

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Tensor], generator: AdaGenerator) -> Hypernetwork:
        names = sorted(
            {k.split(".")[1] for k in sd if k.startswith("weight_regressors.")},
            key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)],
        )
        if not names:
            raise VidinvError("HyperInverter checkpoint has no hypernet.weight_regressors.*")
        gsd = generator.synthesis.state_dict()
        shapes = {}
        for n in names:
            name = n.replace("_", ".")
            if name not in gsd:
                raise VidinvError(
                    f"HyperInverter hypernet predicts {name}, which the generator does not have"
                )
            shapes[name] = tuple(gsd[name].shape)
        p = f"weight_regressors.{names[0]}"
        return cls(
            int(sd[f"{p}.fusion.0.weight"].shape[0]),
            int(sd[f"{p}.w1"].shape[0]),
            shapes,
            int(sd[f"{p}.feature_extractor.0.weight"].shape[0]),
        )


# ----------------------------------------------------------------------------- the full model


class HyperInverterNet(nn.Module):
    """E1 + E2 + hypernetwork + StyleGAN2-ADA generator; ``forward`` returns every intermediate.

    Shape:
        x ``[B, 3, H, W]`` in [-1,1] (resized to 256 bilinearly, as the official forward) -> dict with
        ``w_enc [B,sd]``, ``w_codes [B,L,sd]``, ``w_images``, ``w_bar_codes``, ``w_image_codes``
        ``[B,L,C,8,8]``, ``predicted_weights`` (dict of ``[B,out,in,k,k]``), ``final_images [B,3,S,S]``.
    """

    def __init__(
        self,
        w_encoder: WEncoder,
        w_bar_encoder: LayerWiseEncoder,
        hypernet: Hypernetwork,
        decoder: AdaGenerator,
    ) -> None:
        super().__init__()
        self.w_encoder, self.w_bar_encoder, self.hypernet, self.decoder = (
            w_encoder,
            w_bar_encoder,
            hypernet,
            decoder,
        )
        if max(hypernet.targets.values()) >= len(w_bar_encoder.styles):
            raise VidinvError("HyperInverter: the W-bar encoder has fewer rows than the hypernetwork reads")

    @property
    def latent_avg(self) -> Tensor:
        return self.decoder.mapping.w_avg

    def encode_w(self, x256: Tensor) -> Tensor:
        """Phase I code: ``E1(x) + w_avg`` broadcast to all rows. Shape: -> ``[B, L, sd]``."""
        w = self.w_encoder(x256) + self.latent_avg
        return w[:, None].repeat(1, self.decoder.num_ws, 1)

    def forward(self, x: Tensor) -> dict[str, Any]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise VidinvError(f"HyperInverter: expected images [B,3,H,W], got {tuple(x.shape)}")
        x = F.interpolate(x, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False)
        w_enc = self.w_encoder(x)
        w_codes = (w_enc + self.latent_avg)[:, None].repeat(1, self.decoder.num_ws, 1)
        w_images = self.decoder.render(w_codes)
        w_bar = self.w_bar_encoder(x)
        w_img = self.w_bar_encoder(
            F.interpolate(w_images, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False)
        )
        pw = self.hypernet(w_img, w_bar)
        return {
            "w_enc": w_enc,
            "w_codes": w_codes,
            "w_images": w_images,
            "w_bar_codes": w_bar,
            "w_image_codes": w_img,
            "predicted_weights": pw,
            "final_images": self.decoder.render(w_codes, pw),
        }


def _prefixed(sd: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in sd.items() if k.startswith(prefix + ".")}


def _read(src: str | PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(src, Mapping):
        return src
    from vidinv.models.checkpoint import safe_load

    return safe_load(src)


def load_hyperinverter(
    checkpoint: str | PathLike | Mapping[str, Any],
    generator: str | PathLike | Mapping[str, Any],
    w_encoder: str | PathLike | Mapping[str, Any] | None = None,
) -> HyperInverterNet:
    """Load the official HyperInverter files (strict, sizes inferred, eval, CPU).

    Args:
        checkpoint: ``hyper_inverter.pt`` ``{'state_dict': {hypernet.*, w_bar_encoder.*, w_encoder.*,
            discriminator.*}, 'opts'}`` (path or dict). ``discriminator.*`` (training only) is ignored.
        generator: the converted StyleGAN2-ADA file (see :func:`load_ada_generator`).
        w_encoder: ``w_encoder.pt`` (``{'state_dict': {'encoder.*', ...}}``), as the official loader reads
            it. None: ``opts['w_encoder_path']`` next to the checkpoint file if it exists, else the
            identical ``w_encoder.*`` copy inside the checkpoint.
    """
    ck = _read(checkpoint)
    if not isinstance(ck, Mapping) or not isinstance(ck.get("state_dict"), Mapping):
        raise VidinvError("HyperInverter checkpoint: expected {'state_dict': {...}, 'opts': {...}}")
    sd = ck["state_dict"]
    if w_encoder is None:
        rel = (ck.get("opts") or {}).get("w_encoder_path")
        if rel and not isinstance(checkpoint, Mapping) and (Path(checkpoint).parent / rel).is_file():
            w_encoder = Path(checkpoint).parent / rel
    if w_encoder is not None:
        wk = _read(w_encoder)
        esd = _prefixed(wk.get("state_dict", wk), "encoder")
    else:
        esd = _prefixed(sd, "w_encoder")
    G = load_ada_generator(generator)
    E1 = load_strict(WEncoder.from_state_dict(esd), esd, "HyperInverter W encoder")
    e2sd = _prefixed(sd, "w_bar_encoder")
    E2 = load_strict(LayerWiseEncoder.from_state_dict(e2sd), e2sd, "HyperInverter W-bar encoder")
    hsd = _prefixed(sd, "hypernet")
    H = load_strict(Hypernetwork.from_state_dict(hsd, G), hsd, "HyperInverter hypernetwork")
    if E1.linear.weight.shape[0] != G.w_dim:
        raise VidinvError(
            f"HyperInverter: W encoder gives {E1.linear.weight.shape[0]}-d codes, generator w_dim {G.w_dim}"
        )
    return HyperInverterNet(E1, E2, H, G).eval()


def tiny_hyperinverter(seed: int = 0) -> HyperInverterNet:
    """A 64 px HyperInverter with random weights (narrow-golden-like sizes), CPU, eval mode.

    Generator channels 32 at 4-32 and 16 at 64, w_dim 32; encoders with IR-SE widths 16/20/24/32
    (units 1/1/2/1 for E1 and 3/4/14/3 units' *positions* kept short: 1/1/2/1); hypernet hidden 8.
    """
    from vidinv.models.tiny import calibrate_batchnorm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    G = AdaGenerator({4: 32, 8: 32, 16: 32, 32: 32, 64: 16}, w_dim=32, z_dim=32, mapping_layers=2)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and ".affine." not in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, 32, generator=g)).mean(0))

    def body(widths: Sequence[int]) -> nn.Sequential:
        units, cin = [], 16
        for w in widths:
            units.append(BottleneckIRSE(cin, w, 2, max(1, w // 16)))
            units.append(BottleneckIRSE(w, w, 1, max(1, w // 16)))
            cin = w
        return nn.Sequential(*units)

    E1 = WEncoder(body([16, 20, 24, 32]), 16, 32)
    E2 = LayerWiseEncoder(body([16, 20, 24, 32]), 16, G.num_ws, 32, 24, 20)
    shapes = {
        f"{n}.weight": tuple(G.synthesis.get_submodule(n).weight.shape)
        for r in G.synthesis.resolutions
        for n in ([f"b{r}.conv1", f"b{r}.torgb"] if r == 4 else [f"b{r}.conv0", f"b{r}.conv1", f"b{r}.torgb"])
    }
    H = Hypernetwork(32, 8, shapes, features=8)
    with torch.no_grad():
        for reg in H.weight_regressors.values():
            reg.w2.mul_(0.05)
            reg.b1.copy_(torch.randn(reg.b1.shape, generator=g) * 0.1)
    calibrate_batchnorm(E1, (3, 256, 256), seed)
    calibrate_batchnorm(E2, (3, 256, 256), seed + 1)
    return HyperInverterNet(E1, E2, H, G).eval()
