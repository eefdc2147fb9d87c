"""Splitting a clip's time axis at shot cuts: shot bounds, and runs of valid frames within shots.

The one place that turns ``(T or valid mask, cut indices)`` into half-open ``(start, stop)`` ranges;
the filters, the pipeline's per-run smoothing and the flow refiner all go through it.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from vidinv.errors import InputError

Segments = Union[Sequence[int], np.ndarray, None]


def segment_bounds(T: int, segments: Segments) -> list[tuple[int, int]]:
    """Split ``range(T)`` at shot cuts (strict: cut indices must lie in ``[0, T]``).

    Args:
        T: number of frames.
        segments: cut indices (frame ``c`` starts a new shot), any order; 0 and T are allowed
            and ignored; None or empty means one segment.

    Returns:
        Half-open ``(start, stop)`` pairs covering ``[0, T)``.
    """
    if segments is None:
        return [(0, T)]
    cuts = np.asarray(list(segments) if not isinstance(segments, np.ndarray) else segments)
    if cuts.size and (cuts.ndim != 1 or not np.issubdtype(cuts.dtype, np.integer)):
        raise InputError(f"segments must be a 1-D list of integer cut indices, got {cuts.tolist()!r}")
    if cuts.size and (cuts.min() < 0 or cuts.max() > T):
        raise InputError(f"segment cut indices must lie in [0, {T}] (T={T}), got {sorted(cuts.tolist())}")
    edges = sorted({0, T, *(int(c) for c in cuts)})
    return list(zip(edges[:-1], edges[1:]))


def valid_runs(valid: np.ndarray | Sequence[bool], cuts: Segments = None) -> list[tuple[int, int]]:
    """Maximal half-open ``[a, b)`` runs of valid frames that cross no shot cut.

    Cut indices outside ``(0, T)`` split nothing and are ignored.

    Shape:
        - valid: ``[T]`` bool. Output: runs in time order.
    """
    v = np.asarray(valid, bool).reshape(-1)
    T = len(v)
    inner = [int(c) for c in (cuts if cuts is not None else []) if 0 < int(c) < T]
    runs = []
    for a, b in segment_bounds(T, inner):
        edges = np.diff(np.concatenate([[0], v[a:b].astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs += [(a + int(s), a + int(e)) for s, e in zip(starts, stops)]
    return runs
