"""The Python API in a few lines: invert an aligned face, edit it, and edit a whole clip.

Runs with tiny random-weight models (no download) so it works anywhere; swap
``'tiny'`` for the zoo's checkpoints (the default) or your own files for real results.

    python examples/make_demo_clip.py demo.mp4
    python examples/python_api.py demo.mp4
"""

from __future__ import annotations

import sys

import torch

from pipelines.edit import EditPipeline
from vidinv.config import load_config
from vidinv.editing.feature_edit import feature_edit
from vidinv.models.tiny import tiny_generator, tiny_inverter


def single_image() -> None:
    G = tiny_generator()  # real use: G, latent_avg = load_generator(safe_load("psp_ffhq_encode.pt"))
    E = tiny_inverter(generator=G)  # real use: FSInverter(load_fs_encoder(safe_load("143_enc.pth")), latent_avg)
    x = torch.rand(1, 3, G.size, G.size) * 2 - 1  # an aligned face crop in [-1, 1]
    noise = G.make_noise(batch=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w, F = E(x)  # W+ latent [1, L, sd] (latent_avg included) and feature code [1, C, 16, 16]
        d = torch.randn(1, G.n_latent, G.style_dim)
        d = d / d.norm()
        inversion = feature_edit(G, w, F, None, noise)  # G(w, F)
        edited = feature_edit(G, w, F, w + 3.0 * d, noise)  # F~ = F + G^K(w~) - G^K(w), then G(w~, F~)
    print("inversion", tuple(inversion.shape), "edit", tuple(edited.shape))


def whole_clip(path: str) -> None:
    cfg = load_config(overrides={"models": {"generator": "tiny", "encoder": "tiny"},
                                 "execution": {"executor": "local"}})
    result = EditPipeline(cfg)(path, None, [("sefa:0", 1.0)])
    print(f"{result.output}: {result.n_frames} frames, {result.faces_edited} faces edited")


if __name__ == "__main__":
    single_image()
    if len(sys.argv) > 1:
        whole_clip(sys.argv[1])
