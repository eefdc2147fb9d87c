"""Model loading without random initialisation (meta construction + assign) and the driver's lazy reads."""

from __future__ import annotations

import threading

import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.models import checkpoint
from vidinv.models.fs_encoder import FSEncoder, load_fs_encoder
from vidinv.models.stylegan2 import Generator, load_generator
from vidinv.models.tiny import tiny_encoder, tiny_generator


def _tensors(m: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*m.named_parameters(), *m.named_buffers()]


init_mode: list = []


def _built_on(cls, monkeypatch) -> list[str]:
    """The default device each ``cls(...)`` was constructed under (and its torch function mode in init_mode)."""
    from torch.overrides import _get_current_function_mode

    seen, init = [], cls.__init__
    init_mode.clear()

    def spy(self, *a, **k):
        seen.append(str(torch.empty(0).device))
        init_mode.append(_get_current_function_mode())
        init(self, *a, **k)

    monkeypatch.setattr(cls, "__init__", spy)
    return seen


@pytest.mark.parametrize("fast", ["1", "0"])
def test_generator_from_file_equals_the_saved_one(tmp_path, monkeypatch, fast):
    monkeypatch.setenv("VIDINV_FAST_LOAD", fast)
    G0 = tiny_generator(3).eval()
    p = tmp_path / "g.pt"
    torch.save({"g_ema": G0.state_dict(), "latent_avg": torch.zeros(G0.style_dim)}, p)
    seen = _built_on(Generator, monkeypatch)
    G, _ = load_generator(p)
    assert seen == ["cpu"]
    assert isinstance(init_mode[0], checkpoint._NoInit) == (fast == "1")
    assert not any(t.is_meta for _, t in _tensors(G))
    for (k, a), (_, b) in zip(sorted(G.state_dict().items()), sorted(G0.state_dict().items())):
        assert a.dtype == torch.float32 and torch.equal(a, b), k
    w = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noise = G0.make_noise(batch=1, generator=torch.Generator().manual_seed(1))
        assert torch.equal(G.synthesis(w, noise=noise)[0], G0.synthesis(w, noise=noise)[0])


def test_generator_from_a_dict_copies_unless_told(monkeypatch):
    G0 = tiny_generator(0)
    sd = {k: v.clone() for k, v in G0.state_dict().items()}
    G, _ = load_generator(sd)
    assert G.input.input.data_ptr() != sd["input.input"].data_ptr()
    G.input.input.data.add_(1.0)
    assert torch.equal(sd["input.input"], G0.state_dict()["input.input"])  # the caller's dict is untouched
    G2, _ = load_generator(sd, copy=False)
    assert G2.input.input.data_ptr() == sd["input.input"].data_ptr()


def test_half_checkpoint_loads_as_float32():
    sd = {k: v.half() if v.is_floating_point() else v for k, v in tiny_generator(0).state_dict().items()}
    G, _ = load_generator(sd, copy=False)
    assert {t.dtype for _, t in _tensors(G)} == {torch.float32}
    assert torch.equal(G.input.input, sd["input.input"].float())


def test_generator_non_strict_missing_keys_are_initialised():
    sd = tiny_generator(0).state_dict()
    drop = [k for k in sd if k.endswith(".kernel") or k.startswith("noises.")]
    assert drop
    G, _ = load_generator({k: v for k, v in sd.items() if k not in drop}, strict=False)
    own = G.state_dict()
    assert not any(t.is_meta for _, t in _tensors(G))
    for k in drop:  # FIR kernels are rebuilt exactly, noise buffers are fresh
        if k.endswith(".kernel"):
            assert torch.equal(own[k], sd[k]), k
        assert torch.isfinite(own[k]).all(), k
    with pytest.raises(VidinvError, match="missing keys"):
        load_generator({k: v for k, v in sd.items() if k not in drop})


@pytest.mark.parametrize("fast", ["1", "0"])
def test_fs_encoder_from_file_equals_the_saved_one(tmp_path, monkeypatch, fast):
    monkeypatch.setenv("VIDINV_FAST_LOAD", fast)
    E0 = tiny_encoder(1).eval()
    p = tmp_path / "enc.pth"
    torch.save(E0.state_dict(), p)
    seen = _built_on(FSEncoder, monkeypatch)
    E = load_fs_encoder(p)
    assert seen == ["cpu"]
    assert isinstance(init_mode[0], checkpoint._NoInit) == (fast == "1")
    assert not E.training and not any(t.is_meta for _, t in _tensors(E))
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        for a, b in zip(E(x), E0(x)):
            assert torch.equal(a, b)
    sd = E0.state_dict()
    E2 = load_fs_encoder(sd)
    assert E2.styles[0].weight.data_ptr() != sd["styles.0.weight"].data_ptr()
    bad = dict(sd)
    bad.pop("styles.0.bias")
    with pytest.raises(VidinvError, match="missing keys: styles.0.bias"):
        load_fs_encoder(bad)


def test_assign_state_dict_refuses_unfilled_tensors():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("extra", torch.ones(2), persistent=False)

    with checkpoint.no_init():
        m = M()
    with pytest.raises(VidinvError, match="extra"):
        checkpoint.assign_state_dict(m, {"lin.weight": torch.ones(2, 2), "lin.bias": torch.zeros(2)})


def test_no_init_skips_random_initialisers_only():
    with checkpoint.no_init():
        a = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
        lin = torch.nn.Linear(3, 2)
        z = torch.zeros(3)
        s = torch.ones(2).mul_(3)
    assert a.shape == (4, 4) and lin.weight.shape == (2, 3) and torch.equal(z, torch.zeros(3))
    assert torch.equal(s, torch.full((2,), 3.0))
    b = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(b, torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))  # outside: random again
    assert b.std() > 0.3


def test_lazy_reads_map_the_file_in_this_thread_only(tmp_path, monkeypatch):
    p = tmp_path / "t.pt"
    torch.save({"a": torch.arange(6.0)}, p)
    calls = []
    real = torch.load

    def spy(*a, **k):
        calls.append(k.get("mmap", False))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    other = []
    with checkpoint.lazy_reads():
        assert torch.equal(checkpoint.safe_load(p)["a"], torch.arange(6.0))
        t = threading.Thread(target=lambda: other.append(checkpoint.safe_load(p)))
        t.start()
        t.join()
    checkpoint.safe_load(p)
    assert calls == [True, False, False]
    monkeypatch.setenv("VIDINV_FAST_LOAD", "0")
    with checkpoint.lazy_reads():
        checkpoint.safe_load(p)
    assert calls[-1] is False
