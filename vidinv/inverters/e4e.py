"""e4e (Encoder4Editing, Tov et al. 2021) as an :class:`~vidinv.inverters.base.Inverter`.

Loads the official ``e4e_ffhq_encode.pt`` layout strictly; inversion = ``encoder(x) + latent_avg``
rendered with G's stored noise (the official ``randomize_noise=False``); editing = W+ offsets
(the official InterFaceGAN ``LatentEditor``; :func:`vidinv.editing.directions.apply_edits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

from vidinv.inverters.psp import PSPInverter
from vidinv.inverters.registry import InverterEntry, register_inverter
from vidinv.models.psp import PSPCheckpoint, load_psp_checkpoint, tiny_e4e

__all__ = ["E4EInverter", "load_e4e_inverter", "tiny_e4e_inverter"]


class E4EInverter(PSPInverter):
    """e4e: ``{'w': [B, L, sd]}`` codes; see :class:`~vidinv.inverters.psp.PSPInverter`."""

    def __init__(self, model: PSPCheckpoint, name: str = "e4e") -> None:
        super().__init__(model, name)


def load_e4e_inverter(checkpoint: str | PathLike | Mapping[str, Any], **kw: Any) -> E4EInverter:
    """An e4e inverter from an official checkpoint (path or loaded dict).

    As the official ``scripts/inference.py``: the encoder is Encoder4Editing and ``latent_avg`` is always added.
    """
    return E4EInverter(load_psp_checkpoint(checkpoint, "Encoder4Editing", use_latent_avg=True), **kw).eval()


def tiny_e4e_inverter(seed: int = 0) -> E4EInverter:
    """A tiny random e4e inverter (64 px generator) for fast pipeline tests."""
    return E4EInverter(tiny_e4e(seed)).eval()


register_inverter(InverterEntry(name="e4e", loader=load_e4e_inverter, zoo_checkpoint="e4e_ffhq_encode",
                                tiny=tiny_e4e_inverter))
