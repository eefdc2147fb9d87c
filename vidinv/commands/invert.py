"""vidinv invert: detect, track and invert a clip's faces once, and save the codes for re-editing.

The codes bundle (a folder) holds the faces' geometry, the shot cuts, the frame times and the codes;
``vidinv edit clip.mp4 --codes clip.codes --attr ...`` then edits without detecting or inverting again.
A bundle made from another clip or with other models is refused with a one-line error.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  vidinv invert clip.mp4 -o clip.codes
  vidinv edit clip.mp4 --codes clip.codes --attr smile --strength 2
  vidinv edit clip.mp4 --codes clip.codes --attr age=-1 --out older.mp4
"""

# the edit command's rows that also shape the codes (or their output)
INVERT_ROWS = ("--overwrite", "--flow-refine")


def add_parser(sub) -> None:
    from vidinv.commands.edit import EDIT_FLAGS, add_common_pipeline_args
    from vidinv.config import PipelineConfig, add_config_flags

    p = sub.add_parser("invert", help="invert a clip's faces once and save the codes for re-editing",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a video file")
    p.add_argument("--out", "-o", help="the codes bundle (a folder; default: <input stem>.codes beside it)")
    add_config_flags(p, [r for r in EDIT_FLAGS if r.flag in INVERT_ROWS], PipelineConfig)
    add_common_pipeline_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.codes import invert_clip
    from pipelines.edit import EditPipeline
    from vidinv.commands.edit import config_from_args

    cfg = config_from_args(args)
    pipe = EditPipeline(cfg, quiet=args.quiet, offline=True if args.offline else None)
    res = invert_clip(pipe, args.input, args.out)
    print(f"{res['output']}: {res['n_frames']} frames, {res['faces']} faces inverted "
          f"(tracks {res['targets']})")
    return 0
