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

ZOO_GENERATOR = "psp_ffhq_encode"
ZOO_ENCODER = "fs_encoder_143"
# the zoo artifact holding each method's official checkpoint (None: the user gives --encoder PATH)
ZOO_CHECKPOINTS = {"fs": ZOO_ENCODER, "e4e": "e4e_ffhq_encode", "psp": "psp_ffhq_encode",
                   "hfgi": None, "hyperinverter": None, "padinv": None}


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


def resolve_model_spec(models_cfg, offline: bool | None = None) -> dict:
    """Turn a ``ModelConfig`` into a spec with concrete paths (fetching or failing with the zoo's message)."""
    from pathlib import Path

    from vidinv.errors import InputError, VidinvError

    method = getattr(models_cfg, "inverter", "fs") or "fs"
    if method not in ZOO_CHECKPOINTS:
        raise VidinvError(f"unknown inverter {method!r}; choose one of {', '.join(ZOO_CHECKPOINTS)}")
    spec = dict(
        inverter=method,
        generator=models_cfg.generator,
        encoder=models_cfg.encoder,
        device=models_cfg.device,
        precision=models_cfg.precision,
        batch_size=int(models_cfg.batch_size),
        feature_layer=int(models_cfg.feature_layer),
        feature_scale=float(models_cfg.feature_scale),
        noise_seed=int(models_cfg.noise_seed),
        allow_pickle=bool(models_cfg.allow_pickle),
    )
    needs_generator = method in ("fs", "hyperinverter")
    if not needs_generator:
        spec["generator"] = "tiny" if spec["encoder"] == "tiny" else None
    for key in ("generator", "encoder"):
        value = spec[key]
        if value == "tiny" or (key == "generator" and not needs_generator):
            continue
        if value in (None, "", "zoo"):
            zoo_name = ZOO_GENERATOR if key == "generator" else ZOO_CHECKPOINTS[method]
            if zoo_name is None:
                what = "the converted StyleGAN2-ADA generator" if key == "generator" else "its official checkpoint"
                raise VidinvError(f"--inverter {method} needs --{key} PATH ({what}); the zoo does not host it")
            from vidinv.zoo import Zoo

            spec[key] = str(Zoo().require(zoo_name, offline=offline))
        else:
            p = Path(value).expanduser()
            if not p.is_file():
                raise InputError(f"--{key} {value}: no such file")
            spec[key] = str(p.resolve())
    return spec


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

_TINY = {
    "fs": ("vidinv.inverters.fs", "tiny_fs_inverter"),
    "e4e": ("vidinv.inverters.e4e", "tiny_e4e_inverter"),
    "hfgi": ("vidinv.inverters.hfgi", "tiny_hfgi_inverter"),
    "hyperinverter": ("vidinv.inverters.hyperinverter", "tiny_hyperinverter_inverter"),
    "padinv": ("vidinv.inverters.padinv", "tiny_padinv_inverter"),
}


def build_inverter(spec: dict):
    """The spec's inverter (loaded from its official checkpoints, or tiny random models), on CPU float32."""
    import importlib

    from vidinv.errors import VidinvError
    from vidinv.inverters.base import load_inverter

    method = spec.get("inverter", "fs")
    if spec["encoder"] == "tiny":
        if method not in _TINY:
            raise VidinvError(f"no tiny model for --inverter {method}")
        mod, fn = _TINY[method]
        inv = getattr(importlib.import_module(mod), fn)(0)
        if method == "fs":
            inv.k, inv.feature_scale = int(spec.get("feature_layer", 5)), float(spec.get("feature_scale", 1.0))
        return inv
    kw: dict[str, Any] = {}
    if method == "fs":
        kw = dict(generator=spec["generator"], k=int(spec.get("feature_layer", 5)),
                  feature_scale=float(spec.get("feature_scale", 1.0)), allow_pickle=spec.get("allow_pickle", False))
    elif method == "hyperinverter":
        kw = dict(generator=spec["generator"])
    return load_inverter(method, spec["encoder"], **kw)


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
