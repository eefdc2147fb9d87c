"""Toy stages with no model: used by the executor tests and the scaling benchmark.

They live in the package (not in tests/) so that Ray workers can import them by name.
"""

from __future__ import annotations

import os
import time

import numpy as np


class SquareStage:
    """``item -> {'x': item, 'y': item**2, 'pid', 'node'}``, optionally sleeping to simulate work."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = float(delay)

    def __call__(self, item: int) -> dict:
        if self.delay:
            time.sleep(self.delay)
        node = None
        try:
            import ray

            if ray.is_initialized():
                node = ray.get_runtime_context().get_node_id()
        except Exception:
            node = None
        from vidinv.allocator import allocator_state

        return {"x": item, "y": item * item, "pid": os.getpid(), "node": node, "allocator": allocator_state()}


class BusyStage:
    """CPU-bound work (a small matrix product loop) for the frames/s scaling benchmark."""

    def __init__(self, size: int = 256, reps: int = 20) -> None:
        self.size, self.reps = size, reps

    def __call__(self, item: int) -> int:
        rng = np.random.default_rng(item)
        a = rng.standard_normal((self.size, self.size)).astype(np.float32)
        for _ in range(self.reps):
            a = np.tanh(a @ a.T / self.size)
        return int(item)
