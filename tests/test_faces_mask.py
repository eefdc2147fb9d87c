"""Landmark-hull and parsing masks, feathering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.faces.mask import FACE_CLASSES, PARSING_LABELS, feather, landmark_hull_mask, parsing_mask


def face_landmarks(S=128):
    """A plausible 68-point layout in a crop of side S: jaw arc (chin = 8), brows above the eyes."""
    rng = np.random.default_rng(0)
    c = S / 2
    th = np.linspace(0, np.pi, 17)
    lm = np.zeros((68, 2))
    lm[0:17] = np.stack([c - 0.3 * S * np.cos(th), 0.45 * S + 0.4 * S * np.sin(th)], -1)  # chin at y = 0.85 S
    lm[17:27] = np.stack([np.linspace(0.25 * S, 0.75 * S, 10), np.full(10, 0.35 * S)], -1)
    lm[27:68] = rng.uniform([0.35 * S, 0.4 * S], [0.65 * S, 0.75 * S], (41, 2))
    return lm


def test_cardinality_and_range():
    lm = torch.from_numpy(np.stack([face_landmarks(), face_landmarks() + 5])).float()
    m = landmark_hull_mask(lm, 128)
    assert m.shape == (2, 1, 128, 128) and m.dtype == torch.float32
    assert m.min() >= 0 and m.max() <= 1
    assert m[:, :, 70, 64].min() > 0.99  # face centre
    assert m[:, :, :4, :4].max() == 0 and m[:, :, -4:, :].max() < 0.01  # corners, below the chin


def test_forehead_included_and_feather_soft():
    S = 128
    lm = torch.from_numpy(face_landmarks(S))[None].float()
    sharp = landmark_hull_mask(lm, S, dilate=0.0, feather=0.0, forehead=0.4)
    # brows at y=0.35 S, chin at 0.85 S: the forehead reaches 0.35 S - 0.4 * 0.5 S = 0.15 S
    assert sharp[0, 0, int(0.2 * S), S // 2] == 1
    assert sharp[0, 0, int(0.1 * S), S // 2] == 0
    no_fh = landmark_hull_mask(lm, S, dilate=0.0, feather=0.0, forehead=0.0)
    assert no_fh[0, 0, int(0.25 * S), S // 2] == 0
    soft = landmark_hull_mask(lm, S, dilate=0.0, feather=0.08)
    edge = soft[0, 0, int(0.15 * S) - 3 : int(0.15 * S) + 4, S // 2]
    assert ((edge > 0.02) & (edge < 0.98)).all()
    grown = landmark_hull_mask(lm, S, dilate=0.05, feather=0.0)
    assert grown.sum() > sharp.sum() and (grown >= sharp - 1e-6).all()


def test_numpy_input_and_exceptions():
    m = landmark_hull_mask(face_landmarks()[None], 64 * 2)
    assert m.shape == (1, 1, 128, 128)
    with pytest.raises(VidinvError):
        landmark_hull_mask(torch.zeros(1, 5, 2), 64)
    with pytest.raises(VidinvError):
        landmark_hull_mask(torch.zeros(1, 68, 2), 0)


def test_parsing_mask():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (2, 20, 30))
    m = parsing_mask(torch.from_numpy(labels))
    assert m.shape == (2, 1, 20, 30) and m.dtype == torch.float32
    np.testing.assert_array_equal(m[:, 0].numpy(), np.isin(labels, [1, 2, 3, 4, 5, 6, 10, 11, 12, 13]))
    assert set(FACE_CLASSES) == {PARSING_LABELS.index(n) for n in
                                 ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip")}
    hair = parsing_mask(torch.from_numpy(labels), classes=[17])
    np.testing.assert_array_equal(hair[:, 0].numpy(), labels == 17)
    logits = torch.nn.functional.one_hot(torch.from_numpy(labels), 19).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(parsing_mask(logits), m)
    with pytest.raises(VidinvError):
        parsing_mask(torch.zeros(2, 4, 4))  # float labels
    with pytest.raises(VidinvError):
        parsing_mask(torch.from_numpy(labels), classes=[19])


def test_feather():
    m = torch.zeros(1, 1, 64, 64)
    m[..., 16:48, 16:48] = 1
    assert feather(m, 0) is m
    f = feather(m, 6)
    assert f.shape == m.shape and f.min() >= 0 and f.max() <= 1
    assert f[0, 0, 32, 32] > 0.99 and f[0, 0, 2, 2] < 1e-3
    assert 0.3 < f[0, 0, 32, 16] < 0.7  # the edge sits at ~0.5
    assert abs(f.sum() - m.sum()) / m.sum() < 0.01  # blur conserves mass away from the borders
    with pytest.raises(VidinvError):
        feather(m, -1)
