"""The inverter registry: a method declares what it needs once, in its own module.

A new method is one module (plus its test): the CLI choices, the model spec resolution and the
tiny test model come from its :class:`InverterEntry`. These tests register a fake method and check
that every consumer picks it up with no other change.
"""

from __future__ import annotations

import pytest

from vidinv.errors import VidinvError
from vidinv.inverters import (INVERTER_ENTRIES, INVERTERS, InverterEntry, available_inverters,
                              get_inverter_entry, load_inverter, register_inverter)


class _Fake:
    name, size, n_latent, style_dim = "fake", 8, 2, 4

    def __init__(self, how: str, **kw):
        self.how, self.kw = how, kw


def _load_fake(checkpoint, generator=None, k=5):
    return _Fake("loaded", checkpoint=checkpoint, generator=generator, k=k)


def _tiny_fake(seed: int = 0, k: int = 5):
    return _Fake("tiny", seed=seed, k=k)


@pytest.fixture
def fake():
    entry = register_inverter(InverterEntry(name="fake", loader=_load_fake, zoo_checkpoint=None,
                                            needs_generator=True, zoo_generator=None, tiny=_tiny_fake,
                                            options={"generator": "generator", "k": "feature_layer"}))
    yield entry
    INVERTER_ENTRIES.pop("fake", None)
    INVERTERS.pop("fake", None)


def test_smoke_known_methods_declare_their_zoo_names():
    want = {"fs": ("fs_encoder_143", True, "psp_ffhq_encode"), "e4e": ("e4e_ffhq_encode", False, None),
            "psp": ("psp_ffhq_encode", False, None), "hfgi": ("hfgi_ffhq", False, None),
            "hyperinverter": ("hyperinverter_ffhq", True, "stylegan2_ada_ffhq"),
            "padinv": ("padinv_ffhq", False, None)}
    assert set(want) <= set(available_inverters())
    for name, (ckpt, needs_g, zoo_g) in want.items():
        e = get_inverter_entry(name)
        assert (e.name, e.zoo_checkpoint, e.needs_generator, e.zoo_generator) == (name, ckpt, needs_g, zoo_g)
        assert INVERTERS[name] is e.loader


def test_exception_unknown_method_and_bad_entry():
    with pytest.raises(VidinvError, match="unknown inverter 'nope'.*fs"):
        get_inverter_entry("nope")
    with pytest.raises(TypeError, match="InverterEntry"):
        register_inverter("fake")  # type: ignore[arg-type]
    with pytest.raises(VidinvError, match="no tiny model"):
        get_inverter_entry("psp").build_tiny({})


def test_feature_fake_method_through_build_inverter(fake, tmp_path):
    from pipelines.components import build_inverter, resolve_model_spec
    from vidinv.config import ModelConfig

    assert "fake" in available_inverters() and load_inverter("fake", "x.pt").how == "loaded"
    tiny = build_inverter({"inverter": "fake", "encoder": "tiny", "feature_layer": 4, "generator": "tiny"})
    assert (tiny.how, tiny.kw) == ("tiny", {"seed": 0, "k": 4})  # the tiny factory gets the options it names
    enc, gen = tmp_path / "enc.pt", tmp_path / "gen.pt"
    enc.write_bytes(b"e")
    gen.write_bytes(b"g")
    spec = resolve_model_spec(ModelConfig(inverter="fake", encoder=str(enc), generator=str(gen),
                                          feature_layer=6))
    inv = build_inverter(spec)
    assert (inv.how, inv.kw) == ("loaded", {"checkpoint": str(enc), "generator": str(gen), "k": 6})
    # no zoo artifact declared: a clear one-line error names the flag to give
    with pytest.raises(VidinvError, match="--inverter fake needs --generator PATH"):
        resolve_model_spec(ModelConfig(inverter="fake", encoder=str(enc), generator="zoo"))


def test_feature_fake_method_is_a_cli_choice(fake, capsys):
    from vidinv.cli import build_parser

    args = build_parser().parse_args(["edit", "clip.mp4", "--inverter", "fake"])
    assert args.inverter == "fake"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["edit", "clip.mp4", "--inverter", "not-registered"])
    assert "fake" in capsys.readouterr().err  # the choices listed in the error come from the registry
