"""PadInv behind the :class:`~vidinv.inverters.base.Inverter` interface.

Code: ``'w'`` ``[B,L,sd]`` (``style_latents``, avg_latent included) and one entry per padding map,
``'pad{i}'`` ``[B,C,P,P]`` for the indices ``i`` the encoder fills (0 = the constant-input
replacement, then 1, 3, 5, 7: the non-upsampling convs). Editing follows the paper: ``w`` is edited
in W+ and the image's own padding maps are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vidinv.errors import VidinvError
from vidinv.inverters.base import Code, check_images, latent_to_render
from vidinv.inverters.registry import InverterEntry, register_inverter
from vidinv.models.padinv import PadInvEncoder, PadInvGenerator, load_padinv, tiny_padinv

ENCODER_SIZE = 256


def resize_to(x: Tensor, size: int) -> Tensor:
    """Bilinear resize (antialiased when shrinking). Shape: ``[B,3,H,W] -> [B,3,size,size]``."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=bool(x.shape[-1] > size)
    )


class PadInvInverter:
    """PadInv: W+ codes plus per-layer padding maps that replace the generator's zero padding.

    Args:
        encoder: a loaded :class:`PadInvEncoder` (``avg_latent`` set).
        generator: a loaded :class:`PadInvGenerator`.
        noise_mode: ``'const'`` (the stored noise buffers, as the official evaluation) or ``'none'``.
    """

    name = "padinv"

    def __init__(self, encoder: PadInvEncoder, generator: PadInvGenerator, noise_mode: str = "const") -> None:
        if noise_mode not in ("const", "none"):
            raise VidinvError(f"padinv: noise_mode must be 'const' or 'none', got {noise_mode!r}")
        self.encoder, self.generator, self.noise_mode = encoder, generator, noise_mode
        self.size, self.n_latent, self.style_dim = generator.size, generator.n_latent, generator.style_dim
        if encoder.n_latent < self.n_latent:
            raise VidinvError(
                f"padinv: the encoder predicts {encoder.n_latent} W+ rows, the generator needs "
                f"{self.n_latent}"
            )

    @torch.no_grad()
    def invert(self, x: Tensor) -> Code:
        """Encode crops (resized to the encoder's 256 when needed).

        Shape:
            x ``[B,3,H,W]`` in [-1,1] -> ``{'w': [B,L,sd], 'pad{i}': [B,C,P,P]}``.
        """
        check_images(x, "padinv.invert")
        out = self.encoder(resize_to(x, ENCODER_SIZE))
        code = {"w": out["style_latents"][:, : self.n_latent]}
        code.update({f"pad{i}": m for i, m in enumerate(out["padding_maps"]) if m is not None})
        return code

    def padding_maps(self, code: Mapping[str, Tensor]) -> list[Tensor | None]:
        """The generator's ``padding_maps`` list from a code (missing indices are None)."""
        maps: list[Tensor | None] = [None] * (self.n_latent + 1)
        for k, v in code.items():
            if k.startswith("pad") and k[3:].isdigit():
                i = int(k[3:])
                if i >= len(maps):
                    raise VidinvError(
                        f"padinv: code entry {k} is beyond the generator's {self.n_latent} layers"
                    )
                maps[i] = v
        return maps

    @torch.no_grad()
    def render(self, code: Code, w_edit: Tensor | None = None, noise: list | None = None) -> Tensor:
        """Render the code; ``w_edit`` (``[B,L,sd]`` or ``[B,sd]``) replaces ``w``, padding maps kept.

        Args:
            noise: per conv layer ``[B|1,1,r,r]`` tensors (None entries / None = the stored buffers).

        Shape:
            -> ``[B,3,S,S]``.
        """
        w = latent_to_render(self, code, w_edit)
        return self.generator.render(w, self.padding_maps(code), noise, self.noise_mode)

    def to(self, device: Any) -> PadInvInverter:
        self.encoder.to(device)
        self.generator.to(device)
        return self


def padinv_inverter(checkpoint: str | PathLike | Mapping[str, Any], **kw: Any) -> PadInvInverter:
    """Load an official PadInv runner checkpoint (``{'models': {...}, ...}``) as a :class:`PadInvInverter`."""
    noise_mode = kw.pop("noise_mode", "const")
    E, G = load_padinv(checkpoint, **kw)
    return PadInvInverter(E, G, noise_mode)


def tiny_padinv_inverter(seed: int = 0) -> PadInvInverter:
    """A 64 px random-weight PadInv inverter for fast pipeline tests."""
    return PadInvInverter(*tiny_padinv(seed))


register_inverter(InverterEntry(name="padinv", loader=padinv_inverter, zoo_checkpoint="padinv_ffhq",
                                tiny=tiny_padinv_inverter))
