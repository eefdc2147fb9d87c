"""Identity Consistency evaluation over a RAVDESS-style tree (the Feature-Style paper's Fig. 9 / Table 3).

Each sampled clip is inverted (and optionally edited) by the same pipeline as ``vidinv edit``;
clips are spread over Ray tasks (one clip per task, the whole pipeline in-process on its worker),
the metrics are computed where the crops are, and only per-clip rows come back to the driver.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

from vidinv.config import PipelineConfig

log = logging.getLogger(__name__)


def tuned_tag(cfg) -> str:
    """The suffix of the tuned rows' method names: ``+pti``, ``+pti+stitch``, ``+stitch``."""
    return ("+pti" if cfg.tune.method == "pti" else "") + ("+stitch" if cfg.tune.stitch else "")


def _eval_one(cfg_dicts: dict, src: str, edits: list, identity: str, lpips_net: str | None,
              offline: bool | None, metric_size: int, id_mode: str = "mean_of_ratios") -> dict:
    """One clip, every inverter: ``cfg_dicts`` maps an inverter name to its resolved pipeline config.
    With tuning configured, each inverter also gets its tuned rows (e.g. ``fs+pti``, ``fs+pti+edit``)."""
    from pipelines.edit import EditPipeline
    from pipelines.reconstruct import reconstruct_clip
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config
    from vidinv.errors import VidinvError
    from vidinv.metrics.identity import get_identity_backend
    from vidinv.metrics.report import evaluate_clip

    try:
        methods, source, frames, rec = {}, None, None, {}
        single = len(cfg_dicts) == 1
        for name, cfg_dict in cfg_dicts.items():
            cfg = load_config(overrides=cfg_dict)
            pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True, offline=offline)
            rec = reconstruct_clip(pipe, src, edits, metric_size=metric_size)
            if source is None:
                source, frames = rec["source"], rec["frames"]
            elif rec["frames"] != frames:
                raise VidinvError(f"{name}: the face track differs between inverters ({len(rec['frames'])} vs {len(frames)} frames)")
            methods["inversion" if single else name] = rec["inversion"]
            if rec["edit"] is not None:
                methods["edit" if single else f"{name}+edit"] = rec["edit"]
            if rec.get("tuned") is not None:
                tag = f"{name}{tuned_tag(cfg)}"
                methods[tag] = rec["tuned"]["inversion"]
                if rec["tuned"]["edit"] is not None:
                    methods[f"{tag}+edit"] = rec["tuned"]["edit"]
        backend = get_identity_backend(identity)
        lp = None
        if lpips_net:
            from vidinv.metrics.image import LPIPSMetric, lpips_available

            ok, _ = lpips_available()
            lp = LPIPSMetric() if ok else None
        rows, clip = evaluate_clip(source, methods, backend, lpips=lp, id_mode=id_mode)
        return {"input": src, "status": "ok", "rows": rows, "clip": clip, "backend": backend.name,
                "frames": len(rec["frames"]), "n_frames": rec["n_frames"]}
    except Exception as exc:  # reported in the summary; never stops the other clips
        msg = str(exc) if isinstance(exc, VidinvError) else f"{type(exc).__name__}: {exc}"
        return {"input": src, "status": "failed", "error": msg}


def _method_configs(cfg: PipelineConfig, inverters, checkpoints, offline) -> dict[str, dict]:
    """Each compared method's config (as a dict for the clip tasks), its files resolved now: a missing file
    fails here, before any clip."""
    from pipelines.components import resolve_model_spec

    out = {}
    for name in inverters or [cfg.models.inverter]:
        m = replace(cfg.models, inverter=name)
        if checkpoints and name in checkpoints:
            m = replace(m, encoder=checkpoints[name])
        elif name != cfg.models.inverter and cfg.models.encoder not in ("tiny",):
            m = replace(m, encoder="zoo")  # --encoder names the first method's file, not every method's
        spec = resolve_model_spec(m, offline=offline)
        out[name] = asdict(replace(cfg, models=replace(m, generator=spec["generator"] or m.generator,
                                                       encoder=spec["encoder"])))
    return out


def evaluate_ravdess(root: Path, out_dir: Path, cfg: PipelineConfig, num_videos: int = 120, seed: int = 0,
                     actors=None, emotions=None, modalities=None, edits=None, identity: str = "auto",
                     lpips_net: str | None = "alex", offline: bool | None = None, quiet: bool = False,
                     metric_size: int = 256, inverters: list[str] | None = None,
                     checkpoints: dict[str, str] | None = None) -> dict:
    """Sample, reconstruct, measure and report (``inverters``: compare several methods on the same crops;
    ``checkpoints``: an inverter name -> its checkpoint, for those the zoo does not host).
    Returns what was written and the failures."""
    from pipelines.batch import map_clips
    from vidinv.errors import InputError
    from vidinv.metrics.image import lpips_available
    from vidinv.metrics.identity import get_identity_backend
    from vidinv.metrics.ravdess import sample_videos, scan_tree
    from vidinv.metrics.report import write_outputs

    items, problems = scan_tree(root)
    for p in problems:
        log.warning("skipped: %s", p)
    if not items:
        raise InputError(f"{root}: no RAVDESS-style clips (Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4) found")
    chosen = sample_videos(items, num_videos, seed, actors=actors, emotions=emotions, modalities=modalities)
    if not chosen:
        raise InputError(f"{root}: no clip matches the filters")
    backend = get_identity_backend(identity)  # fails early, and names the backend in the report
    notes = [f"identity backend: {backend.name}"]
    lpips_reason = ""
    if lpips_net:
        ok, reason = lpips_available()
        if not ok:
            log.warning("%s", reason)  # said once; the other metrics are still reported
            lpips_reason, lpips_net = reason, None
    cfg_dicts = _method_configs(cfg, inverters, checkpoints, offline)
    args = [(cfg_dicts, str(it.path), list(edits or []), backend.name if identity == "auto" else identity,
             lpips_net, offline, metric_size, cfg.eval.id_mode) for it in chosen]
    results = map_clips(_eval_one, args, cfg, quiet=quiet)
    ok = {Path(r["input"]).stem: (r["rows"], r["clip"]) for r in results if r["status"] == "ok"}
    failed = [r for r in results if r["status"] != "ok"]
    notes.append(f"dataset: {root}; {len(chosen)} clip(s) sampled with seed {seed} from {len(items)}")
    if cfg.tune.enabled:
        t = cfg.tune
        notes.append(f"tuned rows ({tuned_tag(cfg).lstrip('+')}): PTI {t.pti.epochs} pass(es), "
                     f"lr {t.pti.lr:g}"
                     + (f"; stitching {t.stitching.steps} steps, lr {t.stitching.lr:g}" if t.stitch else ""))
    if problems:
        notes.append(f"{len(problems)} malformed name(s) skipped: " + "; ".join(str(p) for p in problems[:5]))
    for r in failed:
        notes.append(f"failed: {r['input']}: {r['error']}")
        log.warning("failed: %s: %s", r["input"], r["error"])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_outputs(out_dir, ok, backend.name, notes, lpips_reason=lpips_reason,
                          id_mode=cfg.eval.id_mode) if ok else {}
    return {"n_ok": len(ok), "n_failed": len(failed), "failed": failed, "paths": paths, "backend": backend.name,
            "problems": [str(p) for p in problems]}
