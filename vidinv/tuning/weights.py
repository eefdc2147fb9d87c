"""Tuned generator weights as data: the changed parameters, which frames they serve, saved as a plain dict.

A :class:`TunedWeights` holds the exact values of the parameters a tuning changed (relative to
the generator it started from). Applying it copies those values in place, so a render with
reloaded weights is bit-identical to the render right after tuning. The file is a plain
``torch.save`` dict of tensors and strings, loaded with ``weights_only=True``::

    {'format': 'vidinv-tuned/1', 'kind': 'pti' | 'stitch',
     'groups': [{'frames': int64 [n], 'params': {name: tensor}}, ...]}

PTI gives one group (every frame of the clip); stitching tuning one group per frame or chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from vidinv.errors import InputError
from vidinv.tuning.core import swapped

FORMAT = "vidinv-tuned/1"


@dataclass
class TunedWeights:
    """Parameters to put into a generator for some frames.

    Attributes:
        params: parameter name -> its tuned value (only the parameters that changed).
        frames: the clip's frame indices these weights serve (None = every frame).
        kind: ``'pti'`` or ``'stitch'``.
    """

    params: dict[str, Tensor]
    frames: Tensor | None = None
    kind: str = "pti"
    info: dict[str, float] = field(default_factory=dict)  # e.g. the final loss (not saved)

    @contextmanager
    def applied(self, G: nn.Module) -> Iterator[nn.Module]:
        """Within the block G holds these weights; its own come back after."""
        with swapped(G, self.params):
            yield G

    def numel(self) -> int:
        """Number of stored values."""
        return sum(int(v.numel()) for v in self.params.values())


def changed_params(G: nn.Module, before: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of G's parameters whose values differ from ``before`` (or are not in it)."""
    out = {}
    for n, p in G.named_parameters():
        if n not in before or not torch.equal(p.detach(), before[n]):
            out[n] = p.detach().clone()
    return out


def weights_to_state(weights: TunedWeights | Sequence[TunedWeights]) -> dict[str, Any]:
    """A plain dict (tensors, strings) for ``torch.save`` or a codes cache."""
    groups = [weights] if isinstance(weights, TunedWeights) else list(weights)
    if not groups:
        raise InputError("no tuned weights to store")
    kinds = {g.kind for g in groups}
    if len(kinds) != 1:
        raise InputError(f"tuned weights of different kinds cannot be stored together: {sorted(kinds)}")
    return {"format": FORMAT, "kind": groups[0].kind,
            "groups": [{"frames": (torch.empty(0, dtype=torch.int64) if g.frames is None
                                   else g.frames.to(torch.int64).cpu()),
                        "params": {k: v.detach().cpu().contiguous() for k, v in g.params.items()}}
                       for g in groups]}


def weights_from_state(state: Mapping[str, Any]) -> list[TunedWeights]:
    """The groups of :func:`weights_to_state` (an empty frame list reads back as 'every frame')."""
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise InputError(f"not a vidinv tuned-weights file (format {got!r}, expected {FORMAT!r})")
    out = []
    for g in state["groups"]:
        frames = g["frames"]
        frames = None if frames.numel() == 0 else frames
        out.append(TunedWeights(dict(g["params"]), frames, str(state["kind"])))
    return out


def save_weights(path: str | os.PathLike, weights: TunedWeights | Sequence[TunedWeights]) -> None:
    """Write tuned weights atomically (a plain tensor dict)."""
    from vidinv.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(weights_to_state(weights), tmp)


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> list[TunedWeights]:
    """Read :func:`save_weights` output with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"tuned weights file not found: {path}") from None
    except Exception as e:
        raise InputError(f"cannot read tuned weights {path}: {e}") from None
    return weights_from_state(state)


def weights_for_frame(groups: Sequence[TunedWeights], frame: int) -> TunedWeights | None:
    """The group that serves ``frame`` (a group without frames serves all), or None."""
    for g in groups:
        if g.frames is None or bool((g.frames == int(frame)).any()):
            return g
    return None
