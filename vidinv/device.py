"""Device and precision choice. CPU paths stay float32; reduced precision is a GPU option."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` gives ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``fp32`` everywhere; ``fp16``/``bf16`` only on CUDA (about 100x slower on this kind of CPU)."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        from vidinv.errors import VidinvError

        raise VidinvError(f"unknown precision {name!r}; choose one of {', '.join(table)}")
    if device.type != "cuda" and name != "fp32":
        from vidinv.errors import VidinvError

        raise VidinvError(f"precision {name} is a GPU option; on {device.type} use fp32")
    return table[name]
