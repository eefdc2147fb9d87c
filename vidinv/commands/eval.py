"""vidinv eval ravdess ROOT: Identity Consistency (and Table 3 metrics) over RAVDESS-style clips."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  vidinv eval ravdess /data/RAVDESS --num-videos 120 --seed 0 --out eval/
  vidinv eval ravdess /data/RAVDESS --actors 1,2 --emotions happy,sad --attr smile --strength 1
  vidinv eval ravdess ROOT --identity dlib --executor local --generator tiny --encoder tiny
  vidinv eval ravdess ROOT --inverters fs,e4e,hfgi --checkpoint hfgi=hfgi.pt
  vidinv eval ravdess ROOT --tune pti --id-mode ratio_of_means   # adds the PTI-tuned rows (fs+pti)

outputs: one CSV per video, summary.json (mean/median/std per metric and method), ic_boxplot.png
(Fig. 9 style), report.md (names the identity backend: figures from different backends are not comparable).
"""


def _csv_list(s: str | None):
    return None if not s else [x.strip() for x in s.split(",") if x.strip()]


def _pairs(items: list[str]) -> dict[str, str]:
    from vidinv.errors import VidinvError

    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise VidinvError(f"--checkpoint {it}: expected NAME=PATH")
        out[name] = path
    return out


def add_parser(sub) -> None:
    from vidinv.commands.edit import add_common_pipeline_args

    p = sub.add_parser("eval", help="evaluate inversion consistency over a dataset", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["ravdess"], help="dataset layout")
    p.add_argument("root", help="the dataset's root folder (Actor_XX/...)")
    p.add_argument("--num-videos", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--actors", help="comma-separated actor numbers")
    p.add_argument("--emotions", help="comma-separated emotion names or codes")
    p.add_argument("--modalities", help="comma-separated modality names or codes (full-AV, video-only, audio-only)")
    p.add_argument("--attr", action="append", default=[], help="also evaluate an edit (as in `vidinv edit`)")
    p.add_argument("--strength", type=float, default=1.0)
    p.add_argument("--identity", default="auto", help="auto | arcface | insightface | dlib")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--metric-size", type=int, default=256, help="crops are compared at this size")
    p.add_argument("--inverters", help="compare inverters on the same crops, e.g. fs,e4e,hfgi (one box each in the plot)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="an inverter's own checkpoint instead of the zoo's; repeatable")
    p.add_argument("--out", "-o", default="vidinv_eval", help="output folder")
    from vidinv.commands.edit import EVAL_FLAGS
    from vidinv.config import PipelineConfig, add_config_flags

    add_config_flags(p, EVAL_FLAGS, PipelineConfig)
    add_common_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.evaluate import evaluate_ravdess
    from vidinv.commands.edit import config_from_args
    from vidinv.editing.attributes import parse_attr_args
    from vidinv.errors import InputError

    root = Path(args.root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    cfg = config_from_args(args)
    actors = [int(a) for a in _csv_list(args.actors)] if args.actors else None
    summary = evaluate_ravdess(
        root, Path(args.out), cfg, num_videos=args.num_videos, seed=args.seed, actors=actors,
        emotions=_csv_list(args.emotions), modalities=_csv_list(args.modalities),
        edits=parse_attr_args(args.attr, args.strength), identity=args.identity,
        lpips_net=None if args.no_lpips else "alex", offline=True if args.offline else None, quiet=args.quiet,
        metric_size=args.metric_size, inverters=_csv_list(args.inverters), checkpoints=_pairs(args.checkpoint),
    )
    n_ok = summary.get("n_ok", 0) if isinstance(summary, dict) else 0
    n_failed = summary.get("n_failed", 0) if isinstance(summary, dict) else 0
    print(f"evaluated {n_ok} clip(s), {n_failed} failed; results in {args.out}/ (summary.json, report.md, ic_boxplot.png)")
    return 0 if n_ok else 1
