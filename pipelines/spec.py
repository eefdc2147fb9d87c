"""Dimensions of a resolved model spec, read cheaply in the driver (the stages build the full models)."""

from __future__ import annotations

from typing import Any

import numpy as np


def model_dims(spec: dict) -> tuple[int, int, int]:
    """``(size, n_latent, style_dim)`` of the spec's generator, without a second full model in the driver
    when possible."""
    if spec.get("inverter", "fs") == "fs" and spec["generator"] != "tiny":
        g = _light_generator(spec)
        return int(g.size), int(g.n_latent), int(g.style_dim)
    from pipelines.components import build_models

    inv = build_models(spec).inverter
    return int(inv.size), int(inv.n_latent), int(inv.style_dim)


_LIGHT: dict[str, Any] = {}


def _light_generator(spec: dict):
    """The generator's dimensions read from its checkpoint's shapes (the file is mapped, not read)."""
    key = spec["generator"]
    if key not in _LIGHT:
        from types import SimpleNamespace

        from vidinv.models.checkpoint import lazy_reads, safe_load
        from vidinv.models.stylegan2 import generator_config_from_state_dict, split_checkpoint

        with lazy_reads():  # mapped, not read: only the shapes are looked at
            sd, _ = split_checkpoint(safe_load(key, allow_pickle=spec.get("allow_pickle", False)))
        c = generator_config_from_state_dict(sd)
        log_size = int(np.log2(c["size"]))
        _LIGHT[key] = SimpleNamespace(size=c["size"], style_dim=c["style_dim"], n_latent=log_size * 2 - 2)
    return _LIGHT[key]
