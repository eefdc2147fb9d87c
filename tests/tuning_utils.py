"""A shared real clip for the tuning tests: 16 frames of retalking_face1.mp4, dlib landmarks, 64 px crops."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

CLIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "media" / "videos" / "retalking_face1.mp4"
N_FRAMES = 16
SIZE = 64


@lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    from vidinv.faces.align import align_faces, ffhq_quad, quad_to_matrix, transform_points
    from vidinv.faces.detect import DlibDetector, dlib_model_dir
    from vidinv.io.video import VideoReader

    if not CLIP.is_file() or dlib_model_dir() is None:
        pytest.skip("the shared clip or dlib's landmark model is missing")
    frames = VideoReader(CLIP).read_range(0, N_FRAMES).frames  # [T, H, W, 3] uint8
    faces = DlibDetector(upsample=0, max_side=350).detect(frames)
    assert all(len(f) >= 1 for f in faces), "dlib found no face in some frame of the shared clip"
    lm = np.stack([max(f, key=lambda x: x.area).landmarks for f in faces]).astype(np.float64)  # [T, 68, 2]
    M = torch.from_numpy(quad_to_matrix(ffhq_quad(lm), SIZE))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    crops = align_faces(x, M, SIZE).clamp(-1, 1)
    lm_crop = torch.from_numpy(transform_points(lm, M.numpy())).float()
    return crops.contiguous(), lm_crop


def clip_crops() -> tuple[torch.Tensor, torch.Tensor]:
    """``(crops [16, 3, 64, 64] in [-1, 1], crop-pixel landmarks [16, 68, 2])``, computed once per session."""
    crops, lm = _load()
    return crops.clone(), lm.clone()
