"""The Feature-Style edit: move the feature code F with the change the edit makes at layer K.

Eq. (1) of Yao et al.: ``F~ = F + G^K(w~) - G^K(w)``, then the image is ``G(w~, F~)`` with
F~ replacing feature K. ``w_edit=None`` renders the plain inversion ``G(w, F)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vidinv.errors import VidinvError


def feature_edit(G, w: Tensor, F: Tensor, w_edit: Tensor | None = None, noise: Sequence[Tensor] | None = None,
                 k: int = 5, feature_scale: float = 1.0) -> Tensor:
    """Render an edited (or inverted) face from its W+ code and feature code.

    G^K(w) and G^K(w~) come from one batched ``G.features_at`` call (the two halves of a
    ``[2B, ...]`` batch), then ``G(w~, F~)`` resumes from layer k of the w~ half
    (``G.synthesis_from``; equal to ``G.synthesis(w~, noise, feature_in=F~, feature_idx=k)``).

    Args:
        G: a ``vidinv.models.stylegan2.Generator``.
        w: the inverted W+ codes (latent_avg included).
        F: the inverted feature codes at layer ``k``.
        w_edit: the edited codes ``w~``; None renders the inversion ``G(w, F)``.
        noise: ``G.num_layers`` noise maps (batch-1 entries broadcast); None = G's stored noise buffers.
        k: the feature layer (5 = the 16x16 feature for every size).
        feature_scale: blend of the replaced feature (1 = replace).

    Returns:
        The images in [-1, 1] (unclamped).

    Shape:
        w, w_edit ``[B, L, sd]``; F ``[B, C_k, r, r]`` (``[B, C16, 16, 16]`` for k=5) -> ``[B, 3, S, S]``.
    """
    if w.ndim != 3 or tuple(w.shape[1:]) != (G.n_latent, G.style_dim):
        raise VidinvError(f"w must be [B, {G.n_latent}, {G.style_dim}], got {list(w.shape)}")
    B = w.shape[0]
    if F.ndim != 4 or F.shape[0] != B:
        raise VidinvError(f"F must be [{B}, C, r, r] (one feature code per w), got {list(F.shape)}")
    if w_edit is None:
        return G.synthesis(w, noise, feature_in=F, feature_idx=k, feature_scale=feature_scale)
    if w_edit.shape != w.shape:
        raise VidinvError(f"w_edit must have the shape of w {list(w.shape)}, got {list(w_edit.shape)}")
    if feature_scale == 0:  # the blend keeps G's own feature k: F and G^K(w) play no part
        return G.synthesis(w_edit, noise)
    noise2 = None if noise is None else [n if n is None or n.shape[0] == 1 else torch.cat([n, n]) for n in noise]
    # [2B, C, r, r]: G^K(w) ; G^K(w~), and the RGB skip through layer k (only the w~ half is used)
    g, skip = G.features_at(torch.cat([w, w_edit]), k, noise=noise2, return_skip=True)
    if g.shape[1:] != F.shape[1:]:
        raise VidinvError(f"F must be [B, {g.shape[1]}, {g.shape[2]}, {g.shape[3]}] for layer k={k}, got {list(F.shape)}")
    F_edit = F + (g[B:] - g[:B]).to(F.dtype)
    # G(w~, F~) resumes at layer k (layers 0..k-1 of w~ ran above) after the official insert_feature blend
    x = (1 - feature_scale) * g[B:] + feature_scale * F_edit.to(g.dtype)
    return G.synthesis_from(k, x, skip[B:], w_edit, noise)
