"""IC (Feature-Style eq. 9), TL-ID / TG-ID (STIT) and per-frame ID on embeddings with prescribed angles."""

import math

import numpy as np
import pytest
import torch

from vidinv.errors import InputError
from vidinv.metrics.consistency import (identity_consistency, pairwise_id, similarity_matrix,
                                       temporal_identity, tg_id, tl_id)


def angled(thetas, dim=16, seed=0, scale=True):
    """Rows cos(t) q0 + sin(t) q1 in a random plane of R^dim, so cos(row_i, row_j) = cos(t_i - t_j)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    t = np.asarray(thetas, dtype=np.float64)[:, None]
    rows = np.cos(t) * q[:, 0] + np.sin(t) * q[:, 1]
    if scale:  # rows need not be unit: the metrics normalise
        rows = rows * rng.uniform(0.5, 3.0, size=(len(thetas), 1))
    return rows


EDIT = [0.0, 0.3, 0.1, 0.5, 0.45]
SRC = [0.0, 0.1, 0.15, 0.2, 0.1]


def test_smoke_identical_frames_give_one():
    e = np.tile(np.random.default_rng(1).normal(size=(1, 32)), (6, 1)) * np.arange(1, 7)[:, None]
    assert identity_consistency(e) == pytest.approx(1.0, abs=1e-12)
    assert tl_id(e, e) == pytest.approx(1.0, abs=1e-12)
    assert tg_id(e, e) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(pairwise_id(e, e), np.ones(6), atol=1e-12)


def test_feature_ic_exact():
    want = np.mean([math.cos(t - EDIT[0]) for t in EDIT[1:]])
    assert identity_consistency(angled(EDIT)) == pytest.approx(want, abs=1e-12)
    # IC of orthogonal frames is 0, of opposite frames -1
    assert identity_consistency(angled([0.0, math.pi / 2])) == pytest.approx(0.0, abs=1e-12)
    assert identity_consistency(angled([0.0, math.pi])) == pytest.approx(-1.0, abs=1e-12)


def adj(th):
    return [math.cos(th[i + 1] - th[i]) for i in range(len(th) - 1)]


def allp(th):
    return [math.cos(th[j] - th[i]) for i in range(len(th)) for j in range(i + 1, len(th))]


def test_feature_tl_tg_exact_both_modes():
    e, s = angled(EDIT, seed=2), angled(SRC, seed=3)  # different planes: only angles matter
    # default: the mean of per-pair ratios (adjacent pairs for TL-ID, all pairs i<j for TG-ID)
    want_tl = np.mean(np.array(adj(EDIT)) / np.array(adj(SRC)))
    want_tg = np.mean(np.array(allp(EDIT)) / np.array(allp(SRC)))
    assert tl_id(e, s) == pytest.approx(want_tl, abs=1e-12)
    assert tg_id(e, s) == pytest.approx(want_tg, abs=1e-12)
    assert tl_id(e, s, mode="mean_of_ratios") == tl_id(e, s)
    # the option: the ratio of the means
    rom_tl, rom_tg = np.mean(adj(EDIT)) / np.mean(adj(SRC)), np.mean(allp(EDIT)) / np.mean(allp(SRC))
    assert tl_id(e, s, mode="ratio_of_means") == pytest.approx(rom_tl, abs=1e-12)
    assert tg_id(e, s, mode="ratio_of_means") == pytest.approx(rom_tg, abs=1e-12)
    # a less consistent edit than its source scores below 1 in both modes
    for mode in ("mean_of_ratios", "ratio_of_means"):
        assert tl_id(e, s, mode=mode) < 1.0 and tg_id(e, s, mode=mode) < 1.0


def test_feature_modes_differ_by_hand():
    """Three frames, angles chosen so the two modes give visibly different, hand-checkable values.

    Source pairs (adjacent): cos(0.2), cos(1.2); edited: cos(0.6), cos(0.6).
    mean_of_ratios = (cos .6/cos .2 + cos .6/cos 1.2) / 2; ratio_of_means = cos .6 / ((cos .2 + cos 1.2) / 2).
    """
    e, s = angled([0.0, 0.6, 1.2], seed=5), angled([0.0, 0.2, 1.4], seed=6)
    c = math.cos
    mor = (c(0.6) / c(0.2) + c(0.6) / c(1.2)) / 2
    rom = c(0.6) / ((c(0.2) + c(1.2)) / 2)
    assert tl_id(e, s) == pytest.approx(mor, abs=1e-12)
    assert tl_id(e, s, "ratio_of_means") == pytest.approx(rom, abs=1e-12)
    assert abs(mor - rom) > 0.1
    # TG-ID adds the pair (0, 2): source cos(1.4), edited cos(1.2)
    mor_g = (c(0.6) / c(0.2) + c(1.2) / c(1.4) + c(0.6) / c(1.2)) / 3
    rom_g = (2 * c(0.6) + c(1.2)) / (c(0.2) + c(1.4) + c(1.2))
    assert tg_id(e, s) == pytest.approx(mor_g, abs=1e-12)
    assert tg_id(e, s, "ratio_of_means") == pytest.approx(rom_g, abs=1e-12)


def test_feature_temporal_identity_names_the_mode():
    e, s = angled(EDIT, seed=2), angled(SRC, seed=3)
    r = temporal_identity(e, s)
    assert r == {"tl_id": tl_id(e, s), "tg_id": tg_id(e, s), "mode": "mean_of_ratios"}
    r = temporal_identity(e, s, mode="ratio_of_means")
    assert r["mode"] == "ratio_of_means" and r["tg_id"] == tg_id(e, s, mode="ratio_of_means")


def test_feature_pairwise_and_matrix():
    a, b = angled([0.0, 0.2, 1.0], seed=4), angled([0.5, 0.2, 0.0], seed=4)
    np.testing.assert_allclose(pairwise_id(a, b), np.cos([0.5, 0.0, 1.0]), atol=1e-12)
    m = similarity_matrix(a)
    np.testing.assert_allclose(m, np.cos(np.subtract.outer([0.0, 0.2, 1.0], [0.0, 0.2, 1.0])), atol=1e-12)


def test_torch_input_and_float32():
    e = torch.from_numpy(angled(EDIT)).float()
    s = torch.from_numpy(angled(SRC)).float()
    assert identity_consistency(e) == pytest.approx(identity_consistency(e.double().numpy()), abs=1e-6)
    assert isinstance(tl_id(e, s), float) and isinstance(tg_id(e, s), float)


def test_cardinality_short_clips():
    one = angled([0.3])
    assert math.isnan(identity_consistency(one))  # N = 0: no pair
    assert math.isnan(tl_id(one, one)) and math.isnan(tg_id(one, one))
    two = angled([0.0, 0.4])
    assert identity_consistency(two) == pytest.approx(math.cos(0.4), abs=1e-12)
    assert tg_id(two, two) == pytest.approx(1.0) and tl_id(two, two) == pytest.approx(1.0)
    assert pairwise_id(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)
    # a source whose frames are orthogonal has no similarity to normalise by (either mode)
    assert math.isnan(tl_id(two, angled([0.0, math.pi / 2])))
    assert math.isnan(tl_id(two, angled([0.0, math.pi / 2]), mode="ratio_of_means"))


def test_exception():
    with pytest.raises(InputError, match="at least one"):
        identity_consistency(np.zeros((0, 8)))
    with pytest.raises(InputError, match=r"\[N, D\]"):
        identity_consistency(np.ones(8))
    with pytest.raises(InputError, match="NaN"):
        identity_consistency(np.array([[1.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(InputError, match="one row per frame"):
        tl_id(angled([0, 1, 2]), angled([0, 1]))
    with pytest.raises(InputError, match="same shape"):
        pairwise_id(angled([0, 1]), angled([0, 1], dim=8))
    with pytest.raises(InputError, match="mode"):
        tg_id(angled([0, 1]), angled([0, 1]), mode="bogus")
