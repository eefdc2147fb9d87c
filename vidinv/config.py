"""Configuration dataclasses and the one loader for every config (pipeline and training).

Every default lives once, in these dataclasses (training: :class:`vidinv.training.TrainConfig`);
a YAML file (``--config FILE``, ``configs/train_*.yaml``) and command-line flags only override
single keys. ``configs/default.yaml`` is a commented example of such an override file and is not
loaded by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from vidinv.errors import VidinvError
from vidinv.metrics.consistency import DEFAULT_MODE
from vidinv.tuning.config import StitchConfig, TuneConfig


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
    min_face: int | None = 128
    max_gap: int = 8
    cut_threshold: float | str = "auto"
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
    overwrite: bool = False


@dataclass
class ExecutionConfig:
    executor: str = "auto"  # auto: in-process unless a cluster or several local GPUs can help (see ray_min_frames)
    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1
    chunk_size: int = 16
    max_in_flight: int | None = None
    cache_dir: str | None = None
    keep_cache: bool = False
    ray_min_frames: int = 250  # auto: a clip shorter than this runs in-process even on a multi-GPU machine


@dataclass
class TuneSettings:
    """Per-clip generator tuning (``--tune pti``, ``--stitch``); the tuning settings themselves are
    :mod:`vidinv.tuning`'s dataclasses (STIT's defaults, one source)."""

    method: str = "none"  # none | pti: pivotal tuning on the clip's aligned frames after inversion
    per_shot: bool = False  # one tuned generator per shot (cuts from the plan) instead of per clip
    stitch: bool = False  # stitching tuning after the edit (per frame, or per stitching.chunk frames)
    pti: TuneConfig = field(default_factory=TuneConfig)
    stitching: StitchConfig = field(default_factory=StitchConfig)

    def __post_init__(self) -> None:
        if self.method not in ("none", "pti"):
            raise VidinvError(f"tune.method must be 'none' or 'pti', got {self.method!r}")

    @property
    def enabled(self) -> bool:
        return self.method == "pti" or bool(self.stitch)


@dataclass
class EvalSettings:
    id_mode: str = DEFAULT_MODE  # TL-ID/TG-ID: mean_of_ratios (STIT's public metric script) | ratio_of_means

    def __post_init__(self) -> None:
        if self.id_mode not in ("mean_of_ratios", "ratio_of_means"):
            raise VidinvError(f"eval.id_mode must be mean_of_ratios or ratio_of_means, got {self.id_mode!r}")


@dataclass
class PipelineConfig:
    models: ModelConfig = field(default_factory=ModelConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    stabilize: StabilizeConfig = field(default_factory=StabilizeConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    edit: EditSettings = field(default_factory=EditSettings)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    tune: TuneSettings = field(default_factory=TuneSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    def to_dict(self) -> dict:
        """Plain data as JSON holds it (tuples as lists; :func:`load_config` turns them back)."""
        return _lists(asdict(self))


def _lists(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_lists(x) for x in v]
    return v


def read_yaml_file(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from a file, with one-line errors for a missing file or invalid YAML."""
    from vidinv.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise InputError(f"{what} {p} must hold a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(obj: Any, data: Mapping[str, Any], where: str = "") -> Any:
    """A copy of the dataclass ``obj`` with ``data`` applied: nested dataclasses are merged key by key,
    other values (dicts included) replace the field; a YAML list becomes a tuple where the field is one.

    Raises:
        VidinvError: an unknown key, or a section that is not a mapping.
    """
    if not isinstance(data, Mapping):
        what = where.rstrip(".") or "top level"
        raise VidinvError(f"config section {what} must be a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(obj)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise VidinvError(f"unknown config key '{where}{unknown[0]}'; known: {', '.join(known)}")
    changes = {}
    for key, value in data.items():
        current = getattr(obj, key)
        if is_dataclass(current):
            changes[key] = apply_overrides(current, value, f"{where}{key}.")
        elif isinstance(current, tuple) and isinstance(value, list):
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return replace(obj, **changes)


def nest_dotted(flat: Mapping[str, Any]) -> dict:
    """``{'loss.mse': 0, 'seed': 1}`` -> ``{'loss': {'mse': 0}, 'seed': 1}`` (nested dicts merged)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *head, last = key.split(".")
        d = out
        for h in head:
            d = d.setdefault(h, {})
        if isinstance(value, Mapping) and isinstance(d.get(last), dict):
            d[last].update(nest_dotted(value))
        else:
            d[last] = nest_dotted(value) if isinstance(value, Mapping) else value
    return out


def load_dataclass(cls: type, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                   what: str = "config file") -> Any:
    """The one config loader: ``cls()``'s defaults, then the YAML file ``path``, then ``overrides``
    (nested dicts or dotted keys)."""
    obj = cls()
    if path is not None:
        obj = apply_overrides(obj, read_yaml_file(path, what))
    if overrides:
        obj = apply_overrides(obj, nest_dotted(overrides))
    return obj


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """The pipeline config: the dataclass defaults, then ``path``, then ``overrides`` (None: not given)."""
    return load_dataclass(PipelineConfig, path, _drop_none(overrides or {}))


def field_default(cls: type, dotted: str) -> Any:
    """The default of a config field, e.g. ``field_default(PipelineConfig, 'output.crf')`` -> 18."""
    obj = cls()
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _drop_none(d: Mapping) -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- command-line flags


@dataclass(frozen=True)
class ConfigFlag:
    """One command-line flag that sets one config field.

    ``kwargs`` are ``argparse.add_argument``'s; ``{default}`` in the help is filled from the dataclass,
    and a callable ``choices`` is called when the parser is built (e.g. the registered inverters).
    A given flag overrides the field; an absent one leaves the config file's / dataclass's value.
    """

    group: str
    flag: str
    path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def add_config_flags(parser: Any, rows: Sequence[ConfigFlag], cls: type | None = None) -> None:
    """Add every row's argument to ``parser`` (in an argument group per row group); ``{default}`` in a
    help text is ``cls``'s default of the row's field."""
    groups: dict[str, Any] = {}
    for row in rows:
        if row.group not in groups:
            groups[row.group] = parser.add_argument_group(row.group)
        kw = dict(row.kwargs)
        if callable(kw.get("choices")):
            kw["choices"] = kw["choices"]()
        if "help" in kw and cls is not None:
            kw["help"] = kw["help"].format(default=field_default(cls, row.path))
        if kw.get("action") in ("store_true", "append"):
            kw["default"] = None  # absent: no override
        groups[row.group].add_argument(row.flag, dest=row.dest, **kw)


def overrides_from_args(args: Any, rows: Sequence[ConfigFlag]) -> dict:
    """Dotted overrides ``{'output.crf': 20}`` from the flags given (rows the parser lacks are skipped)."""
    return {row.path: getattr(args, row.dest) for row in rows if getattr(args, row.dest, None) is not None}
