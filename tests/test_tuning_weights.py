"""Tuned weights as data: only changed parameters, plain-dict files, bit-exact re-edits after reload."""

from __future__ import annotations

import pytest
import torch

from vidinv.errors import InputError, VidinvError
from vidinv.inverters.fs import tiny_fs_inverter
from vidinv.tuning import (StitchConfig, TunedWeights, TuneConfig, generator_of, load_weights, pivotal_tune,
                           render_tuned, save_weights, stitch_tune, weights_for_frame, weights_from_state,
                           weights_to_state)
from vidinv.tuning.core import snapshot
from vidinv.tuning.weights import changed_params


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: see conftest.one_thread


def smooth_crops(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=64, mode="bilinear", align_corners=False).tanh()


def test_feature_reedit_with_cached_weights_is_bit_exact(tmp_path):
    inv = tiny_fs_inverter(0)
    crops = smooth_crops()
    codes = inv.invert(crops)
    noise = generator_of(inv).make_noise(1, torch.Generator().manual_seed(3))
    pti = pivotal_tune(inv, crops, codes, TuneConfig(epochs=2, lr=1e-3, batch=3), noise=noise, lpips=None)
    w_edit = codes["w"] + 0.5 * torch.randn(codes["w"].shape, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(3, 1, 64, 64)
    masks[..., 16:48, 20:44] = 1
    groups = stitch_tune(inv, codes, w_edit, crops, masks, StitchConfig(steps=2, lr=1e-3), base=pti,
                         noise=noise)
    edit = render_tuned(inv, codes, w_edit, noise, pti)
    stitched = render_tuned(inv, codes, w_edit, noise, groups)
    save_weights(tmp_path / "pti.pt", pti)
    save_weights(tmp_path / "stitch.pt", groups)
    pti2, = load_weights(tmp_path / "pti.pt")
    groups2 = load_weights(tmp_path / "stitch.pt")
    inv2 = tiny_fs_inverter(0)  # a fresh process's inverter: same base weights, the cached tuned ones on top
    assert torch.equal(render_tuned(inv2, codes, w_edit, noise, pti2), edit)
    assert torch.equal(render_tuned(inv2, codes, w_edit, noise, groups2), stitched)
    assert not torch.equal(edit, stitched) and not torch.equal(edit, inv2.render(codes, w_edit, noise))
    assert pti2.frames is None and [g.frames.tolist() for g in groups2] == [[0], [1], [2]]
    assert weights_for_frame(groups2, 2) is groups2[2] and weights_for_frame(groups2, 5) is None
    # one row rendered alone with its group gives the same pixels as the stitched batch
    one = render_tuned(inv2, {k: v[1:2] for k, v in codes.items()}, w_edit[1:2], noise, groups2, frames=[1])
    assert torch.allclose(one, stitched[1:2], atol=1e-5)


def test_feature_only_changed_parameters_are_kept():
    inv = tiny_fs_inverter(0)
    G = generator_of(inv)
    before = snapshot(G)
    with torch.no_grad():
        G.to_rgb1.bias.add_(1.0)
    delta = changed_params(G, before)
    assert list(delta) == ["to_rgb1.bias"]
    state = weights_to_state(TunedWeights(delta))
    assert set(state) == {"format", "kind", "groups"} and state["groups"][0]["frames"].numel() == 0


def test_exception(tmp_path):
    with pytest.raises(InputError, match="not a vidinv tuned-weights file"):
        weights_from_state({"format": "other"})
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="different kinds"):
        weights_to_state([TunedWeights({}, kind="pti"), TunedWeights({}, kind="stitch")])
    G = generator_of(tiny_fs_inverter(0))
    with pytest.raises(VidinvError, match="unknown parameters"):
        with TunedWeights({"nope": torch.zeros(1)}).applied(G):
            pass
    with pytest.raises(VidinvError, match="is \\[2\\]"):
        with TunedWeights({"to_rgb1.bias": torch.zeros(2)}).applied(G):
            pass
