"""HyperInverter behind the :class:`~vidinv.inverters.base.Inverter` interface.

Code (all batched on dim 0): ``'w'`` ``[B,L,sd]`` (the phase-I W code, rows equal), and the two
W-bar encodings the hypernetwork reads, ``'w_bar_codes'`` and ``'w_image_codes'`` ``[B,L,C,8,8]``
(about 4.7 MB per frame at full size, against ~110 MB for the predicted weights themselves).
With ``store_weights=True`` the code also holds the residuals ``'dw.b{r}.{layer}.weight'``
``[B,out,in,k,k]`` and :meth:`render` uses them as they are (no hypernetwork call).

Editing follows the paper: a W direction moves ``w`` (``[B,sd]`` or ``[B,L,sd]``); the image keeps
its own predicted weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor

from vidinv.errors import VidinvError
from vidinv.inverters.base import Code, check_code, check_images, latent_to_render
from vidinv.inverters.registry import InverterEntry, register_inverter
from vidinv.models.hyperinverter import HyperInverterNet, load_hyperinverter, tiny_hyperinverter

PREFIX = "dw."


class HyperInverterInverter:
    """HyperInverter: W code + per-image generator weight residuals from a hypernetwork.

    Args:
        net: a loaded :class:`~vidinv.models.hyperinverter.HyperInverterNet`.
        store_weights: put the predicted residuals into the code (large) instead of recomputing them.
        noise_mode: ``'const'`` (the ``noise_const`` buffers, as the official inference) or ``'none'``.
    """

    name = "hyperinverter"

    def __init__(self, net: HyperInverterNet, store_weights: bool = False, noise_mode: str = "const") -> None:
        if noise_mode not in ("const", "none"):
            raise VidinvError(f"hyperinverter: noise_mode must be 'const' or 'none', got {noise_mode!r}")
        self.net, self.store_weights, self.noise_mode = net, store_weights, noise_mode
        G = net.decoder
        self.size, self.n_latent, self.style_dim = G.size, G.num_ws, G.w_dim

    @torch.no_grad()
    def invert(self, x: Tensor) -> Code:
        """Encode crops (resized to 256 for both encoders, as the official forward).

        Shape:
            x ``[B,3,H,W]`` in [-1,1] -> ``{'w': [B,L,sd], 'w_bar_codes', 'w_image_codes': [B,L,C,8,8]}``.
        """
        check_images(x, "hyperinverter.invert")
        out = self.net(x) if self.store_weights else self._codes(x)
        code = {k: out[k] for k in ("w_codes", "w_bar_codes", "w_image_codes")}
        code["w"] = code.pop("w_codes")
        if self.store_weights:
            code.update({PREFIX + k: v for k, v in out["predicted_weights"].items()})
        return code

    def _codes(self, x: Tensor) -> dict[str, Tensor]:
        """The inversion up to the hypernetwork inputs (skips the final render)."""
        import torch.nn.functional as F

        from vidinv.models.hyperinverter import ENCODER_SIZE

        net = self.net
        x = F.interpolate(x, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False)
        w_codes = net.encode_w(x)
        w_images = net.decoder.render(w_codes, noise_mode=self.noise_mode)
        w_img = net.w_bar_encoder(
            F.interpolate(w_images, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False)
        )
        return {"w_codes": w_codes, "w_bar_codes": net.w_bar_encoder(x), "w_image_codes": w_img}

    @torch.no_grad()
    def predicted_weights(self, code: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The per-sample weight residuals ``{'b{r}.{layer}.weight': [B,out,in,k,k]}`` of a code."""
        stored = {k[len(PREFIX) :]: v for k, v in code.items() if k.startswith(PREFIX)}
        if stored:
            return stored
        check_code(code, ("w_bar_codes", "w_image_codes"), "hyperinverter code")
        return self.net.hypernet(code["w_image_codes"], code["w_bar_codes"])

    @torch.no_grad()
    def render(self, code: Code, w_edit: Tensor | None = None, noise: list | None = None) -> Tensor:
        """Render with the image's own residual weights; ``w_edit`` (``[B,sd]``/``[B,L,sd]``) replaces ``w``.

        Args:
            noise: per conv layer ``[B|1,1,r,r]`` tensors (None entries / None = the ``noise_const`` buffers).

        Shape:
            -> ``[B,3,S,S]``.
        """
        w = latent_to_render(self, code, w_edit)
        return self.net.decoder.render(w, self.predicted_weights(code), noise, self.noise_mode)

    def to(self, device: Any) -> HyperInverterInverter:
        self.net.to(device)
        return self


def hyperinverter_inverter(
    checkpoint: str | PathLike | Mapping[str, Any],
    generator: Any = None,
    w_encoder: Any = None,
    store_weights: bool = False,
    noise_mode: str = "const",
) -> HyperInverterInverter:
    """Load ``hyper_inverter.pt`` + the converted StyleGAN2-ADA generator (``generator=``, required)."""
    if generator is None:
        raise VidinvError(
            "hyperinverter needs generator=<converted StyleGAN2-ADA .pt> (the official loader reads it "
            "from a separate NVlabs pickle; convert that once with "
            "vidinv.models.hyperinverter.convert_ada_pickle)"
        )
    return HyperInverterInverter(
        load_hyperinverter(checkpoint, generator, w_encoder), store_weights, noise_mode
    )


def tiny_hyperinverter_inverter(seed: int = 0, store_weights: bool = False) -> HyperInverterInverter:
    """A 64 px random-weight HyperInverter for fast pipeline tests."""
    return HyperInverterInverter(tiny_hyperinverter(seed), store_weights)


register_inverter(InverterEntry(
    name="hyperinverter", loader=hyperinverter_inverter, zoo_checkpoint="hyperinverter_ffhq",
    needs_generator=True, zoo_generator="stylegan2_ada_ffhq", tiny=tiny_hyperinverter_inverter,
    options={"generator": "generator"},
))
