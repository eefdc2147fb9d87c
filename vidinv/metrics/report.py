"""Evaluate clips (source crops vs. one or more methods' crops) and write the reports.

:func:`evaluate_clip` computes, for one clip, the per-frame rows (SSIM, PSNR, MSE, LPIPS,
ID vs. the source) and the per-clip figures (IC of every method and of the source clip,
TL-ID, TG-ID, frame means). :func:`write_outputs` turns the results of many clips into
``<video>.csv`` files, ``summary.json``, ``ic_boxplot.png`` (the Feature-Style paper's
Fig. 9 style box plot of IC per method) and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from vidinv.errors import InputError
from vidinv.metrics.consistency import DEFAULT_MODE, identity_consistency, pairwise_id, temporal_identity
from vidinv.metrics.image import mse, psnr, ssim

__all__ = ["FRAME_METRICS", "CLIP_METRICS", "SOURCE", "evaluate_clip", "summarize", "write_outputs"]

SOURCE = "source"
FRAME_METRICS = ("ssim", "psnr", "mse", "lpips", "id")
CLIP_METRICS = ("ic", "tl_id", "tg_id") + tuple(f"{m}_mean" for m in FRAME_METRICS)
ClipResult = tuple[list[dict], dict]


def _check_clip(x: Any, name: str, like: Optional[tuple] = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"{name} must be uint8 [T,S,S,3] RGB crops, got {a.dtype} {tuple(a.shape)}")
    if like is not None and a.shape != like:
        raise InputError(f"{name} has shape {tuple(a.shape)}, the source crops {like}")
    if a.shape[0] == 0:
        raise InputError(f"{name} holds no frame")
    return a


def _finite_mean(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def evaluate_clip(source_crops: np.ndarray, methods: Mapping[str, np.ndarray], backend: Any,
                  lpips: Any = None, id_mode: str = DEFAULT_MODE) -> ClipResult:
    """All metrics of one clip, for every method against the source crops.

    Args:
        source_crops: uint8 ``[T,S,S,3]`` aligned crops of the source video.
        methods: method name -> uint8 ``[T,S,S,3]`` crops of the same frames (e.g. the
            inversion, an edit); the name ``'source'`` is reserved.
        backend: an :class:`~vidinv.metrics.identity.IdentityBackend`.
        lpips: an :class:`~vidinv.metrics.image.LPIPSMetric` or None (column left NaN).
        id_mode: how TL-ID/TG-ID normalise by the source (``'mean_of_ratios'``, the default, or
            ``'ratio_of_means'``; see :func:`~vidinv.metrics.consistency.tl_id`).

    Returns:
        ``(rows, clip)``: ``rows`` one dict per (method, frame) with keys ``method,
        frame`` and :data:`FRAME_METRICS`; ``clip`` = ``{'n_frames', 'identity_backend',
        'lpips', 'methods': {name: {metric: float}}}`` where ``methods['source']`` holds
        the source clip's IC (and TL-ID = TG-ID = 1 by definition), every other method
        :data:`CLIP_METRICS`. PSNR is ``inf`` for identical frames; the ``*_mean`` figures
        average the finite values only.

    Raises:
        InputError: malformed crops, mismatched shapes, or no method.

    Shape:
        - source_crops and every method: ``[T,S,S,3]``.
    """
    src = _check_clip(source_crops, "source_crops")
    if not methods:
        raise InputError("evaluate_clip needs at least one method to compare with the source")
    if SOURCE in methods:
        raise InputError(f"method name {SOURCE!r} is reserved for the source clip")
    clips = {k: _check_clip(v, f"method {k!r}", src.shape) for k, v in methods.items()}
    e_src = backend.embed(src)
    T = src.shape[0]
    rows: list[dict] = []
    per: dict[str, dict] = {SOURCE: {"ic": identity_consistency(e_src), "tl_id": 1.0 if T > 1 else math.nan,
                                     "tg_id": 1.0 if T > 1 else math.nan}}
    for name, x in clips.items():
        e = backend.embed(x)
        frame = {"ssim": ssim(src, x), "psnr": psnr(src, x), "mse": mse(src, x),
                 "lpips": lpips(src, x) if lpips is not None else np.full(T, np.nan),
                 "id": pairwise_id(e_src, e)}
        for t in range(T):
            rows.append({"method": name, "frame": t, **{k: float(frame[k][t]) for k in FRAME_METRICS}})
        tid = temporal_identity(e, e_src, id_mode)
        per[name] = {"ic": identity_consistency(e), "tl_id": tid["tl_id"], "tg_id": tid["tg_id"],
                     **{f"{k}_mean": _finite_mean(frame[k]) for k in FRAME_METRICS}}
    clip = {"n_frames": T, "identity_backend": getattr(backend, "name", type(backend).__name__),
            "lpips": lpips is not None, "id_mode": id_mode, "methods": per}
    return rows, clip


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "median": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()), "n": int(v.size)}


def summarize(results: Mapping[str, ClipResult]) -> dict:
    """Mean / median / std (population) of every per-clip metric per method across clips.

    Non-finite values (undefined metrics, infinite PSNR) are left out; ``n`` says how many
    clips each statistic is over, and a statistic over none is ``None``.

    Returns:
        ``{method: {metric: {'mean', 'median', 'std', 'n'}}}``.
    """
    methods: dict[str, dict[str, list]] = {}
    for _, clip in results.values():
        for name, figs in clip["methods"].items():
            bucket = methods.setdefault(name, {})
            for k, v in figs.items():
                bucket.setdefault(k, []).append(v)
    return {name: {k: _stats(v) for k, v in figs.items()} for name, figs in methods.items()}


def _safe_name(video: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(video)).strip("_") or "video"


def _fmt(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _boxplot(path: Path, results: Mapping[str, ClipResult], order: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data, labels = [], []
    for name in order:
        v = [clip["methods"][name]["ic"] for _, clip in results.values() if name in clip["methods"]]
        v = [x for x in v if x is not None and math.isfinite(x)]
        if v:
            data.append(v)
            labels.append(name)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * max(len(data), 1), 4.0))
    if data:
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20)
    else:
        ax.text(0.5, 0.5, "no clip with 2+ frames", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("Identity Consistency (IC)")
    ax.set_title(f"IC per method over {len(results)} clip(s)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(out_dir: Union[str, Path], results: Mapping[str, ClipResult], backend_name: str,
                  notes: Union[str, Sequence[str], None] = None, lpips_reason: str = "",
                  id_mode: Optional[str] = None) -> dict[str, Path]:
    """Write the evaluation of many clips.

    Files: ``<video>.csv`` per clip (one row per method and frame), ``summary.json``
    (statistics of :func:`summarize` plus the per-clip figures, the identity backend,
    whether LPIPS ran, and the notes; strict JSON, non-finite values as ``null``),
    ``ic_boxplot.png`` and ``report.md``.

    Args:
        out_dir: output folder (created).
        results: video name -> :func:`evaluate_clip` result.
        backend_name: the identity backend's name (``backend.name``).
        notes: free lines added to the report (e.g. the sampling seed, the dataset).
        lpips_reason: why LPIPS did not run, when it did not (``'LPIPS unavailable: ...'``).
        id_mode: the TL-ID/TG-ID mode named in the outputs (default: the clips' own, see
            :func:`evaluate_clip`).

    Returns:
        ``{'csv': [paths...], 'summary': path, 'boxplot': path, 'report': path}``
        (the csv entry is a list).

    Raises:
        InputError: no result to write.
    """
    from vidinv.atomic import atomic_write_text

    if not results:
        raise InputError("write_outputs got no clip result")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = [notes] if isinstance(notes, str) else list(notes or [])
    lpips_ran = all(clip.get("lpips", False) for _, clip in results.values())
    csvs = _write_csvs(out, results)
    summary = summarize(results)
    if id_mode is None:
        modes = sorted({str(c.get("id_mode", DEFAULT_MODE)) for _, c in results.values()})
        id_mode = modes[0] if len(modes) == 1 else "mixed: " + ", ".join(modes)
    order = [SOURCE] + sorted({m for _, c in results.values() for m in c["methods"]} - {SOURCE})
    doc = {"identity_backend": backend_name, "lpips": {"available": lpips_ran, "reason": "" if lpips_ran else
                                                       (lpips_reason or "LPIPS unavailable")},
           "id_mode": id_mode, "n_clips": len(results), "methods": order, "summary": summary,
           "clips": {v: c for v, (_, c) in results.items()}, "notes": notes}
    sp = atomic_write_text(out / "summary.json", json.dumps(_json_clean(doc), indent=2, allow_nan=False))
    bp = out / "ic_boxplot.png"
    _boxplot(bp, results, order)
    rp = atomic_write_text(out / "report.md", "\n".join(_report_lines(doc, order, lpips_ran)))
    return {"csv": csvs, "summary": sp, "boxplot": bp, "report": rp}


def _write_csvs(out: Path, results: Mapping[str, ClipResult]) -> list[Path]:
    """``<video>.csv`` per clip: one row per method and frame (names made safe and unique)."""
    csvs, used = [], set()
    for video, (rows, _) in results.items():
        stem = _safe_name(video)
        while stem in used:
            stem += "_"
        used.add(stem)
        p = out / f"{stem}.csv"
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["method", "frame", *FRAME_METRICS])
            w.writeheader()
            for r in rows:
                w.writerow({k: _fmt(r[k]) for k in w.fieldnames})
        csvs.append(p)
    return csvs


def _json_clean(v: Any) -> Any:
    """Plain JSON data: numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _report_lines(doc: dict, order: list[str], lpips_ran: bool) -> list[str]:
    """``report.md``: the backend, LPIPS, the TL-ID/TG-ID mode, a table of clip metrics per method, notes."""
    backend_name, id_mode, summary, notes = doc["identity_backend"], doc["id_mode"], doc["summary"], doc["notes"]

    def cell(s: dict) -> str:
        return "n/a" if s["mean"] is None else f"{s['mean']:.4g} ± {s['std']:.2g} (median {s['median']:.4g})"

    lines = ["# vidinv evaluation", "", f"- identity backend: **{backend_name}**",
             f"- LPIPS: {'available (AlexNet, v0.1)' if lpips_ran else doc['lpips']['reason']}",
             f"- TL-ID/TG-ID mode: **{id_mode}**", f"- clips: {doc['n_clips']}", ""]
    lines += ["| method | " + " | ".join(CLIP_METRICS) + " |", "|---" * (len(CLIP_METRICS) + 1) + "|"]
    for name in order:
        s = summary.get(name, {})
        lines.append(f"| {name} | " + " | ".join(cell(s[k]) if k in s else "—" for k in CLIP_METRICS) + " |")
    lines += ["", "Mean ± std (median) over clips; IC is eq. (9) of the Feature-Style paper, TL-ID/TG-ID as in "
              f"STIT (1 = as consistent as the source; {id_mode.replace('_', ' ')}). "
              "PSNR means leave out identical frames (inf).", "",
              "![IC per method](ic_boxplot.png)", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return lines
