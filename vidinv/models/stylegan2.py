"""StyleGAN2 generator in pure PyTorch, rosinality key layout, with the Feature-Style hooks.

The state_dict keys are those of rosinality/stylegan2-pytorch (and of pSp's copy under
``decoder.``), so the official checkpoints load strictly. The forward follows the official
semantics (rosinality's CPU fallbacks for ``fused_leaky_relu`` / ``upfirdn2d``) plus the
Feature-Style encoder additions: the feature list and feature replacement at layer ``k``.

Batches run as ordinary convolutions with the shared weight: the input is modulated by the
style, convolved, and the output demodulated per sample (no grouped conv per sample).

Feature indexing (as the official ``return_features``): index 0 is the constant input,
index 1 the 4x4 conv output, and at level ``j >= 1`` (resolution ``2**(j+2)``) index ``2j``
is the upsampling conv output and ``2j+1`` the second conv output. Feature ``k >= 1`` is the
output of noise layer ``k-1`` and is consumed by noise layer ``k``.
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

SQRT2 = math.sqrt(2.0)


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """The official per-resolution widths."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def make_kernel(k: Sequence[float]) -> Tensor:
    """Normalised 2-D FIR kernel (outer product of a 1-D kernel). Shape: ``[K, K]``."""
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample (zero insertion), pad (negative crops), FIR filter, downsample; depthwise.

    Same semantics as rosinality's ``upfirdn2d_native``: the filter is a correlation with the
    flipped kernel, the same ``pad`` applies to x and y.

    Shape:
        x: ``[B, C, H, W]`` -> ``[B, C, (H*up + p0 + p1 - K + 1) // down, ...]``.
    """
    B, C, H, W = x.shape
    kh, kw = kernel.shape
    if up == 1 and pad[0] == pad[1] >= 0:  # plain blur: one depthwise conv, zero padding inside the conv
        x = F.conv2d(x, kernel.flip([0, 1]).to(x.dtype).expand(C, 1, kh, kw), padding=pad[0], groups=C)
        return x[:, :, ::down, ::down] if down > 1 else x
    if up > 1:  # zero insertion: [B,C,H,1,W,1] padded to [B,C,H,up,W,up]
        x = F.pad(x.reshape(B, C, H, 1, W, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(B, C, H * up, W * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])  # negative pads crop
    w = kernel.flip([0, 1]).to(x.dtype).expand(C, 1, kh, kw)
    x = F.conv2d(x, w, groups=C)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: Tensor, bias: Tensor, negative_slope: float = 0.2, scale: float = SQRT2) -> Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with the bias broadcast along dim 1."""
    b = bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x + b, negative_slope) * scale


class PixelNorm(nn.Module):
    """Normalise each vector to unit root-mean-square. Shape: ``[B, D] -> [B, D]``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weight scale applied at run time).

    Shape:
        ``[..., in_dim] -> [..., out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        b = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, b) if b is not None else F.leaky_relu(out, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias=b)


class Blur(nn.Module):
    """FIR blur (``upfirdn2d`` with up=down=1) as one depthwise conv. Shape: ``[B,C,H,W] -> [B,C,H',W']``."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        p0, p1 = self.pad
        if bias is not None and p0 == p1 >= 0:  # bias added inside the depthwise conv (no extra pass)
            k = self.kernel.flip([0, 1]).to(x.dtype)
            return F.conv2d(x, k.expand(x.shape[1], 1, *k.shape), bias.to(x.dtype), padding=p0, groups=x.shape[1])
        out = upfirdn2d(x, self.kernel, pad=self.pad)
        return out if bias is None else out + bias.view(1, -1, 1, 1).to(out.dtype)


class Upsample(nn.Module):
    """2x FIR upsampling (``upfirdn2d`` up=2), used on the RGB skip. Shape: ``[B,C,H,W] -> [B,C,2H,2W]``."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.fast = True  # the transposed-conv form (no zero insertion); False: the reference upfirdn2d

    def forward(self, x: Tensor) -> Tensor:
        K, (p0, p1) = self.kernel.shape[0], self.pad
        q = K - 1 - p0  # polyphase: a depthwise stride-`factor` transposed conv, cropped by q on both sides
        if self.fast and q >= 0 and p1 == p0 - self.factor + 1:
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast depthwise layout
            k = self.kernel.to(x.dtype).expand(x.shape[1], 1, K, K)
            return F.conv_transpose2d(x, k, stride=self.factor, padding=q, groups=x.shape[1])
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated conv with shared weights: ``conv(x * s, W) * demod[b, o]``.

    The upsampling variant is a stride-2 transposed conv followed by the FIR blur, as in
    rosinality's model. Weight layout ``[1, out, in, k, k]`` (the official one).

    Shape:
        x: ``[B, in, H, W]``, style: ``[B, style_dim]`` -> ``[B, out, H, W]`` (``2H, 2W`` when upsampling).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self._cache: dict[str, tuple] = {}  # weight-derived tensors for inference (not in the state_dict)

    def _conv(self, x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
        """``w`` is ``[out, in, k, k]``, or already ``[in, out, k, k]`` for the transposed conv."""
        if self.upsample:
            return self.blur(F.conv_transpose2d(x, w, stride=2), bias)
        return F.conv2d(x, w, bias, padding=self.padding)

    def _cached(self, name: str, fn, *key: Any) -> Tensor:
        """A weight-only tensor, recomputed when the weight changes; not cached while recording gradients."""
        if torch.is_grad_enabled():
            return fn()
        k = (self.weight.data_ptr(), self.weight._version, self.weight.device, *key)
        hit = self._cache.get(name)
        if hit is None or hit[0] != k:
            hit = self._cache[name] = (k, fn())
        return hit[1]

    def _shared_weight(self, x: Tensor) -> Tensor:
        """The unmodulated weight in the conv's layout and the input's memory format."""
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()

        def make() -> Tensor:
            w = self.weight[0].transpose(0, 1) if self.upsample else self.weight[0]
            return w.to(x.dtype).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)

        return self._cached("w", make, x.dtype, nhwc)

    def modulated(self, x: Tensor, style: Tensor, gain: float = 1.0,
                  bias: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The conv of the modulated input, and ``gain * scale * demod`` ``[B, out]`` still to apply (or None).

        A batch of one whose activations outnumber the weight folds style, demodulation and gain
        into the (still ordinary) conv weight and adds ``bias`` ``[out]`` inside the conv (the second
        value is then None). Otherwise the activations are modulated, convolved with the shared
        weight, and demodulation and bias are left to the caller.
        """
        B = x.shape[0]
        s = self.modulation(style)  # [B, in]
        d = torch.full((B, self.out_channel), gain * self.scale, dtype=torch.float32, device=s.device)
        if self.demodulate:  # sum_{i,kh,kw} (scale w[o,i] s[b,i])^2 = s^2 @ (scale^2 sum_k w^2), in float32
            wsq = self._cached("wsq", lambda: self.weight[0].float().square().sum((2, 3)) * self.scale**2)
            d = d * torch.rsqrt(s.float().square() @ wsq.t() + 1e-8)  # [B, out]
        if B == 1 and x.numel() > self.weight.numel():  # one multiply of the weight by an [out, in, 1, 1] factor
            f = (s.float().view(1, -1, 1, 1) * d.view(-1, 1, 1, 1)).to(self.weight.dtype)
            w = (self.weight[0] * f).to(x.dtype)
            w = w.transpose(0, 1) if self.upsample else w
            return self._conv(x, w, None if bias is None else bias.to(x.dtype)), None
        return self._conv(x * s.view(B, -1, 1, 1).to(x.dtype), self._shared_weight(x)), d

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        out, d = self.modulated(x, style)
        return out if d is None else out * d.view(*d.shape, 1, 1).to(out.dtype)


class NoiseInjection(nn.Module):
    """``x + weight * noise`` (fresh N(0,1) noise when ``noise`` is None). Shape: ``[B,C,H,W]``, noise ``[B|1,1,H,W]``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input, repeated over the batch. Shape: ``-> [B, C, 4, 4]``."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU (0.2) + sqrt(2) gain; key ``activate.bias`` ``[C]``."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated conv, noise injection, fused leaky ReLU. Shape: ``[B,in,H,W] -> [B,out,H,W]`` (x2 if upsampling)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), demodulate: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate, upsample, blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        # leaky(conv*d + nw*noise + b) * sqrt2 == leaky(sqrt2 (conv*d + nw*noise + b)); fused, in place
        b = self.activate.bias * SQRT2
        out, d = self.conv.modulated(x, style, gain=SQRT2, bias=b)
        if d is not None:  # batch > 1: demodulate and add the bias in one pass (in place unless recording grads)
            bd = b.view(1, -1, 1, 1).to(out.dtype), out, d.view(*d.shape, 1, 1).to(out.dtype)
            out = torch.addcmul(*bd) if torch.is_grad_enabled() else torch.addcmul(*bd, out=out)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        out = out.addcmul_(noise.to(out.dtype), (self.noise.weight * SQRT2).to(out.dtype))
        return F.leaky_relu_(out, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the upsampled skip.

    Shape:
        x: ``[B, C, H, W]``, style ``[B, style_dim]``, skip ``[B, 3, H/2, W/2]`` -> ``[B, 3, H, W]``.
    """

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        c = self.conv
        w = c.weight[0, :, :, 0, 0] * c.scale * c.modulation(style)[:, None, :]  # [B, 3, C]: tiny per-sample 1x1
        nhwc = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view for channels_last input
        out = torch.bmm(nhwc, w.transpose(1, 2).to(x.dtype)).view(B, H, W, 3).permute(0, 3, 1, 2) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def _as_noise_list(noise: Sequence[Tensor | None], G: Generator, batch: int) -> list[Tensor | None]:
    if len(noise) != G.num_layers:
        raise VidinvError(f"noise must be a list of {G.num_layers} tensors (one per layer), got {len(noise)}")
    for i, n in enumerate(noise):
        if n is None:
            continue
        r = 2 ** ((i + 5) // 2)
        if n.ndim != 4 or n.shape[1] != 1 or tuple(n.shape[2:]) != (r, r) or n.shape[0] not in (1, batch):
            raise VidinvError(f"noise[{i}] must be [1 or {batch}, 1, {r}, {r}], got {list(n.shape)}")
    return list(noise)


class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout) with the Feature-Style feature list and replacement.

    Args:
        size: output resolution, a power of two >= 8.
        style_dim: the W dimension.
        n_mlp: mapping network depth.
        channel_multiplier: official width multiplier for resolutions >= 64.
        channels: explicit ``{resolution: channels}`` for 4..size (overrides the multiplier).
        blur_kernel: the 1-D FIR kernel.
        lr_mlp: the mapping network's learning-rate multiplier (scales weights and biases).

    Shape:
        W+ codes ``[B, n_latent, style_dim]`` with ``n_latent = 2*log2(size) - 2``; images ``[B, 3, size, size]``.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channels: Mapping[int, int] | None = None, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 lr_mlp: float = 0.01) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise VidinvError(f"generator size must be a power of two >= 8, got {size}")
        self.size, self.style_dim = int(size), int(style_dim)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        ch = dict(channels) if channels is not None else default_channels(channel_multiplier)
        missing = [2**i for i in range(2, self.log_size + 1) if 2**i not in ch]
        if missing:
            raise VidinvError(f"channels has no width for resolutions {missing}")
        self.channels = ch
        self.channels_last = True  # activation memory format (not part of the state_dict)
        self.per_sample = True  # batches switch to one sample at a time where that is cheaper (see _layers)
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        c_in = ch[4]
        for i in range(3, self.log_size + 1):
            c_out = ch[2**i]
            self.convs.append(StyledConv(c_in, c_out, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(c_out, c_out, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(c_out, style_dim, blur_kernel=blur_kernel))
            c_in = c_out

    # ---------------------------------------------------------------- mapping / noise
    def mapping(self, z: Tensor) -> Tensor:
        """The mapping network. Shape: ``z [B, sd] -> w [B, sd]``."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise VidinvError(f"z must be [B, {self.style_dim}], got {list(z.shape)}")
        return self.style(z)

    get_latent = mapping

    def mean_latent(self, n: int) -> Tensor:
        """Mean of the mapping output over ``n`` N(0,1) z (global RNG, as the official). Shape: ``[1, sd]``."""
        z = torch.randn(n, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> list[Tensor]:
        """One N(0,1) noise map per layer. Shape: ``num_layers`` entries ``[batch, 1, r_i, r_i]``."""
        device = device if device is not None else self.input.input.device
        gen_device = generator.device if generator is not None else device
        out = []
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            out.append(torch.randn(batch, 1, r, r, generator=generator, device=gen_device).to(device))
        return out

    def stored_noise(self) -> list[Tensor]:
        """The ``noises.noise_i`` buffers (one fixed noise for a whole clip)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # ---------------------------------------------------------------- synthesis core
    def _latent(self, w: Tensor) -> Tensor:
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if w.ndim == 3 and tuple(w.shape[1:]) == (self.n_latent, self.style_dim):
            return w
        raise VidinvError(f"w must be [B, {self.n_latent}, {self.style_dim}] or [B, {self.style_dim}], "
                          f"got {list(w.shape)}")

    def _plan(self) -> list[tuple[int, StyledConv, tuple[ToRGB, int] | None]]:
        """The synthesis layers in order: ``(t, conv, rgb)`` with t the noise/latent index and rgb the
        ``(ToRGB, its latent index)`` that follows the conv, or None.

        Conv ``t`` consumes feature ``t`` and produces feature ``t + 1``.
        """
        plan: list = [(0, self.conv1, (self.to_rgb1, 1))]
        for j, rgb in enumerate(self.to_rgbs):
            i = 2 * j + 1
            plan += [(i, self.convs[2 * j], None), (i + 1, self.convs[2 * j + 1], (rgb, i + 2))]
        return plan

    def _nhwc(self, x: Tensor) -> Tensor:
        """Activations in NHWC: much faster convs / depthwise blurs with oneDNN on the CPU."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _run(self, latent: Tensor, noise: Sequence[Tensor | None], features_in: Mapping[int, Tensor],
             feature_scale: float, stop: int | None = None, return_features: bool = False):
        """Run the layers; ``stop=k`` returns feature k (no RGB); otherwise ``(image, features)``."""
        x = self._nhwc(self.input(latent.shape[0]))
        feats = [x.contiguous()] if return_features else None
        if stop == 0:
            return x
        return self._layers(self._plan(), 0, x, None, latent, noise, features_in, feature_scale, stop, feats)

    def _layers(self, plan: list, start: int, x: Tensor, skip: Tensor | None, latent: Tensor,
                noise: Sequence[Tensor | None], fin: Mapping[int, Tensor], scale: float, stop: int | None,
                feats: list[Tensor] | None, with_skip: bool = False):
        """``plan[start:]`` on ``x`` (and the RGB ``skip``); returns feature ``stop`` (with ``with_skip``:
        and the RGB skip so far, the ToRGB of that layer included), or ``(image, feats)``.

        A batch switches to one sample at a time at the first layer whose per-sample activations
        outnumber its weight: from there on folding style and demodulation into the weight (the
        batch-1 path) is cheaper than the shared-weight batch path and its extra passes, and each
        sample's maps stay cache-sized. The cost order is monotone along the network (activations
        grow, weights shrink), so this is the per-layer choice.
        """
        for n in range(start, len(plan)):
            t, conv, rgb = plan[n]
            if self.per_sample and x.shape[0] > 1 and x[0].numel() > conv.conv.weight.numel():
                return self._per_sample(plan, n, x, skip, latent, noise, fin, scale, stop, feats, with_skip)
            f = fin.get(t)  # the official insert_feature: x <- (1-s) x + s f_t
            x = x if f is None else self._nhwc((1 - scale) * x + scale * f.to(x.dtype))
            x = conv(x, latent[:, t], noise[t])
            if feats is not None:
                feats.append(x.contiguous())
            if stop == t + 1 and not with_skip:
                return x
            if rgb is not None:
                skip = rgb[0](x, latent[:, rgb[1]], skip)
            if stop == t + 1:
                return x, skip
        return skip.contiguous(), feats

    def _per_sample(self, plan: list, n: int, x: Tensor, skip: Tensor | None, latent: Tensor,
                    noise: Sequence[Tensor | None], fin: Mapping[int, Tensor], scale: float, stop: int | None,
                    feats: list[Tensor] | None, with_skip: bool = False):
        """``plan[n:]`` one sample at a time (batch-1 noise / features are shared); results concatenated."""
        outs = []
        for b in range(x.shape[0]):
            def one(v: Tensor | None) -> Tensor | None:
                return v if v is None or v.shape[0] == 1 else v[b:b + 1]
            outs.append(self._layers(plan, n, x[b:b + 1], one(skip), latent[b:b + 1], [one(z) for z in noise],
                                     {k: one(f) for k, f in fin.items()}, scale, stop,
                                     None if feats is None else [], with_skip))
        if stop is not None:
            return tuple(torch.cat(o) for o in zip(*outs)) if with_skip else torch.cat(outs)
        if feats is not None:
            feats += [torch.cat(f) for f in zip(*(o[1] for o in outs))]
        return torch.cat([o[0] for o in outs]), feats

    def _check_feature(self, f: Tensor, k: int, batch: int) -> None:
        if not 1 <= k < self.n_latent:
            raise VidinvError(f"feature index must be in 1..{self.n_latent - 1}, got {k}")
        r = 4 if k == 1 else 2 ** (k // 2 + 2)
        c = self.channels[r]
        if f.ndim != 4 or tuple(f.shape[1:]) != (c, r, r) or f.shape[0] not in (1, batch):
            raise VidinvError(f"feature {k} must be [{batch}, {c}, {r}, {r}], got {list(f.shape)}")

    def synthesis(self, w: Tensor, noise: Sequence[Tensor | None] | None = None, feature_in: Tensor | None = None,
                  feature_idx: int = 5, feature_scale: float = 1.0, return_features: bool = False):
        """Render W+ codes, optionally replacing feature ``feature_idx`` by ``feature_in``.

        Args:
            w: W+ codes, or W codes broadcast to every layer.
            noise: ``num_layers`` maps (batch-1 entries broadcast); None = the stored ``noises.*`` buffers.
            feature_in: the feature that replaces index ``feature_idx`` (before the conv that consumes it):
                ``x <- (1 - feature_scale) x + feature_scale feature_in``.
            feature_idx: the feature index (5 = the second 16x16 conv output).
            feature_scale: the blend factor.
            return_features: also return the official feature list (``n_latent`` entries).

        Returns:
            The image, or ``(image, features)`` when ``return_features``.

        Shape:
            w ``[B, L, sd]`` or ``[B, sd]``; feature_in ``[B, C_r, r, r]`` -> image ``[B, 3, S, S]``.
        """
        latent = self._latent(w)
        B = latent.shape[0]
        noise = _as_noise_list(self.stored_noise() if noise is None else noise, self, B)
        fin: dict[int, Tensor] = {}
        if feature_in is not None:
            self._check_feature(feature_in, feature_idx, B)
            fin[feature_idx] = feature_in
        img, feats = self._run(latent, noise, fin, feature_scale, return_features=return_features)
        return (img, feats) if return_features else img

    def features_at(self, w: Tensor, k: int = 5, noise: Sequence[Tensor | None] | None = None,
                    return_skip: bool = False):
        """G^K(w): feature ``k`` of the official list; runs only the layers up to it (no RGB unless
        ``return_skip``: then also the RGB skip through layer k, for :meth:`synthesis_from`).

        Shape:
            w ``[B, L, sd]`` or ``[B, sd]`` -> ``[B, C_r, r, r]`` (``[B, C16, 16, 16]`` for k=5).
        """
        if not 0 <= k < self.n_latent:
            raise VidinvError(f"feature index k must be in 0..{self.n_latent - 1}, got {k}")
        latent = self._latent(w)
        noise = _as_noise_list(self.stored_noise() if noise is None else noise, self, latent.shape[0])
        if not return_skip:
            return self._run(latent, noise, {}, 1.0, stop=k).contiguous()
        if k < 1:
            raise VidinvError(f"return_skip needs a feature index k >= 1, got {k}")
        x = self._nhwc(self.input(latent.shape[0]))
        x, skip = self._layers(self._plan(), 0, x, None, latent, noise, {}, 1.0, k, None, with_skip=True)
        return x.contiguous(), skip

    def synthesis_from(self, k: int, x: Tensor, skip: Tensor, w: Tensor,
                       noise: Sequence[Tensor | None] | None = None) -> Tensor:
        """Resume a render at layer ``k``: ``x`` is feature k, ``skip`` the RGB of the layers before
        (both from ``features_at(w, k, noise, return_skip=True)``, x possibly replaced). Equals
        ``synthesis(w, noise, feature_in=x, feature_idx=k)`` without re-running layers 0..k-1.

        Shape:
            x ``[B, C_r, r, r]``, skip ``[B, 3, r', r']``, w ``[B, L, sd]`` -> ``[B, 3, S, S]``.
        """
        latent = self._latent(w)
        B = latent.shape[0]
        self._check_feature(x, k, B)
        noise = _as_noise_list(self.stored_noise() if noise is None else noise, self, B)
        img, _ = self._layers(self._plan(), k, self._nhwc(x), skip, latent, noise, {}, 1.0, None, None)
        return img

    def forward(self, styles: Tensor | Sequence[Tensor], input_is_latent: bool = False,
                noise: Sequence[Tensor | None] | None = None, randomize_noise: bool = True, truncation: float = 1,
                truncation_latent: Tensor | None = None, return_features: bool = False,
                features_in: Sequence[Tensor | None] | None = None, feature_scale: float = 1.0,
                inject_index: int | None = None, return_latents: bool = False):
        """The official call: ``G([z or w], ...) -> (image, features | latent | None)``.

        Args:
            styles: a list of one (or two, style mixing) z / w tensors ``[B, sd]`` or W+ ``[B, L, sd]``.
            input_is_latent: the styles are W codes (skip the mapping network).
            noise: per-layer maps; None -> fresh random noise if ``randomize_noise`` else the stored buffers.
            truncation, truncation_latent: ``t + truncation * (w - t)`` in W.
            return_features: return the official feature list as the second value.
            features_in: ``n_latent`` entries (None = keep); entry k replaces feature k.
            feature_scale: blend factor of the replacement.
            inject_index, return_latents: style mixing controls, as the official.

        Shape:
            -> image ``[B, 3, S, S]``.
        """
        if isinstance(styles, Tensor):
            styles = [styles]
        if not 1 <= len(styles) <= 2:
            raise VidinvError(f"styles must be a list of one or two tensors, got {len(styles)}")
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise VidinvError("truncation < 1 needs truncation_latent (e.g. G.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            latent = self._latent(styles[0])
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent, ()).item())
            a, b = (s if s.ndim == 3 else s.unsqueeze(1).expand(-1, self.n_latent, -1) for s in styles)
            latent = torch.cat([a[:, :inject_index], b[:, inject_index:]], 1)
        B = latent.shape[0]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()
        noise = _as_noise_list(noise, self, B)
        fin: dict[int, Tensor] = {}
        if features_in is not None:
            if len(features_in) > self.n_latent:
                raise VidinvError(f"features_in has {len(features_in)} entries, at most {self.n_latent}")
            for k, f in enumerate(features_in):
                if f is not None and k > 0:  # entry 0 is never read (as the official)
                    self._check_feature(f, k, B)
                    fin[k] = f
        img, feats = self._run(latent, noise, fin, feature_scale, return_features=return_features)
        if return_latents:
            return img, latent
        return img, feats


# -------------------------------------------------------------------- checkpoints
def split_checkpoint(ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], Tensor | None]:
    """The generator state_dict and ``latent_avg`` of a rosinality, pSp or plain checkpoint.

    rosinality ``{'g_ema', 'latent_avg'}``; pSp ``{'state_dict': {'decoder.*', 'encoder.*', ...}, 'latent_avg'}``
    (only the ``decoder.`` prefix is kept, as the official ``get_keys``); or a plain generator state_dict.
    """
    if not isinstance(ckpt, Mapping):
        raise VidinvError(f"a generator checkpoint must be a dict, got {type(ckpt).__name__}")
    latent_avg = ckpt.get("latent_avg")
    if "g_ema" in ckpt:
        sd = dict(ckpt["g_ema"])
    elif "state_dict" in ckpt:
        sd = {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
        if not sd:
            raise VidinvError("the pSp checkpoint's state_dict has no 'decoder.*' keys (no generator in it)")
    elif "input.input" in ckpt:
        sd, latent_avg = {k: v for k, v in ckpt.items() if isinstance(v, Tensor)}, None
    else:
        keys = ", ".join(list(ckpt)[:6])
        raise VidinvError(f"not a StyleGAN2 checkpoint (expected 'g_ema', a pSp 'state_dict' or a plain "
                          f"generator state_dict; top-level keys: {keys})")
    return sd, latent_avg


def generator_config_from_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Infer ``size, style_dim, n_mlp, channels, blur_kernel`` from a rosinality-layout state_dict's shapes."""
    try:
        style_dim = int(sd["conv1.conv.modulation.weight"].shape[1])
        channels = {4: int(sd["input.input"].shape[1])}
    except KeyError as e:
        raise VidinvError(f"not a StyleGAN2 generator state_dict: missing key {e}") from None
    n_rgb = 0
    while f"to_rgbs.{n_rgb}.conv.weight" in sd:
        channels[2 ** (n_rgb + 3)] = int(sd[f"to_rgbs.{n_rgb}.conv.weight"].shape[2])
        n_rgb += 1
    if n_rgb == 0:
        raise VidinvError("not a StyleGAN2 generator state_dict: no 'to_rgbs.*' layers")
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    k = sd.get("convs.0.conv.blur.kernel")
    blur = (1, 3, 3, 1) if k is None or k.shape[0] == 4 else tuple([1.0] * int(k.shape[0]))  # values come from sd
    return {"size": 2 ** (n_rgb + 2), "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels, "blur_kernel": blur}


def _short(keys: Sequence[str], n: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_generator(src: str | PathLike | Mapping[str, Any], strict: bool = True,
                   copy: bool = True) -> tuple[Generator, Tensor | None]:
    """Build a Generator sized from a checkpoint's shapes and load it.

    Args:
        src: a path (loaded with ``safe_load``) or a loaded dict: rosinality ``{'g_ema', 'latent_avg'}``,
            pSp ``{'state_dict': {'decoder.*', ...}, 'latent_avg'}`` or a plain generator state_dict.
        strict: missing or unexpected keys raise ``VidinvError`` naming them (shape mismatches always do).
        copy: a dict ``src``'s tensors are copied (False: G takes them, for a dict read for it alone).

    G is built without random initialisation and takes the checkpoint's tensors (no second copy; see
    :func:`~vidinv.models.checkpoint.no_init`); a non-strict load with missing keys builds it randomly initialised and copies the matching keys in.

    Returns:
        ``(G, latent_avg)``: G in eval mode on the CPU (float32); ``latent_avg`` as stored
        (rosinality ``[sd]``, pSp ``[L, sd]``; both broadcast against ``[B, L, sd]``) or None.
    """
    from vidinv.models.checkpoint import assign_state_dict, fast_load, no_init, safe_load

    owned = isinstance(src, (str, PathLike))
    if owned:
        src = safe_load(src)
    sd, latent_avg = split_checkpoint(src)
    cfg = generator_config_from_state_dict(sd)
    fast = fast_load()
    with no_init():
        G = Generator(**cfg)
    own = G.state_dict()
    missing, unexpected = set(own) - set(sd), set(sd) - set(own)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise VidinvError("generator checkpoint does not match the StyleGAN2 layout; " + "; ".join(parts)
                          + " (pass strict=False to load the matching keys only)")
    bad = [f"{k} {list(sd[k].shape)} != {list(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad:
        raise VidinvError(f"generator checkpoint has wrong shapes: {_short(bad, 4)}")
    if fast and not missing:
        assign_state_dict(G, sd, copy=copy and not owned)
    else:
        G = Generator(**cfg) if fast else G
        G.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    if latent_avg is not None:
        latent_avg = latent_avg.detach().float().cpu()
        if latent_avg.shape[-1] != G.style_dim or latent_avg.ndim > 2 or (
                latent_avg.ndim == 2 and latent_avg.shape[0] not in (1, G.n_latent)):
            raise VidinvError(f"latent_avg must be [{G.style_dim}] or [{G.n_latent}, {G.style_dim}], "
                              f"got {list(latent_avg.shape)}")
    return G.float().eval(), latent_avg
