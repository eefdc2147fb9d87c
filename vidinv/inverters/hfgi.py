"""HFGI (high-fidelity GAN inversion) as an :class:`~vidinv.inverters.base.Inverter`.

Code dict: ``{'w': [B, L, sd], 'distortion': [B, 3, 256, 256]}``: the e4e code and the
distortion map ``x - resize256(clamp(G(w)))``. Rendering (inversion or edit ``w~``) follows the
official ``scripts/inference.py``: ``G(w~)`` -> ADA aligns the distortion to it -> the
consultation encoder gives ``(scale, shift)`` -> ``G(w~)`` with the 64x64 features modulated.
Edits are W+ offsets (:func:`vidinv.editing.directions.apply_edits`). Noise: G's stored buffers
(the official ``randomize_noise=False``) unless a list is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor

from vidinv.errors import VidinvError
from vidinv.inverters.base import check_code, expand_w
from vidinv.inverters.psp import ENCODER_SIZE, PSPInverter
from vidinv.inverters.registry import InverterEntry, register_inverter
from vidinv.models.hfgi import HFGIModel, load_hfgi, synthesis_with_conditions, tiny_hfgi

__all__ = ["HFGIInverter", "load_hfgi_inverter", "tiny_hfgi_inverter"]


class HFGIInverter(PSPInverter):
    """HFGI: e4e codes plus the distortion map, rendered with ADA + consultation fusion.

    Shape:
        invert: ``[B, 3, S', S']`` in [-1, 1] (brought to 256) ->
        ``{'w': [B, L, sd], 'distortion': [B, 3, 256, 256]}``;
        render: -> ``[B, 3, S, S]``.
    """

    model: HFGIModel

    def __init__(self, model: HFGIModel, name: str = "hfgi") -> None:
        if not isinstance(model, HFGIModel):
            raise VidinvError(f"HFGIInverter needs an HFGIModel, got {type(model).__name__}")
        super().__init__(model, name)

    @torch.no_grad()
    def invert(self, x: Tensor) -> dict[str, Tensor]:
        from vidinv.models.fs_encoder import preprocess

        w = self.encode(x)[:, :self.n_latent].contiguous()
        x256 = preprocess(x, ENCODER_SIZE)
        return {"w": w, "distortion": self.model.distortion(x256, self.G.synthesis(w))}

    @torch.no_grad()
    def render(self, code: Mapping[str, Tensor], w_edit: Tensor | None = None, noise: list | None = None,
               return_intermediates: bool = False):
        """Render the inversion (``w_edit=None``) or an edit.

        With ``return_intermediates`` also a dict ``image_initial`` (the e4e image ``G(w~)``),
        ``res_align``, ``cond_scale``, ``cond_shift``.
        """
        B = check_code(code, ("w", "distortion"), f"{self.name} render")
        w = expand_w(code["w"] if w_edit is None else w_edit, self.n_latent, self.style_dim, "w")
        if w.shape[0] != B:
            raise VidinvError(f"w_edit has batch {w.shape[0]}, the code has {B}")
        D = code["distortion"]
        if D.ndim != 4 or D.shape[1] != 3 or D.shape[-1] != D.shape[-2]:
            raise VidinvError(f"the code's distortion must be [B, 3, 256, 256], got {list(D.shape)}")
        initial = self.G.synthesis(w, noise=noise)
        res_align, cond = self.model.consult(D, initial)
        out = synthesis_with_conditions(self.G, w, cond, noise)
        if return_intermediates:
            return out, {"image_initial": initial, "res_align": res_align,
                         "cond_scale": cond[0], "cond_shift": cond[1]}
        return out


def load_hfgi_inverter(checkpoint: str | PathLike | Mapping[str, Any], **kw: Any) -> HFGIInverter:
    """An HFGI inverter from the official checkpoint (path or loaded dict)."""
    return HFGIInverter(load_hfgi(checkpoint), **kw).eval()


def tiny_hfgi_inverter(seed: int = 0) -> HFGIInverter:
    """A tiny random HFGI inverter (64 px generator) for fast pipeline tests."""
    return HFGIInverter(tiny_hfgi(seed)).eval()


register_inverter(InverterEntry(name="hfgi", loader=load_hfgi_inverter, zoo_checkpoint="hfgi_ffhq",
                                tiny=tiny_hfgi_inverter))
