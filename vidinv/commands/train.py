"""vidinv train: train the Feature-Style encoder for a (frozen) StyleGAN2 generator."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vidinv.config import ConfigFlag
from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

EXAMPLES = """examples:
  vidinv train --config configs/train_faces.yaml --data ffhq_crops/ --val celeba_hq/ \\
      --generator psp_ffhq_encode.pt --out runs/fs
  vidinv train --config configs/train_faces.yaml --data ffhq_crops/ --generator zoo --out runs/fs --resume
  vidinv train --config configs/train_faces.yaml --data crops/ --generator G.pt --out runs/x --ablate no_parsing
  vidinv train --config configs/train_faces.yaml --data crops/ --generator G.pt --out runs/x \\
      --executor ray --num-workers 4 --use-gpu
  vidinv train --config configs/train_generic.yaml --data crops/ --generator tiny --out /tmp/t \\
      --set epochs=1 --set iters_per_epoch=20

Writes RUN_DIR/enc.pth (a plain FSEncoder state_dict, the official 143_enc.pth layout, usable by
`vidinv edit --encoder`), RUN_DIR/state.pt (resumable: encoder, optimizer, scheduler, step, RNG states),
log.csv, val.csv, samples/*.png and checkpoints/enc_<step>.pth at each epoch end.
"""


# Flags that set TrainConfig fields: one row each (any other key: --set KEY=VALUE). Their help names no
# default: building the parser must not import the trainer (torch); the config file and TrainConfig hold them.
TRAIN_FLAGS = (
    ConfigFlag("config", "--generator", "generator", dict(
        help="generator checkpoint, zoo name, 'zoo' or 'tiny'")),
    ConfigFlag("config", "--ablate", "ablate", dict(
        action="append", metavar="NAME", help="ablation (repeatable): no_mse, no_identity, no_parsing, "
                                              "single_scale_lpips, no_feature, real_only")),
    ConfigFlag("config", "--epochs", "epochs", dict(type=int, help="override epochs")),
    ConfigFlag("config", "--iters-per-epoch", "iters_per_epoch", dict(
        type=int, help="override iters_per_epoch")),
    ConfigFlag("config", "--device", "device", dict(help="auto | cpu | cuda | cuda:N (local executor)")),
    ConfigFlag("config", "--seed", "seed", dict(type=int, help="override the run's seed")),
)


def add_parser(sub) -> None:
    from vidinv.config import add_config_flags

    p = sub.add_parser("train", help="train the Feature-Style encoder", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="training YAML (configs/train_faces.yaml, configs/train_generic.yaml)")
    p.add_argument("--data", help="folder of aligned crops (real images), searched recursively")
    p.add_argument("--val", help="held-out folder for validation MSE / LPIPS / ID")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="STATE",
                   help="resume from a training state (default RUN_DIR/state.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (dotted, YAML value), e.g. --set loss.parsing=0")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: this process; ray: Ray Train data-parallel workers")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (ray executor)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a private local Ray)")
    add_config_flags(p, TRAIN_FLAGS)
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    """``['a.b=1', 'c=[1, 2]']`` -> ``{'a.b': 1, 'c': [1, 2]}`` (values parsed as YAML)."""
    import yaml

    out = {}
    for it in items:
        if "=" not in it:
            raise VidinvError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def build_config(args: argparse.Namespace):
    """Flags -> :class:`~vidinv.training.trainer.TrainConfig`."""
    from vidinv.training.trainer import load_train_config

    from vidinv.config import overrides_from_args

    ov = parse_overrides(args.set)
    ov.update(overrides_from_args(args, TRAIN_FLAGS))
    return load_train_config(args.config, ov)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    out = Path(args.out)
    for name in ("data", "val"):
        d = getattr(args, name)
        if d is not None and not Path(d).is_dir():
            raise InputError(f"--{name} folder not found: {d}")
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else out / "state.pt"
        if not resume.is_file():
            raise InputError(f"no training state to resume at {resume}")
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    quiet = bool(getattr(args, "quiet", False))
    if args.executor == "ray":
        import importlib

        try:
            train_ray = importlib.import_module("pipelines.train_ray")
        except ModuleNotFoundError as e:
            raise VidinvError(f"the ray executor needs the pipelines package and ray ({e})") from None
        result = train_ray.train_with_ray(cfg, out, data_dir=args.data, val_dir=args.val, resume=resume,
                                          num_workers=args.num_workers, use_gpu=args.use_gpu, address=args.address)
    else:
        from vidinv.training.trainer import Trainer

        trainer = Trainer(cfg)
        if resume is not None:
            trainer.load_state(resume)
            log.info("resumed from %s at step %d", resume, trainer.step)
        result = trainer.fit(out, data_dir=args.data, val_dir=args.val, progress=not quiet)
    if not quiet:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float) and k != "sec_per_step")
        print(f"trained to step {result.get('step', '?')}: {shown}")
        print(f"encoder: {out / 'enc.pth'}  state: {out / 'state.pt'}")
    return 0
