"""``vidinv edit``: edit the faces of one clip, or of many clips (a folder or a glob)."""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path

from vidinv.errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")

EXAMPLES = """examples:
  vidinv edit clip.mp4 --attr smile --strength 2
  vidinv edit clip.mp4 --attr smile=1.5 --attr age=-1 --out edited.mp4
  vidinv edit clip.mp4 --attr eyeglasses --schedule ramp:0.5s --face all
  vidinv edit clips/ --out edited/ --attr smile --address auto      # many clips over a Ray cluster
  vidinv edit clip.mp4 --attr smile --executor local --generator G.pt --encoder 143_enc.pth

strength: for Feature-Style W+ boundaries (smile, eyeglasses, makeup) strength 1 is the official
video script's step of 15 along the unit boundary; for the e4e InterFaceGAN W directions (age,
pose, smile_e4e) strength 1 adds 3 x the direction to every W+ layer (e4e's notebook factor 3);
a direction file given by path keeps scale 1 (strength = e4e's factor); GANSpace edits are in
units of the component's std; sefa:N in units of 3. `vidinv directions list` shows the table.
"""


def add_common_pipeline_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``edit``, ``faces`` and ``eval``: config, models, execution."""
    from vidinv.inverters.registry import available_inverters

    g = p.add_argument_group("models")
    g.add_argument("--config", help="a YAML file overriding configs/default.yaml")
    g.add_argument("--inverter", choices=available_inverters(),
                   help="inversion method (default fs: Feature-Style latent + feature code)")
    g.add_argument("--generator", help="generator checkpoint (rosinality or pSp layout); default: the zoo's, or 'tiny'")
    g.add_argument("--encoder", help="encoder checkpoint (fs: 143_enc.pth layout; other inverters: their official file); default: the zoo's, or 'tiny'")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="reduced precision is a GPU option")
    g.add_argument("--batch-size", type=int, help="faces per model call")
    g.add_argument("--offline", action="store_true", help="never download (also VIDINV_OFFLINE=1)")
    g.add_argument("--allow-pickle", action="store_true", help="allow checkpoints that need unpickling code (unsafe)")
    f = p.add_argument_group("faces")
    f.add_argument("--detector", help="auto | dlib | fan | insightface")
    f.add_argument("--face", help="largest (default) | all | a track id from `vidinv faces`")
    e = p.add_argument_group("execution")
    e.add_argument("--executor", choices=["ray", "local"], help="ray (default) or local (in-process)")
    e.add_argument("--address", help="join a Ray cluster: auto | ray://host:port (default: embedded local Ray or $RAY_ADDRESS)")
    e.add_argument("--num-workers", type=int, help="model workers (default: GPUs, else CPUs, as Ray reports)")
    e.add_argument("--gpus-per-worker", type=float)
    e.add_argument("--chunk-size", type=int, help="frames per task")
    e.add_argument("--cache-dir", help="per-chunk cache for resuming (default: beside the output)")
    e.add_argument("--keep-cache", action="store_true", help="keep the per-chunk cache after success")


def config_from_args(args: argparse.Namespace):
    from vidinv.config import load_config

    overrides = {
        "models": dict(inverter=args.inverter, generator=args.generator, encoder=args.encoder, device=args.device,
                       precision=args.precision, batch_size=args.batch_size,
                       allow_pickle=True if args.allow_pickle else None),
        "faces": dict(detector=args.detector, face=args.face),
        "execution": dict(executor=args.executor, address=args.address, num_workers=args.num_workers,
                          gpus_per_worker=args.gpus_per_worker, chunk_size=args.chunk_size,
                          cache_dir=args.cache_dir, keep_cache=True if args.keep_cache else None),
    }
    extra = getattr(args, "_extra_overrides", None)
    if extra:
        for k, v in extra.items():
            overrides.setdefault(k, {}).update(v)
    return load_config(args.config, overrides)


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help="edit the faces of a video", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a video file, a folder of videos, or a glob")
    p.add_argument("--attr", action="append", default=[],
                   help="attribute to edit: a name (see `vidinv directions list`), NAME=STRENGTH, sefa:N, or a direction file; repeatable")
    p.add_argument("--strength", type=float, default=1.0, help="strength for --attr given without =STRENGTH (fractional and negative allowed)")
    p.add_argument("--schedule", help="constant (default) | ramp:0.5s | keys:0=0,50=2,100=0")
    p.add_argument("--out", "-o", help="output file (one clip) or folder (many clips); default: <input>_<attr>.mp4")
    p.add_argument("--blend", choices=["alpha", "laplacian", "poisson"], help="paste-back blending")
    p.add_argument("--crf", type=int, help="H.264 quality (lower is better; default 18)")
    p.add_argument("--condition", action="append", default=[], metavar="ATTR",
                   help="keep this attribute unchanged: every edit is projected off its direction (repeatable)")
    p.add_argument("--flow-refine", action="store_true", help="refine landmarks by Lucas-Kanade optical flow (official pipeline)")
    p.add_argument("--allow-no-face", action="store_true", help="copy a clip with no face through unchanged instead of failing")
    add_common_pipeline_args(p)
    p.set_defaults(func=run)


def expand_inputs(spec: str) -> list[Path]:
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS and f.is_file())
        if not files:
            raise InputError(f"{spec}: no video files in this folder")
        return files
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        if not files:
            raise InputError(f"{spec}: the pattern matches no file")
        return files
    if not p.exists():
        raise InputError(f"{spec}: no such file")
    return [p]


def run(args: argparse.Namespace) -> int:
    from vidinv.editing.attributes import parse_attr_args

    edits = parse_attr_args(args.attr, args.strength)
    args._extra_overrides = {
        "blend": {"method": args.blend} if args.blend else {},
        "output": {"crf": args.crf} if args.crf is not None else {},
        "edit": dict(({"schedule": args.schedule} if args.schedule else {}),
                     **({"condition": list(args.condition)} if args.condition else {})),
        "stabilize": {"flow_refine": True} if args.flow_refine else {},
    }
    cfg = config_from_args(args)
    inputs = expand_inputs(args.input)
    offline = True if args.offline else None
    if len(inputs) == 1 and not Path(args.input).is_dir():
        from pipelines.edit import EditPipeline

        pipe = EditPipeline(cfg, quiet=args.quiet, offline=offline)
        res = pipe(inputs[0], args.out, edits, allow_no_face=args.allow_no_face)
        if res.copied_through:
            print(f"{inputs[0]}: no face found; copied through unchanged -> {res.output}")
        else:
            print(f"{res.output}: {res.n_frames} frames, {res.faces_edited} faces edited (tracks {res.targets})")
        return 0
    from pipelines.batch import edit_many

    out_dir = Path(args.out or "edited")
    summary = edit_many(inputs, out_dir, edits, cfg, quiet=args.quiet, offline=offline, allow_no_face=args.allow_no_face)
    failed = [s for s in summary if s["status"] != "ok"]
    for s in summary:
        print(f"{s['status']:>6}  {s['input']}" + (f" -> {s['output']}" if s.get("output") else f"  ({s.get('error')})"))
    print(f"{len(summary) - len(failed)} of {len(summary)} clips edited")
    return 1 if failed else 0
