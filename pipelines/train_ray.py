"""Data-parallel training of the Feature-Style encoder on Ray Train (``vidinv train --executor ray``).

Each Ray Train worker runs the same :class:`vidinv.training.trainer.Trainer` as the local executor,
with its world rank and size: the encoder is wrapped by ``ray.train.torch.prepare_model`` (DDP when
there is more than one worker; gradients are averaged across workers), every rank reads its own
shard of the real images (:class:`~vidinv.training.data.StepBatchSampler`) and samples its own
synthetic faces, so the global batch is ``num_workers x (batch_real + batch_synth)``. Rank 0
writes the run directory (which must be reachable from the rank-0 node: shared storage on a
cluster) and reports the logged losses to Ray; the final report carries ``enc.pth`` as a Ray
checkpoint. This module is the only place that imports ray for training.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["train_with_ray", "train_loop_per_worker"]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The per-worker training function (runs inside a Ray Train worker)."""
    import ray.train
    import ray.train.torch

    from vidinv.training.trainer import Trainer, TrainConfig

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.from_dict(config["cfg"])
    device = ray.train.torch.get_device()
    kwargs = {"find_unused_parameters": True} if "no_feature" in cfg.ablate else None

    def wrap(model):
        return ray.train.torch.prepare_model(model, move_to_device=False, parallel_strategy_kwargs=kwargs)

    trainer = Trainer(cfg, device=device, rank=rank, world=world, wrap=wrap)
    if config.get("resume"):
        trainer.load_state(config["resume"])

    def report(row: dict, step: int) -> None:
        ray.train.report({k: v for k, v in row.items() if isinstance(v, (int, float))})

    last = trainer.fit(config["out"], data_dir=config.get("data"), val_dir=config.get("val") if rank == 0 else None,
                       progress=False, report=report)
    metrics = {k: v for k, v in last.items() if isinstance(v, (int, float))}
    metrics["step"] = trainer.step
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save_encoder(Path(tmp) / "enc.pth")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def train_with_ray(cfg, out: str | Path, data_dir: str | Path | None = None, val_dir: str | Path | None = None,
                   resume: str | Path | None = None, num_workers: int = 1, use_gpu: bool = False,
                   address: str | None = None, cpus_per_worker: float | None = None) -> dict[str, Any]:
    """Run :func:`train_loop_per_worker` on ``num_workers`` Ray Train workers.

    Args:
        cfg: a :class:`~vidinv.training.trainer.TrainConfig`.
        out: the run directory (rank 0 writes it; Ray's own records go to ``out/ray``).
        data_dir, val_dir: image folders (paths as seen by the workers).
        resume: a ``state.pt`` to start from.
        num_workers: data-parallel workers; ``use_gpu``: one GPU each.
        address: Ray cluster address (None: a running/local instance or ``$RAY_ADDRESS``).
        cpus_per_worker: CPUs reserved per worker (default 1).

    Returns:
        The metrics of rank 0's final report (step, loss terms, validation).
    """
    import ray

    from vidinv.errors import VidinvError

    try:
        from ray.train import RunConfig, ScalingConfig
    except ImportError as e:
        raise VidinvError(f"the ray executor needs Ray Train: pip install 'ray[train]' ({e})") from None
    from ray.train.torch import TorchTrainer

    if num_workers < 1:
        raise VidinvError(f"--num-workers must be >= 1, got {num_workers}")
    out = Path(out).resolve()
    if not ray.is_initialized():
        from pipelines.executors import init_ray

        init_ray(address)
    config = {
        "cfg": cfg.to_dict(),
        "out": str(out),
        "data": str(Path(data_dir).resolve()) if data_dir is not None else None,
        "val": str(Path(val_dir).resolve()) if val_dir is not None else None,
        "resume": str(Path(resume).resolve()) if resume is not None else None,
    }
    resources = {"CPU": cpus_per_worker} if cpus_per_worker is not None else None
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name="vidinv_train", storage_path=str(out / "ray")),
    )
    result = trainer.fit()
    if getattr(result, "error", None) is not None:
        raise VidinvError(f"Ray training failed: {result.error}")
    return dict(result.metrics or {})
