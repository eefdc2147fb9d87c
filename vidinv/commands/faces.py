"""vidinv faces: list the face tracks of a clip and write a thumbnail sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  vidinv faces clip.mp4                 # prints the tracks, writes clip_faces.png
  vidinv edit clip.mp4 --face 1 --attr smile
"""


def add_parser(sub) -> None:
    from vidinv.commands.edit import add_common_pipeline_args

    p = sub.add_parser("faces", help="list the face tracks of a video", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a video file")
    p.add_argument("--sheet", help="thumbnail sheet PNG (default: <input>_faces.png beside the input)")
    add_common_pipeline_args(p)
    p.set_defaults(func=run)


def track_summary(tracks, analysis_frames: int) -> list[dict]:
    import numpy as np

    rows = []
    for tr in tracks:
        boxes = np.stack([f.bbox for f in tr.faces])
        area = float(np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        rows.append(dict(id=int(tr.id), first=int(tr.frames[0]), last=int(tr.frames[-1]), frames=len(tr.frames),
                         mean_box=float(np.sqrt(area))))
    return rows


def thumbnail_sheet(path: Path, src: Path, tracks, thumb: int = 128) -> None:
    """One thumbnail per track (its middle detection), labelled with the track id."""
    import cv2
    import numpy as np

    from vidinv.io.video import VideoReader

    if not tracks:
        return
    tiles = []
    reader = VideoReader(src)
    for tr in tracks:
        mid = len(tr.frames) // 2
        t, face = tr.frames[mid], tr.faces[mid]
        frame = reader.read_range(t, t + 1).frames[0]
        x0, y0, x1, y1 = face.bbox
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
        h, w = frame.shape[:2]
        a, b = int(max(0, cy - r)), int(min(h, cy + r))
        c, d = int(max(0, cx - r)), int(min(w, cx + r))
        tile = cv2.resize(np.ascontiguousarray(frame[a:b, c:d]), (thumb, thumb), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"#{tr.id}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        tiles.append(tile)
    sheet = np.concatenate(tiles, axis=1)
    from vidinv.atomic import atomic_path

    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def run(args: argparse.Namespace) -> int:
    from pipelines.cache import ChunkCache
    from pipelines.edit import EditPipeline
    from pipelines.geometry import plan_geometry
    from vidinv.commands.edit import config_from_args
    from vidinv.errors import InputError
    from vidinv.io.video import probe

    src = Path(args.input)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    cfg = config_from_args(args)
    info = probe(src)
    pipe = EditPipeline(cfg, quiet=args.quiet)
    analysis = pipe.analyze(src, info, ChunkCache(None, ""))
    from dataclasses import replace

    cfg_all = replace(cfg, faces=replace(cfg.faces, face="all"))
    _, tracks, cuts = plan_geometry(analysis, info.n_frames, cfg_all, 64)
    rows = track_summary(tracks, info.n_frames)
    print(f"{src}: {info.n_frames} frames, {len(rows)} face track(s), {len(cuts)} shot cut(s) {cuts if cuts else ''}".rstrip())
    print(f"{'id':>4} {'frames':>13} {'count':>6} {'size_px':>8}")
    for r in sorted(rows, key=lambda r: -r["frames"] * r["mean_box"] ** 2):
        print(f"{r['id']:>4} {r['first']:>6}-{r['last']:<6} {r['frames']:>6} {r['mean_box']:>8.0f}")
    if rows:
        sheet = Path(args.sheet) if args.sheet else src.with_name(f"{src.stem}_faces.png")
        thumbnail_sheet(sheet, src, tracks)
        print(f"thumbnails: {sheet}")
    return 0
