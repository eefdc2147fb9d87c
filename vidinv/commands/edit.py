"""vidinv edit: edit the faces of one clip, or of many clips (a folder or a glob)."""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path

from vidinv.config import ConfigFlag
from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")

EXAMPLES = """examples:
  vidinv edit clip.mp4 --attr smile --strength 2
  vidinv edit clip.mp4 --attr smile=1.5 --attr age=-1 --out edited.mp4
  vidinv edit clip.mp4 --attr eyeglasses --schedule ramp:0.5s --face all
  vidinv edit clips/ --out edited/ --attr smile --address auto      # many clips over a Ray cluster
  vidinv edit clip.mp4 --attr smile --executor local --generator G.pt --encoder 143_enc.pth
  vidinv edit clip.mp4 --invert-only --inverter e4e                  # the reconstruction, no edit
  vidinv edit clip.mp4 --attr smile --tune pti --stitch              # STIT-style tuning (best quality)
  vidinv invert clip.mp4 -o clip.codes && vidinv edit clip.mp4 --codes clip.codes --attr age=-1
  vidinv edit clip.mp4 --attr smile --report run.json --preview check.mp4 --overwrite
  vidinv edit talk.mp4 --attr smile --face all --min-face 96         # small faces (video chat)

strength: for Feature-Style W+ boundaries (smile, eyeglasses, makeup) strength 1 is the official
video script's step of 15 along the unit boundary; for the e4e InterFaceGAN W directions (age,
pose, smile_e4e) strength 1 adds 3 x the direction to every W+ layer (e4e's notebook factor 3);
a direction file given by path keeps scale 1 (strength = e4e's factor); GANSpace edits are in
units of the component's std; sefa:N in units of 3. 'vidinv directions list' shows the table.
"""


def _inverter_choices() -> list[str]:
    from vidinv.inverters.registry import available_inverters

    return available_inverters()


# Flags that set config fields (vidinv.config.PipelineConfig): one row each. A new option is one config
# field plus one row here; its default shows in --help from the dataclass.
PIPELINE_FLAGS = (
    ConfigFlag("models", "--inverter", "models.inverter", dict(
        choices=_inverter_choices,
        help="inversion method (default {default}: Feature-Style latent + feature code)")),
    ConfigFlag("models", "--generator", "models.generator", dict(
        help="generator checkpoint (rosinality or pSp layout), 'zoo' (default: the zoo's) or 'tiny'")),
    ConfigFlag("models", "--encoder", "models.encoder", dict(
        help="encoder checkpoint (fs: 143_enc.pth layout; other inverters: their official file), "
             "'zoo' (default: the zoo's) or 'tiny'")),
    ConfigFlag("models", "--device", "models.device", dict(
        help="auto | cpu | cuda | cuda:N (default {default})")),
    ConfigFlag("models", "--precision", "models.precision", dict(
        choices=["fp32", "fp16", "bf16"], help="reduced precision is a GPU option (default {default})")),
    ConfigFlag("models", "--batch-size", "models.batch_size", dict(
        type=int, help="faces per model call (default {default})")),
    ConfigFlag("models", "--allow-pickle", "models.allow_pickle", dict(
        action="store_true", help="allow checkpoints that need unpickling code (unsafe)")),
    ConfigFlag("faces", "--detector", "faces.detector", dict(
        help="auto (the best one installed with its weights) or a backend from the detector registry "
             "(vidinv.faces.detect.DETECTORS; 'vidinv doctor' shows which are usable) (default {default})")),
    ConfigFlag("faces", "--min-face", "faces.min_face", dict(
        type=int, metavar="PX",
        help="smallest face to find, in frame pixels: dlib detects on a copy sized so that such a face is "
             "found (upscaled when needed; slower for smaller faces) (default {default})")),
    ConfigFlag("faces", "--face", "faces.face", dict(
        help="largest | all | a track id from 'vidinv faces' (default {default})")),
    ConfigFlag("execution", "--executor", "execution.executor", dict(
        choices=["auto", "ray", "local"],
        help="auto (in-process unless a cluster or several GPUs help), ray or local (default {default})")),
    ConfigFlag("execution", "--address", "execution.address", dict(
        help="join a Ray cluster: auto | ray://host:port (default: $RAY_ADDRESS, else a private local Ray)")),
    ConfigFlag("execution", "--num-workers", "execution.num_workers", dict(
        type=int, help="model workers (default: GPUs, else CPUs, as Ray reports)")),
    ConfigFlag("execution", "--gpus-per-worker", "execution.gpus_per_worker", dict(
        type=float, help="GPUs per worker (default: 1 when GPUs exist, else 0)")),
    ConfigFlag("execution", "--chunk-size", "execution.chunk_size", dict(
        type=int, help="frames per task (default {default})")),
    ConfigFlag("execution", "--cache-dir", "execution.cache_dir", dict(
        help="per-chunk cache for resuming (default: beside the output)")),
    ConfigFlag("execution", "--keep-cache", "execution.keep_cache", dict(
        action="store_true", help="keep the per-chunk cache after success")),
    ConfigFlag("tuning", "--tune", "tune.method", dict(
        choices=["none", "pti"], help="pti: fine-tune the generator on the clip's frames around their "
                                      "codes after inversion (PTI, as STIT; slow, best quality) "
                                      "(default {default})")),
    ConfigFlag("tuning", "--tune-steps", "tune.pti.epochs", dict(
        type=int, help="PTI passes over the clip's tuned frames (default {default}, STIT's)")),
    ConfigFlag("tuning", "--tune-frames", "tune.pti.max_frames", dict(
        type=int, help="tune on at most this many frames spread over the clip (default: all)")),
    ConfigFlag("tuning", "--tune-per-shot", "tune.per_shot", dict(
        action="store_true", help="one tuned generator per shot (cuts) instead of one per clip")),
    ConfigFlag("tuning", "--stitch", "tune.stitch", dict(
        action="store_true", help="stitching tuning after the edit: the face's border agrees with the frame "
                                  "(STIT; per frame, or per tune.stitching.chunk frames)")),
    ConfigFlag("tuning", "--stitch-steps", "tune.stitching.steps", dict(
        type=int, help="stitching steps per frame or chunk (default {default}, STIT's)")),
)

# evaluation-only flags (vidinv eval), in the same config
EVAL_FLAGS = (
    ConfigFlag("evaluation", "--id-mode", "eval.id_mode", dict(
        choices=["mean_of_ratios", "ratio_of_means"],
        help="TL-ID/TG-ID: the mean of per-pair ratios (STIT's public metric script) or the ratio of the "
             "mean similarities (default {default})")),
)

EDIT_FLAGS = (
    ConfigFlag("edit", "--schedule", "edit.schedule", dict(
        help="constant | ramp:0.5s | keys:0=0,50=2,100=0 (default {default})")),
    ConfigFlag("edit", "--condition", "edit.condition", dict(
        action="append", metavar="ATTR",
        help="keep this attribute unchanged: every edit is projected off its direction (repeatable)")),
    ConfigFlag("edit", "--blend", "blend.method", dict(
        choices=["alpha", "laplacian", "poisson"], help="paste-back blending (default {default})")),
    ConfigFlag("edit", "--crf", "output.crf", dict(
        type=int, help="H.264 quality, lower is better (default {default})")),
    ConfigFlag("edit", "--overwrite", "output.overwrite", dict(
        action="store_true", help="replace an existing output (atomically); without it an existing output "
                                  "is an error before any work")),
    ConfigFlag("edit", "--flow-refine", "stabilize.flow_refine", dict(
        action="store_true", help="refine landmarks by Lucas-Kanade optical flow (official pipeline)")),
)


def add_common_pipeline_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``edit``, ``faces`` and ``eval``: config file, models, faces, execution."""
    from vidinv.config import PipelineConfig, add_config_flags

    p.add_argument("--config", help="a YAML file overriding the defaults (example: configs/default.yaml)")
    p.add_argument("--offline", action="store_true", help="never download (also VIDINV_OFFLINE=1)")
    add_config_flags(p, PIPELINE_FLAGS, PipelineConfig)


def config_from_args(args: argparse.Namespace):
    """The pipeline config: defaults, then ``--config FILE``, then the flags given (every table row)."""
    from vidinv.config import load_config, overrides_from_args

    return load_config(args.config, overrides_from_args(args, PIPELINE_FLAGS + EDIT_FLAGS + EVAL_FLAGS))


def add_parser(sub) -> None:
    from vidinv.config import PipelineConfig, add_config_flags

    p = sub.add_parser("edit", help="edit the faces of a video", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a video file, a folder of videos, or a glob")
    p.add_argument("--attr", action="append", default=[],
                   help="attribute to edit: a name (see 'vidinv directions list'), NAME=STRENGTH, sefa:N, "
                        "or a direction file; repeatable; required unless --invert-only")
    p.add_argument("--strength", type=float, default=1.0,
                   help="strength for --attr given without =STRENGTH (fractional and negative allowed)")
    p.add_argument("--invert-only", action="store_true",
                   help="no edit: render the inversion (a reconstruction check)")
    p.add_argument("--out", "-o", help="output file (one clip) or folder (many clips); default: <input>_<attr>.mp4")
    p.add_argument("--allow-no-face", action="store_true",
                   help="copy a clip with no face through unchanged instead of failing")
    p.add_argument("--codes", metavar="BUNDLE",
                   help="re-edit from a codes bundle of 'vidinv invert' (no detection or inversion again)")
    p.add_argument("--report", metavar="PATH.json",
                   help="write the run report as JSON (frames, faces, tracks, cuts, timings, options, chunks)")
    p.add_argument("--preview", metavar="PATH.mp4",
                   help="write a side-by-side preview: original | inversion | edit crops, one row per edited face "
                        "(many clips: a folder, each clip's preview mirrored under it like the outputs)")
    add_config_flags(p, EDIT_FLAGS, PipelineConfig)
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

    inputs = expand_inputs(args.input)
    if bool(args.attr) == bool(args.invert_only):
        raise VidinvError("give --attr NAME (see 'vidinv directions list') to edit, or --invert-only to "
                          "render the inversion" if not args.attr else "--attr and --invert-only exclude each other")
    edits = parse_attr_args(args.attr, args.strength)
    cfg = config_from_args(args)
    offline = True if args.offline else None
    if len(inputs) == 1 and not Path(args.input).is_dir():
        from pipelines.edit import EditPipeline

        pipe = EditPipeline(cfg, quiet=args.quiet, offline=offline)
        res = pipe(inputs[0], args.out, edits, allow_no_face=args.allow_no_face, codes=args.codes,
                   report=args.report, preview=args.preview)
        if res.copied_through:
            print(f"{inputs[0]}: no face found; copied through unchanged -> {res.output}")
        else:
            print(f"{res.output}: {res.n_frames} frames, {res.faces_edited} faces edited (tracks {res.targets})")
        return 0
    from pipelines.batch import edit_many
    from pipelines.outputs import check_folder

    if args.codes:
        raise InputError("--codes takes one clip, not a folder or a pattern (one bundle per clip)")
    preview_dir = Path(args.preview) if args.preview else None
    if preview_dir is not None:
        if preview_dir.suffix.lower() == ".mp4":
            raise InputError(f"--preview {preview_dir}: with many clips --preview names a folder (each clip's "
                             "preview is written under it, mirrored like the outputs)")
        check_folder(preview_dir, f"--preview {preview_dir}", create=True)
    if args.report:
        from pipelines.outputs import existing_output

        existing_output(args.report, cfg.output.overwrite, "report")
    out_dir = Path(args.out or "edited")
    check_folder(out_dir, f"--out {out_dir}", create=True)  # OUT may be created: its last level only
    root = Path(args.input) if Path(args.input).is_dir() else None
    summary = edit_many(inputs, out_dir, edits, cfg, quiet=args.quiet, offline=offline,
                        allow_no_face=args.allow_no_face, root=root, preview_dir=preview_dir)
    failed = [s for s in summary if s["status"] != "ok"]
    for s in summary:
        print(f"{s['status']:>6}  {s['input']}" + (f" -> {s['output']}" if s.get("output") else f"  ({s.get('error')})"))
    print(f"{len(summary) - len(failed)} of {len(summary)} clips edited")
    if args.report:
        from pipelines.report import write_report

        write_report(args.report, {"clips": summary})
    return 1 if failed else 0
