"""pSp (``GradualStyleEncoder``) as an :class:`~vidinv.inverters.base.Inverter`; also the base of e4e.

Code dict: ``{'w': [B, L, sd]}`` (latent_avg included). Rendering is the official
``decoder([w], input_is_latent=True, randomize_noise=False)``: G's stored noise buffers unless
a noise list is given. Edits are W+ offsets (InterFaceGAN ``[1, sd]`` directions broadcast to
every row, as the official ``LatentEditor``; :func:`vidinv.editing.directions.apply_edits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn

from vidinv.errors import VidinvError
from vidinv.inverters.base import check_code, check_images, expand_w
from vidinv.inverters.registry import InverterEntry, register_inverter
from vidinv.models.fs_encoder import preprocess
from vidinv.models.psp import PSPCheckpoint, load_psp_checkpoint

__all__ = ["PSPInverter", "load_psp_inverter"]

ENCODER_SIZE = 256


class PSPInverter(nn.Module):
    """An encoder-based W+ inverter (pSp or e4e) with its StyleGAN2 decoder.

    Args:
        model: the loaded official checkpoint (:func:`~vidinv.models.psp.load_psp_checkpoint`).
        name: the registry name.

    Shape:
        invert: ``[B, 3, S', S']`` in [-1, 1] (any square size; brought to 256 as
        :func:`~vidinv.models.fs_encoder.preprocess`) -> ``{'w': [B, L, sd]}``;
        render: -> ``[B, 3, S, S]``.
    """

    def __init__(self, model: PSPCheckpoint, name: str = "psp") -> None:
        super().__init__()
        G, E = model.decoder, model.encoder
        if E.style_dim != G.style_dim or E.style_count < G.n_latent:
            raise VidinvError(f"encoder ({E.style_count} x {E.style_dim}) does not fit the generator "
                              f"({G.n_latent} x {G.style_dim})")
        self.model, self.name = model, name

    @property
    def G(self):
        return self.model.decoder

    @property
    def size(self) -> int:
        return self.G.size

    @property
    def n_latent(self) -> int:
        return self.G.n_latent

    @property
    def style_dim(self) -> int:
        return self.G.style_dim

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """W+ codes incl. latent_avg, all the encoder's rows. Shape: ``[B,3,S',S'] -> [B, L_enc, sd]``."""
        check_images(x, f"{self.name} invert")
        if x.shape[-1] != x.shape[-2]:
            raise VidinvError(f"{self.name} invert expects square crops, got {list(x.shape)}")
        return self.model.encode(preprocess(x, ENCODER_SIZE))

    def invert(self, x: Tensor) -> dict[str, Tensor]:
        """``{'w': [B, L, sd]}`` (the generator reads the first ``n_latent`` encoder rows)."""
        return {"w": self.encode(x)[:, :self.n_latent].contiguous()}

    @torch.no_grad()
    def render(self, code: Mapping[str, Tensor], w_edit: Tensor | None = None,
               noise: list | None = None) -> Tensor:
        """``G(w_edit or code['w'])`` with G's stored noise (or ``noise``). Shape: ``-> [B, 3, S, S]``."""
        B = check_code(code, ("w",), f"{self.name} render")
        w = expand_w(code["w"] if w_edit is None else w_edit, self.n_latent, self.style_dim, "w")
        if w.shape[0] != B:
            raise VidinvError(f"w_edit has batch {w.shape[0]}, the code has {B}")
        return self.G.synthesis(w, noise=noise)

    def forward(self, x: Tensor) -> Tensor:
        """Inversion round trip: ``render(invert(x))``."""
        return self.render(self.invert(x))


def load_psp_inverter(checkpoint: str | PathLike | Mapping[str, Any], **kw: Any) -> PSPInverter:
    """A pSp inverter from an official ``psp_ffhq_encode.pt``-layout checkpoint (``GradualStyleEncoder``)."""
    return PSPInverter(load_psp_checkpoint(checkpoint, kw.pop("encoder_type", None)), name="psp", **kw).eval()


register_inverter(InverterEntry(name="psp", loader=load_psp_inverter, zoo_checkpoint="psp_ffhq_encode"))
