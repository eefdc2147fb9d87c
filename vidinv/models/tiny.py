"""Tiny random-weight models for tests and ``vidinv doctor`` (seconds on a CPU, no download).

The sizes are those of the narrow golden set: a 64 px generator with style dim 64 and
10 W+ layers, and a Feature-Style encoder with stage widths 8/12/16/24 whose feature
code (32 channels at 16x16) matches the generator's layer K=5.
"""

from __future__ import annotations

import torch

TINY_CHANNELS = {4: 48, 8: 40, 16: 32, 32: 24, 64: 16}
TINY_STYLE_DIM = 64


def _seeded(seed: int):
    g = torch.Generator().manual_seed(seed)
    return g


def tiny_generator(seed: int = 0):
    """A 64 px StyleGAN2 (style dim 64, n_mlp 2, n_latent 10) with random weights."""
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(seed)
    G = Generator(64, TINY_STYLE_DIM, n_mlp=2, channels=dict(TINY_CHANNELS))
    _randomize(G, seed)
    return G.eval()


def tiny_encoder(seed: int = 0):
    """A narrow Feature-Style encoder (widths 8/12/16/24, content 32, 10 styles of dim 64)."""
    from vidinv.models.fs_encoder import FSEncoder

    torch.manual_seed(seed)
    E = FSEncoder(n_styles=10, style_dim=TINY_STYLE_DIM, widths=(8, 12, 16, 24), content_channels=32)
    calibrate_batchnorm(E, (3, 256, 256), seed)
    return E.eval()


def tiny_inverter(seed: int = 0, generator=None):
    """A tiny encoder plus the tiny generator's mean latent, as one inverter."""
    from vidinv.models.fs_encoder import FSInverter

    G = generator if generator is not None else tiny_generator(seed)
    with torch.no_grad():
        latent_avg = G.mean_latent(512)[0]
    return FSInverter(tiny_encoder(seed + 1), latent_avg)


def tiny_iresnet(seed: int = 0):
    """A narrow ArcFace IResNet-50 (widths 8/12/16/24, 64-d embedding)."""
    from vidinv.models.iresnet import iresnet50

    torch.manual_seed(seed)
    M = iresnet50(widths=(8, 12, 16, 24), embedding=64)
    calibrate_batchnorm(M, (3, 112, 112), seed)
    return M.eval()


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, shape: tuple, seed: int, batches: int = 2, batch: int = 4) -> None:
    """Set BatchNorm running statistics from a few smooth random images.

    A deep residual net with random weights and BN statistics of 0/1 blows up in eval
    mode; the golden fixtures calibrate the same way (a cumulative average over two
    train-mode batches of smooth noise).
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g = _seeded(seed + 2000)
    model.train()
    for _ in range(batches):
        low = torch.randn((batch, shape[0], 8, 8), generator=g) * 0.6
        x = torch.nn.functional.interpolate(low, size=shape[1:], mode="bilinear", align_corners=False)
        x = (x + 0.15 * torch.randn((batch,) + tuple(shape), generator=g)).clamp(-1, 1)
        model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


@torch.no_grad()
def _randomize(G, seed: int) -> None:
    """Give the generator's zero-initialised terms (noise weights, biases) non-trivial values."""
    g = _seeded(seed + 1000)
    for name, p in G.named_parameters():
        if name.endswith("noise.weight") or name.endswith("activate.bias") or (
            name.startswith("to_rgb") and name.endswith(".bias")
        ):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
