"""Model components of the pipeline, built from a plain spec dict (picklable, so Ray workers build their own).

A spec: ``{'generator': 'tiny'|PATH, 'encoder': 'tiny'|PATH, 'device': 'auto', 'precision': 'fp32',
'batch_size': 4, 'feature_layer': 5, 'feature_scale': 1.0, 'noise_seed': 0, 'allow_pickle': False}``.
Zoo names are resolved to paths in the driver (``resolve_model_spec``) so that a missing file fails before
any work starts, with the zoo's message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

ZOO_GENERATOR = "psp_ffhq_encode"
ZOO_ENCODER = "fs_encoder_143"


def resolve_model_spec(models_cfg, offline: bool | None = None) -> dict:
    """Turn a ``ModelConfig`` into a spec with concrete paths (fetching or failing with the zoo's message)."""
    from pathlib import Path

    from vidinv.errors import InputError

    spec = dict(
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
    for key, zoo_name in (("generator", ZOO_GENERATOR), ("encoder", ZOO_ENCODER)):
        value = spec[key]
        if value == "tiny":
            continue
        if value in (None, "", "zoo"):
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
    generator: Any
    inverter: Any
    noise: list
    device: torch.device
    dtype: torch.dtype
    spec: dict


_CACHE: dict[str, Models] = {}


def build_models(spec: dict) -> Models:
    """Load (once per process) the generator and the inverter for a spec, on its device."""
    key = repr(sorted(spec.items()))
    if key in _CACHE:
        return _CACHE[key]
    from vidinv.device import pick_device, pick_dtype
    from vidinv.models.fs_encoder import FSInverter, load_fs_encoder
    from vidinv.models.stylegan2 import load_generator
    from vidinv.models.tiny import tiny_generator, tiny_inverter

    device = pick_device(spec.get("device", "auto"))
    dtype = pick_dtype(spec.get("precision", "fp32"), device)
    if spec["generator"] == "tiny":
        G = tiny_generator(0)
        latent_avg = None
    else:
        from vidinv.models.checkpoint import safe_load

        G, latent_avg = load_generator(safe_load(spec["generator"], allow_pickle=spec.get("allow_pickle", False)))
    if spec["encoder"] == "tiny":
        inverter = tiny_inverter(0, generator=G)
    else:
        from vidinv.models.checkpoint import safe_load

        enc = load_fs_encoder(safe_load(spec["encoder"], allow_pickle=spec.get("allow_pickle", False)))
        if latent_avg is None:
            with torch.no_grad():
                latent_avg = G.mean_latent(4096)[0]
        inverter = FSInverter(enc, latent_avg)
    G = G.eval().to(device)
    inverter = inverter.eval().to(device)
    if dtype != torch.float32:
        G, inverter = G.to(dtype), inverter.to(dtype)
    gen = torch.Generator().manual_seed(int(spec.get("noise_seed", 0)))
    noise = [n.to(device=device, dtype=dtype) for n in G.make_noise(batch=1, generator=gen)]
    models = Models(G, inverter, noise, device, dtype, spec)
    _CACHE[key] = models
    return models
