"""Edits over time: the per-frame edit delta of a clip's W+ codes, and one frame's render inputs.

Pure functions of their arguments (no hidden state): the pipeline resolves the edit directions once
into an :class:`EditPlan`, then computes ``delta[t] = edited(w[t]) - w[t]`` a block of frames at a time
with :func:`edit_deltas`; the renderer gets ``w[t] + delta[t]`` through :func:`frame_code`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class EditPlan:
    """Resolved edits of a run: directions with their strengths, the kept (conditioning) directions,
    and the generator's number of W+ layers (to lift W codes to W+)."""

    directions: list = field(default_factory=list)  # [Direction]
    strengths: list[float] = field(default_factory=list)
    conditioning: list = field(default_factory=list)  # [Direction]
    n_latent: int = 0

    def __bool__(self) -> bool:
        return bool(self.directions)


def as_wplus(w: np.ndarray, n_latent: int) -> np.ndarray:
    """A W code ``[B, sd]`` repeated to W+ ``[B, L, sd]``; W+ returned as is."""
    return np.repeat(w[:, None], n_latent, axis=1) if w.ndim == 2 else w


def edit_deltas(w: np.ndarray, directions: Sequence[Any], strengths: Sequence[Any],
                conditioning: Sequence[Any] | None = None) -> np.ndarray:
    """``apply_edits(w) - w`` for a block of frames.

    Args:
        w: W+ codes of the frames.
        directions: ``Direction`` objects.
        strengths: one per direction, a float or a ``[B]`` array (e.g. a schedule over the frames).
        conditioning: directions every edit is made orthogonal to (InterFaceGAN conditioning).

    Shape:
        - w: ``[B, L, sd]``. Output: ``[B, L, sd]`` float32.
    """
    import torch

    from vidinv.editing.directions import apply_edits

    wt = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    edits = [(d, torch.as_tensor(s, dtype=torch.float32)) for d, s in zip(directions, strengths)]
    return (apply_edits(wt, edits, list(conditioning) if conditioning else None) - wt).numpy()


def frame_code(target_codes: tuple, t: int) -> dict:
    """One frame's job fields from ``(code, delta)``: ``{'code': {...}, 'w_edit': w + delta or None}``."""
    code, delta = target_codes
    c = {k: np.array(v[t]) for k, v in code.items()}
    if delta is None:
        return {"code": c, "w_edit": None}
    w_edit = (as_wplus(c["w"][None], delta.shape[1])[0] + delta[t]).astype(np.float32)
    return {"code": c, "w_edit": w_edit}
