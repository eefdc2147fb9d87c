"""The geometry plan (gather of pass 1): shot cuts, face tracks, the target faces and their align matrices.

Landmarks and crop quads are smoothed over each run of valid frames (never across a shot cut) with
the configured stabilizers, then turned into the 3x3 frame -> crop matrices the later passes use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vidinv.config import PipelineConfig
from vidinv.errors import VidinvError


@dataclass
class Target:
    """One face track to edit: per-frame validity, align matrices and crop-space landmarks."""

    track_id: int
    valid: np.ndarray  # [T] bool
    M: np.ndarray  # [T,3,3] frame -> crop
    lm_crop: np.ndarray  # [T,68,2]
    frames: tuple[int, int] = (0, 0)


def smooth_runs(x: np.ndarray, valid: np.ndarray, cuts: list[int], cfg: dict, inplace: bool = False,
                block_bytes: int = 64 << 20) -> np.ndarray:
    """Apply a stabilizer (``{'method': 'gaussian', 'sigma': 3}`` ...) to each valid run separately.

    Large arrays (feature codes of a long clip, possibly memory-mapped) are filtered a block of
    columns at a time, so the extra memory is about ``block_bytes`` whatever the clip's length.
    """
    from stabilizers import build_stabilizer, valid_runs

    if not cfg or cfg.get("method", "none") == "none":
        return x
    filt = build_stabilizer(dict(cfg))
    out = x if inplace else x.copy()
    T = len(x)
    flat = out.reshape(T, -1)
    cols = max(1, block_bytes // max(1, T * flat.itemsize))
    for a, b in valid_runs(valid, cuts):
        for c in range(0, flat.shape[1], cols):
            flat[a:b, c : c + cols] = np.asarray(filt(np.array(flat[a:b, c : c + cols])))
    return out


def face_mode(face: str) -> str | int:
    """``--face``: ``'largest'``, ``'all'`` or a track id."""
    s = str(face)
    if s in ("largest", "all"):
        return s
    try:
        return int(s)
    except ValueError:
        raise VidinvError(f"--face {face!r}: expected 'largest', 'all' or a track id "
                          "(see `vidinv faces CLIP`)") from None


def detections(analysis: list[dict]) -> tuple[list[list], np.ndarray]:
    """Pass-1 chunk results -> per-frame ``Face`` lists and colour histograms ``[T, D]``."""
    from vidinv.faces.detect import Face

    dets: list[list] = []
    hists = []
    for res in analysis:
        for faces in res["faces"]:
            dets.append([Face(bbox=f["bbox"], score=f["score"], landmarks=f["landmarks"]) for f in faces])
        hists.append(res["hists"])
    return dets, (np.concatenate(hists) if hists else np.zeros((0, 1)))


def target_from_landmarks(track_id: int, lm: np.ndarray, valid: np.ndarray, cuts: list[int],
                          cfg: PipelineConfig, size: int) -> Target:
    """Smoothed landmarks -> FFHQ quads (smoothed) -> align matrices and crop-space landmarks."""
    from vidinv.faces.align import ffhq_quad, quad_to_matrix

    lm = smooth_runs(lm.astype(np.float64), valid, cuts, cfg.stabilize.landmarks)
    quads = smooth_runs(ffhq_quad(lm), valid, cuts, cfg.stabilize.quads)
    M = np.asarray(quad_to_matrix(np.asarray(quads, np.float64), size), np.float64)
    ones = np.ones(lm.shape[:-1] + (1,))
    hom = np.concatenate([lm, ones], -1) @ np.swapaxes(M, -1, -2)
    lm_crop = hom[..., :2] / hom[..., 2:3]
    idx = np.flatnonzero(valid)
    span = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)
    return Target(int(track_id), valid.astype(bool), M.astype(np.float32), lm_crop.astype(np.float32), span)


def plan_geometry(analysis: list[dict], n_frames: int, cfg: PipelineConfig, size: int,
                  refine: Callable | None = None) -> tuple[list[Target], list, list[int]]:
    """Gather of pass 1: cuts, tracks, the selected targets and their smoothed align matrices.

    ``refine(landmarks [n][T,68,2], valid [n][T], cuts) -> landmarks`` is the optional optical-flow pass.
    """
    from vidinv.faces.track import build_tracks, cuts_from_histograms, select_tracks

    dets, hists = detections(analysis)
    cuts = list(cuts_from_histograms(hists, threshold=cfg.faces.cut_threshold)) if len(hists) > 1 else []
    tracks = build_tracks(dets, max_gap=cfg.faces.max_gap, cuts=cuts)
    tracks = [t for t in tracks if len(t.frames) >= min(cfg.faces.min_track_length, n_frames)]
    chosen = select_tracks(tracks, face_mode(cfg.faces.face)) if tracks else []
    arrays = [tr.landmarks_array(n_frames) for tr in chosen]
    if refine is not None and arrays:
        refined = refine([a[0] for a in arrays], [a[1] for a in arrays], cuts)
        arrays = [(r, a[1]) for r, a in zip(refined, arrays)]
    targets = [target_from_landmarks(tr.id, lm, valid, cuts, cfg, size)
               for tr, (lm, valid) in zip(chosen, arrays)]
    return targets, tracks, cuts
