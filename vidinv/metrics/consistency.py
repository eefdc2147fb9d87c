"""Identity consistency over a clip: IC (Feature-Style), TL-ID and TG-ID (STIT), per-frame ID.

Every function takes identity embeddings (one row per frame, numpy or torch, any float
dtype), normalises the rows itself and returns plain Python floats (or a numpy array for
the per-frame ID). A metric that is undefined for the clip (too few frames, a zero
reference) is ``nan``, never an exception; malformed input raises :class:`InputError`.

References:
    * IC: Yao et al., "A Style-Based GAN Encoder for High Fidelity Reconstruction of
      Images and Videos" (Feature-Style encoder, ECCV 2022), eq. (9):
      ``IC = 1/N * sum_{i=1..N} cos(R(x_i), R(x_0))`` with ``R`` a face recognition net
      and ``x_0`` the first frame.
    * TL-ID / TG-ID: Tzaban et al., "Stitch it in Time: GAN-Based Facial Editing of Real
      Videos" (STIT, SIGGRAPH Asia 2022), evaluation section: TL-ID scores the identity
      similarity of adjacent frames, TG-ID of all pairs of frames (not necessarily
      adjacent); both are divided by the same score of the source video, so 1 means "as
      consistent as the original". By default each pair's edited similarity is divided by the
      same pair's source similarity and the ratios are averaged (``mode='mean_of_ratios'``);
      ``mode='ratio_of_means'`` divides the mean edited similarity by the mean source one.
      :func:`temporal_identity` returns both scores with the mode that produced them.
"""

from __future__ import annotations

import math
from typing import Literal, Union

import numpy as np

from vidinv.errors import InputError

ArrayLike = Union[np.ndarray, "torch.Tensor"]  # noqa: F821
Mode = Literal["mean_of_ratios", "ratio_of_means"]
MODES: tuple[str, ...] = ("mean_of_ratios", "ratio_of_means")
DEFAULT_MODE: Mode = "mean_of_ratios"

__all__ = ["as_unit_rows", "identity_consistency", "tl_id", "tg_id", "temporal_identity", "pairwise_id",
           "similarity_matrix", "MODES", "DEFAULT_MODE"]


def as_unit_rows(emb: ArrayLike, name: str = "emb") -> np.ndarray:
    """Embeddings as float64 numpy rows of unit length.

    Args:
        emb: ``[N, D]`` embeddings (numpy array or torch tensor, any float dtype).
        name: the argument's name for error messages.

    Returns:
        ``[N, D]`` float64 array; a zero row stays zero (its cosines are 0).

    Raises:
        InputError: ``emb`` is not 2-D, or holds NaN/inf.

    Shape:
        - emb: ``[N, D]`` -> ``[N, D]``.
    """
    if hasattr(emb, "detach"):
        emb = emb.detach().cpu().numpy()
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{name} must be [N, D] embeddings, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise InputError(f"{name} holds NaN or inf values")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def similarity_matrix(emb: ArrayLike) -> np.ndarray:
    """Cosine similarity of every pair of rows.

    Shape:
        - emb: ``[N, D]`` -> ``[N, N]``.
    """
    e = as_unit_rows(emb)
    return e @ e.T


def identity_consistency(emb: ArrayLike) -> float:
    """Identity Consistency (IC), Feature-Style encoder paper eq. (9).

    ``IC = 1/N * sum_{i=1..N} cos(R(x_i), R(x_0))``: the mean cosine similarity of every
    frame's embedding to the first frame's. Identical frames give 1.

    Args:
        emb: ``[N+1, D]`` embeddings of frames ``x_0 .. x_N`` (rows need not be unit).

    Returns:
        IC as a float; ``nan`` for a single frame (N = 0: no pair to compare).

    Raises:
        InputError: no frame at all, or malformed input.

    Shape:
        - emb: ``[N+1, D]``.
    """
    e = as_unit_rows(emb)
    if e.shape[0] == 0:
        raise InputError("identity_consistency needs at least one frame embedding, got 0")
    if e.shape[0] == 1:
        return math.nan
    return float((e[1:] @ e[0]).mean())


def _pair_scores(emb: ArrayLike, which: str) -> np.ndarray:
    sim = similarity_matrix(emb)
    n = sim.shape[0]
    if which == "local":
        return np.diagonal(sim, offset=1)  # cos(x_i, x_{i+1}), [N-1]
    iu = np.triu_indices(n, k=1)  # each unordered pair once; the matrix is symmetric
    return sim[iu]


def _normalised(emb: ArrayLike, src_emb: ArrayLike, which: str, mode: Mode) -> float:
    e, s = as_unit_rows(emb, "emb"), as_unit_rows(src_emb, "src_emb")
    if e.shape[0] != s.shape[0]:
        raise InputError(f"emb and src_emb must have one row per frame each, "
                         f"got {e.shape[0]} and {s.shape[0]}")
    if mode not in MODES:
        raise InputError(f"mode must be 'mean_of_ratios' or 'ratio_of_means', got {mode!r}")
    if e.shape[0] < 2:
        return math.nan
    a, b = _pair_scores(e, which), _pair_scores(s, which)
    if mode == "mean_of_ratios":  # a (numerically) zero source pair has nothing to normalise by
        return float((a / b).mean()) if (np.abs(b) > 1e-12).all() else math.nan
    den = b.mean()
    return float(a.mean() / den) if abs(den) > 1e-12 else math.nan


def tl_id(emb: ArrayLike, src_emb: ArrayLike, mode: Mode = DEFAULT_MODE) -> float:
    """Temporally-local identity preservation (TL-ID), as defined by STIT (Tzaban et al. 2022).

    STIT scores the identity similarity between pairs of *adjacent* frames with a face
    recognition network and normalises it by the same score on the source video. 1 means the
    edited clip is exactly as locally consistent as the source; lower means flicker of identity.

    Args:
        emb: ``[T, D]`` embeddings of the edited / inverted frames.
        src_emb: ``[T, D]`` embeddings of the same frames of the source clip.
        mode: ``'mean_of_ratios'`` (default): ``mean_i [cos(e_i, e_{i+1}) / cos(s_i, s_{i+1})]``,
            each adjacent pair normalised by the same pair of the source; or
            ``'ratio_of_means'``: ``mean_i cos(e_i, e_{i+1}) / mean_i cos(s_i, s_{i+1})``.

    Returns:
        TL-ID as a float; ``nan`` with fewer than 2 frames or a zero source score (any zero
        source pair in ``'mean_of_ratios'``).

    Shape:
        - emb, src_emb: ``[T, D]``.
    """
    return _normalised(emb, src_emb, "local", mode)


def tg_id(emb: ArrayLike, src_emb: ArrayLike, mode: Mode = DEFAULT_MODE) -> float:
    """Temporally-global identity preservation (TG-ID), as defined by STIT (Tzaban et al. 2022).

    Like :func:`tl_id` but over *all* pairs of distinct frames ``i < j``, not only adjacent
    ones: ``mean_{i<j} [cos(e_i, e_j) / cos(s_i, s_j)]`` (default) or
    ``mean_{i<j} cos(e_i, e_j) / mean_{i<j} cos(s_i, s_j)`` (``'ratio_of_means'``).

    Args:
        emb: ``[T, D]`` embeddings of the edited / inverted frames.
        src_emb: ``[T, D]`` embeddings of the source frames.
        mode: see :func:`tl_id`.

    Returns:
        TG-ID as a float; ``nan`` with fewer than 2 frames or a zero source score.

    Shape:
        - emb, src_emb: ``[T, D]``.
    """
    return _normalised(emb, src_emb, "global", mode)


def temporal_identity(emb: ArrayLike, src_emb: ArrayLike,
                      mode: Mode = DEFAULT_MODE) -> dict[str, float | str]:
    """TL-ID and TG-ID of one clip, named with the mode that produced them.

    Returns:
        ``{'tl_id': float, 'tg_id': float, 'mode': mode}``.

    Shape:
        - emb, src_emb: ``[T, D]``.
    """
    return {"tl_id": tl_id(emb, src_emb, mode), "tg_id": tg_id(emb, src_emb, mode), "mode": mode}


def pairwise_id(emb_a: ArrayLike, emb_b: ArrayLike) -> np.ndarray:
    """Per-frame identity similarity: ``cos(a_t, b_t)`` for every frame ``t``.

    Typically the source crop against its inversion (the "ID" column of the reports).

    Args:
        emb_a: ``[T, D]`` embeddings.
        emb_b: ``[T, D]`` embeddings of the matching frames.

    Returns:
        ``[T]`` float64 array of cosines.

    Raises:
        InputError: mismatched shapes.

    Shape:
        - emb_a, emb_b: ``[T, D]`` -> ``[T]``.
    """
    a, b = as_unit_rows(emb_a, "emb_a"), as_unit_rows(emb_b, "emb_b")
    if a.shape != b.shape:
        raise InputError(f"emb_a and emb_b must have the same shape, got {a.shape} and {b.shape}")
    return (a * b).sum(axis=1)
