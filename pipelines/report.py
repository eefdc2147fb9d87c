"""The run report of ``vidinv edit`` (``--report PATH``, and ``EditResult.report`` always).

What a run found and did, as plain JSON: frames, faces per frame, tracks (id, first frame, end, length),
shot cuts, the target tracks, timings per stage (seconds), the executor that ran, the options (the whole
config), chunks reused/computed per pass, the input, the output, the codes bundle and the preview.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REPORT_VERSION = 1


def clip_facts(analysis: list[dict], info, tracks: list, cuts: list[int]) -> dict:
    """The clip-wide facts of pass 1 and the plan: faces per frame, frame pts, tracks and cuts (what a codes
    bundle keeps so that a re-edit reports the same)."""
    faces = [len(f) for res in analysis for f in res["faces"]]
    pts = [int(p) for res in analysis for p in res["pts"]]
    return {
        "faces_per_frame": faces,
        "pts": pts,
        "time_base": [int(info.time_base.numerator), int(info.time_base.denominator)],
        "tracks": [track_row(t) for t in tracks],
        "cuts": [int(c) for c in cuts],
    }


def track_row(track) -> dict:
    """``{'id', 'start', 'stop', 'length'}`` of a track: its first frame, one past its last, detections."""
    frames = list(track.frames)
    return {"id": int(track.id), "start": int(frames[0]) if frames else 0,
            "stop": int(frames[-1]) + 1 if frames else 0, "length": len(frames)}


def facts_frame_times(facts: dict) -> np.ndarray:
    """Presentation time (s) of every frame from the facts' pts and time base."""
    num, den = facts["time_base"]
    return np.asarray(facts["pts"], np.float64) * (num / den)


def build_report(src: Path, result, facts: dict, cfg, executor: str, edits: list, codes: str | None = None,
                 preview: str | None = None) -> dict[str, Any]:
    """The report dict of one run (``result``: the :class:`~pipelines.edit.EditResult`)."""
    return {
        "version": REPORT_VERSION,
        "input": str(src),
        "output": result.output,
        "frames": int(result.n_frames),
        "faces_per_frame": list(facts.get("faces_per_frame", [])),
        "tracks": list(facts.get("tracks", [])),
        "cuts": list(facts.get("cuts", [])),
        "targets": [int(t) for t in result.targets],
        "faces_edited": int(result.faces_edited),
        "copied_through": bool(result.copied_through),
        "edits": [[str(n), float(s)] for n, s in edits],
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "executor": executor,
        "options": cfg.to_dict(),
        "chunks": {k: dict(v) for k, v in result.chunks.items()},
        "codes": codes,
        "preview": preview,
    }


def write_report(path: str | Path, report: dict) -> Path:
    """Write the report as indented JSON, atomically (whole or not at all)."""
    from vidinv.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")
