"""Configuration dataclasses, loaded from ``configs/default.yaml``.

Every default lives in that YAML file once; the dataclasses give the structure and
types, flags and ``--config FILE`` override single keys.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from vidinv.errors import VidinvError
from vidinv.paths import config_file


@dataclass
class ModelConfig:
    inverter: str = "fs"
    generator: str = "zoo"
    encoder: str = "zoo"
    feature_layer: int = 5
    feature_scale: float = 1.0
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 4
    noise_seed: int = 0
    allow_pickle: bool = False


@dataclass
class FaceConfig:
    detector: str = "auto"
    face: str = "largest"
    detect_max_side: int = 480
    detect_upsample: int = 0
    max_gap: int = 8
    cut_threshold: float = 0.5
    min_track_length: int = 3


@dataclass
class StabilizeConfig:
    landmarks: dict = field(default_factory=lambda: {"method": "gaussian", "sigma": 3.0})
    quads: dict = field(default_factory=lambda: {"method": "gaussian", "sigma": 6.0})
    flow_refine: bool = False
    codes: dict = field(default_factory=lambda: {"method": "none"})
    edit_delta: dict = field(default_factory=lambda: {"method": "gaussian", "sigma": 2.0})


@dataclass
class BlendConfig:
    method: str = "alpha"
    mask: str = "auto"
    feather: float = 0.04
    dilate: float = 0.02


@dataclass
class EditSettings:
    schedule: str = "constant"
    condition: list = field(default_factory=list)


@dataclass
class OutputConfig:
    crf: int = 18
    preset: str = "medium"


@dataclass
class ExecutionConfig:
    executor: str = "ray"
    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1
    chunk_size: int = 16
    max_in_flight: int | None = None
    cache_dir: str | None = None
    keep_cache: bool = False


@dataclass
class PipelineConfig:
    models: ModelConfig = field(default_factory=ModelConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    stabilize: StabilizeConfig = field(default_factory=StabilizeConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    edit: EditSettings = field(default_factory=EditSettings)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in out:
            raise VidinvError(f"unknown config key {where}{key!r}; known: {', '.join(sorted(out))}")
        if isinstance(out[key], dict) and isinstance(value, dict) and key not in ("landmarks", "quads", "codes", "edit_delta"):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _build(cls, data: dict):
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f.default_factory if f.default_factory is not copy.deepcopy else None  # type: ignore[comparison-overlap]
        proto = sub() if callable(sub) else None
        kwargs[f.name] = _build(type(proto), value) if is_dataclass(proto) and isinstance(value, dict) else value
    return cls(**kwargs)


def read_yaml_file(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from a file, with one-line errors for a missing file or invalid YAML."""
    from vidinv.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {p} is not valid YAML: {str(exc).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """The defaults from ``configs/default.yaml``, then ``path``, then ``overrides`` (nested dicts)."""
    base = asdict(PipelineConfig())
    default_yaml = config_file("default.yaml")
    if default_yaml.is_file():
        base = _merge(base, yaml.safe_load(default_yaml.read_text()) or {})
    if path is not None:
        base = _merge(base, read_yaml_file(path))
    if overrides:
        base = _merge(base, _drop_none(overrides))
    return _build(PipelineConfig, base)


def _drop_none(d: dict) -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out
