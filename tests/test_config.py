"""One source for every default: the config dataclasses; YAML files and flags only override."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vidinv.config import PipelineConfig, field_default, load_config, load_dataclass
from vidinv.errors import VidinvError

REPO = Path(__file__).resolve().parents[1]


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and not k.startswith(("landmarks", "quads", "codes", "edit_delta")):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_smoke_defaults_come_from_the_dataclasses():
    assert load_config() == PipelineConfig()
    assert field_default(PipelineConfig, "output.crf") == 18
    assert load_config().faces.detect_max_side == field_default(PipelineConfig, "faces.detect_max_side")


def test_feature_no_default_is_written_twice():
    """configs/default.yaml is a commented example (sets nothing); training profiles set only what differs."""
    from vidinv.training import TrainConfig

    assert not yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    defaults = _leaves(TrainConfig().to_dict())
    for name in ("train_faces.yaml", "train_generic.yaml"):
        data = _leaves(yaml.safe_load((REPO / "configs" / name).read_text()))
        same = {k: v for k, v in data.items() if defaults[k] == v}
        assert same == {}, f"{name} repeats defaults of TrainConfig: {same}"


def test_feature_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("output: {crf: 23}\nstabilize: {codes: {method: gaussian, sigma: 1.0}}\n"
                 "models: {batch_size: 8}\n")
    cfg = load_config(f, {"models": {"batch_size": 2, "device": None}, "execution.chunk_size": 5})
    assert (cfg.output.crf, cfg.models.batch_size, cfg.execution.chunk_size) == (23, 2, 5)
    assert cfg.models.device == PipelineConfig().models.device  # None: not given
    assert cfg.stabilize.codes == {"method": "gaussian", "sigma": 1.0}  # a filter section replaces the whole
    assert cfg.output.preset == PipelineConfig().output.preset


def test_exception_unknown_keys_and_bad_files(tmp_path):
    with pytest.raises(VidinvError, match="unknown config key 'output.nope'"):
        load_config(overrides={"output": {"nope": 1}})
    with pytest.raises(VidinvError, match="must be a mapping"):
        load_config(overrides={"output": 3})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(VidinvError, match="mapping"):
        load_config(bad)
    with pytest.raises(VidinvError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_feature_one_loader_for_training_too(tmp_path):
    from vidinv.training import TrainConfig, load_train_config

    f = tmp_path / "t.yaml"
    f.write_text("betas: [0.9, 0.99]\nloss: {mse: 0.5}\n")
    cfg = load_train_config(f, {"loss.lpips": 0.3, "seed": 4})
    assert cfg == load_dataclass(TrainConfig, f, {"loss": {"lpips": 0.3}, "seed": 4})
    assert cfg.betas == (0.9, 0.99) and (cfg.loss.mse, cfg.loss.lpips, cfg.seed) == (0.5, 0.3, 4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_feature_flags_table_sets_config_and_help_shows_its_defaults(capsys):
    from vidinv.cli import build_parser
    from vidinv.commands.edit import EDIT_FLAGS, PIPELINE_FLAGS, config_from_args

    p = build_parser()
    args = p.parse_args(["edit", "x.mp4", "--crf", "20", "--condition", "age", "--flow-refine",
                         "--batch-size", "3", "--keep-cache"])
    cfg = config_from_args(args)
    assert (cfg.output.crf, cfg.edit.condition, cfg.stabilize.flow_refine) == (20, ["age"], True)
    assert (cfg.models.batch_size, cfg.execution.keep_cache) == (3, True)
    assert config_from_args(p.parse_args(["edit", "x.mp4"])) == PipelineConfig()  # no flag: no override
    for row in PIPELINE_FLAGS + EDIT_FLAGS:  # every row names a real config field
        field_default(PipelineConfig, row.path)
    with pytest.raises(SystemExit):
        p.parse_args(["edit", "--help"])
    text = capsys.readouterr().out
    assert f"default {field_default(PipelineConfig, 'output.crf')}" in text
    assert "``" not in text
