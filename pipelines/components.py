"""Model components of the pipeline, built from a plain spec dict (picklable, so Ray workers build their own).

A spec: ``{'inverter': 'fs', 'generator': 'tiny'|PATH, 'encoder': 'tiny'|PATH, 'device': 'auto',
'precision': 'fp32', 'batch_size': 4, 'feature_layer': 5, 'feature_scale': 1.0, 'noise_seed': 0,
'allow_pickle': False}``. For ``fs`` the encoder is ``143_enc.pth`` and the generator the pSp/rosinality
StyleGAN2; for the other methods ``encoder`` is the method's own official checkpoint (``generator`` only
for HyperInverter's converted StyleGAN2-ADA). Zoo names are resolved to paths in the driver
(``resolve_model_spec``) so that a missing file fails before any work starts, with the zoo's message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)



def __getattr__(name: str):
    """``ZOO_ENCODER`` / ``ZOO_GENERATOR``: the default (fs) method's zoo names, from its registry entry."""
    if name in ("ZOO_ENCODER", "ZOO_GENERATOR"):
        from vidinv.inverters.registry import get_inverter_entry

        fs = get_inverter_entry("fs")
        return fs.zoo_checkpoint if name == "ZOO_ENCODER" else fs.zoo_generator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ZOO_PARSER = "bisenet_79999"


def resolve_parser(mask_mode: str, offline: bool | None = None) -> str | None:
    """The BiSeNet checkpoint for parsing masks: ``auto`` uses it when present, ``parsing`` requires it."""
    from vidinv.errors import VidinvError

    if mask_mode == "landmarks":
        return None
    if mask_mode not in ("auto", "parsing"):
        raise VidinvError(f"unknown mask {mask_mode!r}; choose auto, landmarks or parsing")
    from vidinv.zoo import Zoo

    zoo = Zoo()
    if mask_mode == "auto":
        return str(zoo.path(ZOO_PARSER)) if zoo.status(ZOO_PARSER) in ("present", "verified") else None
    return str(zoo.require(ZOO_PARSER, offline=offline))


def needed_weights(models_cfg, mask_mode: str = "landmarks", attributes=()) -> list[str]:
    """Every zoo artifact a run needs: the method's checkpoints left to the zoo, BiSeNet for ``parsing``
    masks, the direction files of known attributes (so that all missing files are named at once)."""
    from vidinv.editing.attributes import attribute_artifact
    from vidinv.inverters.registry import get_inverter_entry

    entry = get_inverter_entry(getattr(models_cfg, "inverter", "fs") or "fs")
    names = []
    if models_cfg.encoder in (None, "", "zoo") and entry.zoo_checkpoint:
        names.append(entry.zoo_checkpoint)
    if entry.needs_generator and models_cfg.generator in (None, "", "zoo") and models_cfg.encoder != "tiny" \
            and entry.zoo_generator:
        names.append(entry.zoo_generator)
    if mask_mode == "parsing":
        names.append(ZOO_PARSER)
    names += [a for a in (attribute_artifact(n) for n in attributes) if a]
    return list(dict.fromkeys(names))


def require_weights(models_cfg, mask_mode: str = "landmarks", attributes=(), offline: bool | None = None) -> None:
    """Fetch what is missing of :func:`needed_weights` (when online), or fail with ONE line naming every
    missing file and the fix (``vidinv weights fetch ...`` / ``vidinv weights import DIR``)."""
    names = needed_weights(models_cfg, mask_mode, attributes)
    if names:
        from vidinv.zoo import Zoo

        Zoo().require_all(names, offline=offline)


def resolve_model_spec(models_cfg, offline: bool | None = None) -> dict:
    """Turn a ``ModelConfig`` into a spec with concrete paths (fetching or failing with the zoo's message).

    What each method needs (a separate generator, its zoo artifacts) comes from its registry entry.
    """
    from dataclasses import asdict

    from vidinv.inverters.registry import get_inverter_entry

    entry = get_inverter_entry(getattr(models_cfg, "inverter", "fs") or "fs")
    spec = asdict(models_cfg)
    spec["inverter"] = entry.name
    for key, kind in (("batch_size", int), ("feature_layer", int), ("feature_scale", float),
                      ("noise_seed", int), ("allow_pickle", bool)):
        spec[key] = kind(spec[key])
    if not entry.needs_generator:
        spec["generator"] = "tiny" if spec["encoder"] == "tiny" else None
    for key, zoo_name in (("generator", entry.zoo_generator), ("encoder", entry.zoo_checkpoint)):
        if spec[key] == "tiny" or (key == "generator" and not entry.needs_generator):
            continue
        spec[key] = _checkpoint_path(entry.name, key, spec[key], zoo_name, offline)
    return spec


def _checkpoint_path(method: str, key: str, value: str | None, zoo_name: str | None,
                     offline: bool | None) -> str:
    """A user's checkpoint path (checked), or the zoo's file for ``zoo``/empty values."""
    from pathlib import Path

    from vidinv.errors import InputError, VidinvError

    if value in (None, "", "zoo"):
        if zoo_name is None:
            raise VidinvError(f"--inverter {method} needs --{key} PATH; the zoo does not host it")
        from vidinv.zoo import Zoo

        return str(Zoo().require(zoo_name, offline=offline))
    p = Path(value).expanduser()
    if not p.is_file():
        raise InputError(f"--{key} {value}: no such file")
    return str(p.resolve())


@dataclass
class Models:
    inverter: Any  # an :class:`vidinv.inverters.base.Inverter`
    noise: list | None  # one fixed noise for the whole clip (rosinality generators), else None (stored buffers)
    device: torch.device
    dtype: torch.dtype
    spec: dict

    @property
    def size(self) -> int:
        return int(self.inverter.size)


_CACHE: dict[str, Models] = {}

def build_inverter(spec: dict):
    """The spec's inverter (loaded from its official checkpoints, or tiny random models), on CPU float32."""
    from vidinv.inverters.registry import get_inverter_entry

    entry = get_inverter_entry(spec.get("inverter", "fs"))
    if spec["encoder"] == "tiny":
        return entry.build_tiny(spec)
    return entry.loader(spec["encoder"], **entry.loader_kwargs(spec))


def _rosinality_generator(inv):
    from vidinv.models.stylegan2 import Generator

    for cand in (getattr(inv, "generator", None), getattr(getattr(inv, "model", None), "decoder", None),
                 getattr(inv, "decoder", None)):
        if isinstance(cand, Generator):
            return cand
    return None


def build_models(spec: dict) -> Models:
    """Load (once per process) the inverter for a spec, on its device, with the clip's fixed noise."""
    key = repr(sorted(spec.items()))
    if key in _CACHE:
        return _CACHE[key]
    from vidinv.device import pick_device, pick_dtype

    device = pick_device(spec.get("device", "auto"))
    dtype = pick_dtype(spec.get("precision", "fp32"), device)
    inv = build_inverter(spec)
    for mod in vars(inv).values() if not isinstance(inv, torch.nn.Module) else [inv]:
        if isinstance(mod, torch.nn.Module):
            mod.eval().to(device=device, dtype=dtype)
    G = _rosinality_generator(inv)
    noise = None
    if G is not None:
        gen = torch.Generator().manual_seed(int(spec.get("noise_seed", 0)))
        noise = [n.to(device=device, dtype=dtype) for n in G.make_noise(batch=1, generator=gen)]
    models = Models(inv, noise, device, dtype, spec)
    _CACHE[key] = models
    return models


def check_models(spec: dict) -> None:
    """Validate the spec's checkpoint files in the driver, before any work: each file is read (safe
    loading: a pickled file needs ``--allow-pickle``) and the method's model is built from it on the
    ``meta`` device (fs: without random init, on the mapped file), so keys and shapes are checked strictly
    without reading or allocating the weights.

    Raises:
        VidinvError: one line naming the file and what does not match.
    """
    import warnings

    from vidinv.errors import VidinvError
    from vidinv.models.checkpoint import fast_load, lazy_reads, no_init

    if spec.get("encoder") == "tiny":
        return
    # files are mapped, not read: the check touches keys and shapes (the worker reads them once); the fs
    # loaders build without random init and take the mapped tensors, the others are built on the meta device
    build_on = no_init() if spec.get("inverter", "fs") == "fs" and fast_load() else torch.device("meta")
    try:
        with build_on, warnings.catch_warnings(), lazy_reads():
            warnings.simplefilter("ignore")
            build_inverter(spec)
    except VidinvError as exc:
        files = [f"--{k} {spec[k]}" for k in ("encoder", "generator") if spec.get(k) not in (None, "tiny")]
        if not any(str(spec.get(k)) in str(exc) for k in ("encoder", "generator")):
            exc.args = (f"{exc} ({', '.join(files)})",)  # name the files the message does not name
        raise
    except NotImplementedError as exc:  # an operation the meta device lacks: the workers check instead
        log.debug("model check skipped on the meta device: %s", exc)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        files = ", ".join(f"--{k} {spec[k]}" for k in ("encoder", "generator")
                          if spec.get(k) not in (None, "tiny"))
        raise VidinvError(f"the model files do not fit --inverter {spec.get('inverter', 'fs')} ({files}): "
                          f"{type(exc).__name__}: {first}") from None
