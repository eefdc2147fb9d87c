"""The Feature-Style encoder behind the common inverter interface (the default, ``--inverter fs``).

Code: ``{'w': [B,L,sd] (latent_avg included), 'F': [B,C,16,16]}``. Rendering with an edit is
eq. (1) of the paper, ``F~ = F + G^K(w~) - G^K(w)`` then ``G(w~, F~)`` (:func:`feature_edit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn

from vidinv.inverters.base import Code, check_code, check_images
from vidinv.inverters.registry import InverterEntry, register_inverter


class FSAdapter(nn.Module):
    """``FSInverter`` (encoder + latent_avg) and the generator it inverts into, as one :class:`Inverter`."""

    name = "fs"

    def __init__(self, generator: nn.Module, inverter: nn.Module, k: int = 5, feature_scale: float = 1.0) -> None:
        super().__init__()
        self.generator, self.inverter = generator, inverter
        self.k, self.feature_scale = int(k), float(feature_scale)

    @property
    def size(self) -> int:
        return int(self.generator.size)

    @property
    def n_latent(self) -> int:
        return int(self.generator.n_latent)

    @property
    def style_dim(self) -> int:
        return int(self.generator.style_dim)

    @torch.no_grad()
    def invert(self, x: Tensor) -> Code:
        """Shape: x ``[B,3,S,S]`` in [-1,1] -> ``{'w': [B,L,sd], 'F': [B,C,16,16]}``."""
        check_images(x, "fs.invert")
        w, F = self.inverter(x)
        return {"w": w, "F": F}

    @torch.no_grad()
    def render(self, code: Code, w_edit: Tensor | None = None, noise: list | None = None) -> Tensor:
        """Shape: -> ``[B,3,S,S]``; ``w_edit`` None renders the inversion ``G(w, F)``."""
        from vidinv.editing.feature_edit import feature_edit

        check_code(code, ("w", "F"), "fs code")
        return feature_edit(self.generator, code["w"], code["F"], w_edit, noise, k=self.k,
                            feature_scale=self.feature_scale)


def load_fs_adapter(encoder: str | PathLike | Mapping[str, Any], generator: Any = None, k: int = 5,
                    feature_scale: float = 1.0, allow_pickle: bool = False) -> FSAdapter:
    """From the official ``143_enc.pth`` and a generator checkpoint (pSp or rosinality layout).

    ``latent_avg`` comes from the generator checkpoint, else ``G.mean_latent(4096)``.
    """
    from vidinv.errors import VidinvError
    from vidinv.models.checkpoint import safe_load
    from vidinv.models.fs_encoder import FSInverter, load_fs_encoder
    from vidinv.models.stylegan2 import Generator, load_generator

    if generator is None:
        raise VidinvError("the fs inverter needs generator=<checkpoint> (pSp or rosinality layout)")
    if isinstance(generator, Generator):
        G, latent_avg = generator, None
    else:
        given = isinstance(generator, Mapping)  # a caller's dict is copied; a file read here is taken as is
        src = generator if given else safe_load(generator, allow_pickle=allow_pickle)
        G, latent_avg = load_generator(src, copy=given)
    given = isinstance(encoder, Mapping)
    enc_src = encoder if given else safe_load(encoder, allow_pickle=allow_pickle)
    enc = load_fs_encoder(enc_src, copy=given)
    if latent_avg is None:
        with torch.no_grad():
            latent_avg = G.mean_latent(4096)[0]
    return FSAdapter(G.eval(), FSInverter(enc, latent_avg).eval(), k=k, feature_scale=feature_scale)


def tiny_fs_inverter(seed: int = 0, k: int = 5, feature_scale: float = 1.0) -> FSAdapter:
    """The tiny generator and narrow encoder of :mod:`vidinv.models.tiny`, as an inverter."""
    from vidinv.models.tiny import tiny_generator, tiny_inverter

    G = tiny_generator(seed)
    return FSAdapter(G, tiny_inverter(seed, generator=G), k=k, feature_scale=feature_scale)


register_inverter(InverterEntry(
    name="fs", loader=load_fs_adapter, zoo_checkpoint="fs_encoder_143", needs_generator=True,
    zoo_generator="psp_ffhq_encode", tiny=tiny_fs_inverter,
    options={"generator": "generator", "k": "feature_layer", "feature_scale": "feature_scale",
             "allow_pickle": "allow_pickle"},
))
