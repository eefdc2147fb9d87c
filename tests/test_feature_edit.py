"""The Feature-Style edit F~ = F + G^K(w~) - G^K(w): golden parity with the official chain, batching, errors."""

from __future__ import annotations

import pytest
import torch

from vidinv.editing.feature_edit import feature_edit
from vidinv.errors import VidinvError
from vidinv.models.stylegan2 import load_generator
from vidinv.models.tiny import tiny_generator
from golden_utils import assert_allclose

ATOL = RTOL = 1e-4


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert_allclose(a, b, atol=atol, rtol=RTOL)


@pytest.fixture(scope="module")
def case(golden_narrow):
    c = torch.load(golden_narrow / "fs_edit_cases.pt", map_location="cpu", weights_only=True)
    return c["inputs"], c["outputs"]


@pytest.fixture(scope="module", params=["generator_rosinality.pt", "generator_psp.pt"])
def loaded(request, golden_narrow):
    return load_generator(golden_narrow / request.param)


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator(0)


def test_golden_w0_from_either_latent_avg(loaded, case):
    _, latent_avg = loaded
    I, O = case
    assert torch.equal(O["w_enc"] + latent_avg, O["w_0"])
    assert torch.equal(O["w_enc"] + I["latent_avg"], O["w_0"])


def test_golden_features(loaded, case):
    G, _ = loaded
    I, O = case
    with torch.no_grad():
        _close(G.features_at(O["w_0"], 5, noise=I["noise"]), O["fea_0_5"])
        _close(G.features_at(O["w_1"], 5, noise=I["noise"]), O["fea_1_5"])
        _, feats = G.synthesis(O["w_1"], I["noise"], return_features=True)
        for k, f in enumerate(O["fea_1"]):
            if f is not None:
                _close(feats[k], f)


def test_golden_edit_chain(loaded, case):
    G, _ = loaded
    I, O = case
    w0, w1, f0, n = O["w_0"], O["w_1"], O["f_0"], I["noise"]
    with torch.no_grad():
        _close(feature_edit(G, w0, f0, w1, noise=n), O["x_1"])
        _close(feature_edit(G, w0, f0, None, noise=n), O["x_inv"])
        _close(G.synthesis(w0, n), O["x_w0_nofeat"])
        _close(G.synthesis(w1, n), O["x_w1_nofeat"])
        # the edited feature itself, as the official chain forms it
        fi = f0 + G.features_at(w1, 5, n) - G.features_at(w0, 5, n)
        _close(fi, O["feature_in_5"])


def test_golden_direction_step(case):
    """w_1 = w_0 + 15 * alpha * direction (the official linear_interpolate end point)."""
    I, O = case
    step = (15 * I["alpha"] * I["direction"]).view_as(O["w_0"])
    _close(O["w_0"] + step, O["w_1"], atol=1e-5)


def test_one_batched_features_call(tiny, monkeypatch):
    calls = []
    orig = tiny.features_at

    def spy(w, k=5, noise=None, **kw):
        calls.append((w.shape[0], k))
        return orig(w, k, noise, **kw)

    monkeypatch.setattr(tiny, "features_at", spy)
    w = torch.randn(3, 10, 64)
    F = torch.randn(3, 32, 16, 16)
    with torch.no_grad():
        img = feature_edit(tiny, w, F, w + 0.1, noise=tiny.make_noise(batch=3))
        assert img.shape == (3, 3, 64, 64) and calls == [(6, 5)]
        feature_edit(tiny, w, F)  # the inversion needs no G^K
        assert len(calls) == 1


def test_batched_equals_single(tiny):
    g = torch.Generator().manual_seed(4)
    w = torch.randn(2, 10, 64, generator=g)
    we = w + 0.5 * torch.randn(2, 10, 64, generator=g)
    F = torch.randn(2, 32, 16, 16, generator=g)
    noise = tiny.make_noise(batch=2, generator=g)  # per-sample noise is concatenated for the 2B batch
    with torch.no_grad():
        out = feature_edit(tiny, w, F, we, noise=noise)
        for b in range(2):
            one = feature_edit(tiny, w[b : b + 1], F[b : b + 1], we[b : b + 1], noise=[n[b : b + 1] for n in noise])
            _close(out[b : b + 1], one, atol=1e-5)


def test_edit_semantics(tiny):
    g = torch.Generator().manual_seed(5)
    w = torch.randn(2, 10, 64, generator=g)
    we = w + torch.randn(2, 10, 64, generator=g)
    F = torch.randn(2, 32, 16, 16, generator=g)
    with torch.no_grad():
        inv = feature_edit(tiny, w, F)
        _close(inv, tiny.synthesis(w, feature_in=F, feature_idx=5), atol=1e-6)
        _close(feature_edit(tiny, w, F, w.clone()), inv, atol=1e-5)  # w~ = w: F~ = F
        # F = G^K(w) (a perfect feature code) makes the edit the plain W+ edit G(w~)
        Fw = tiny.features_at(w, 5)
        _close(feature_edit(tiny, w, Fw, we), tiny.synthesis(we), atol=1e-5)
        # scale 0 ignores the feature code; another layer k works the same way
        _close(feature_edit(tiny, w, F, we, feature_scale=0.0), tiny.synthesis(we), atol=1e-6)
        F3 = tiny.features_at(w, 3)
        _close(feature_edit(tiny, w, F3, we, k=3), tiny.synthesis(we), atol=1e-5)
        assert (feature_edit(tiny, w, F, we) - tiny.synthesis(we)).abs().max() > 1e-2


def test_exceptions(tiny):
    w = torch.randn(2, 10, 64)
    F = torch.randn(2, 32, 16, 16)
    with pytest.raises(VidinvError, match="w must be"):
        feature_edit(tiny, torch.randn(2, 64), F)
    with pytest.raises(VidinvError, match="F must be"):
        feature_edit(tiny, w, F[:1])
    with pytest.raises(VidinvError, match="w_edit must have"):
        feature_edit(tiny, w, F, w[:1])
    with pytest.raises(VidinvError, match="F must be"):
        feature_edit(tiny, w, torch.randn(2, 40, 16, 16), w + 1)
    with pytest.raises(VidinvError, match="feature 5 must be"):
        feature_edit(tiny, w, torch.randn(2, 40, 16, 16))


@pytest.mark.parametrize("scale,k", [(1.0, 5), (0.6, 5), (1.0, 4), (1.0, 8)])
def test_resumed_render_equals_full_render(tiny, scale, k):
    """The edit resumes G(w~, F~) at layer k from the G^K pass: equal to the full official-style render."""
    g = torch.Generator().manual_seed(6)
    w = torch.randn(3, 10, 64, generator=g)
    we = w + 0.5 * torch.randn(3, 10, 64, generator=g)
    noise = tiny.make_noise(batch=3, generator=g)
    with torch.no_grad():
        F = torch.randn(tiny.features_at(w, k).shape, generator=g)
        out = feature_edit(tiny, w, F, we, noise=noise, k=k, feature_scale=scale)
        F_edit = F + tiny.features_at(we, k, noise) - tiny.features_at(w, k, noise)
        ref = tiny.synthesis(we, noise, feature_in=F_edit, feature_idx=k, feature_scale=scale)
    _close(out, ref, atol=1e-5)
