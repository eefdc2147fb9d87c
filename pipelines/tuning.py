"""Per-clip generator tuning in the edit pipeline: ``vidinv edit ... --tune pti`` and ``--stitch``.

Steps (the library is :mod:`vidinv.tuning`; this module wires it into the pipeline's passes):

* **PTI** (after invert + code smoothing, before render): one job per target face track (or per shot of
  it with ``tune.per_shot``) on a GPU worker (:class:`TuneStage`, mapped by the executor like any pass,
  so on Ray it runs on a GPU actor). The job decodes the sampled frames, aligns them with the plan's
  matrices and tunes the generator around the frames' codes (the pivots: the smoothed codes the render
  uses). Its result, the tuned weights as a plain state dict, goes to the run's chunk cache
  (``tune_t<target>_<shot start>.pkl``): a resumed run reuses it; an interrupted PTI restarts PTI only.
* **render**: the render stage gets the weights of every target (``RenderStage(tuning=...)``) and renders
  each face with its target's (and shot's) tuned generator (:class:`RenderTuning`).
* **stitching** (``tune.stitch``): inside the render stage, per render chunk: the original crops and
  their face masks, then :func:`vidinv.tuning.stitch_tune` per ``stitching.chunk`` frames from the PTI
  weights, then the stitched render. The stitched frames are cached as every render chunk is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from vidinv.errors import VidinvError

log = logging.getLogger(__name__)


def _tune_cfg(d: dict):
    from vidinv.tuning import TuneConfig

    d = dict(d)
    d["betas"] = tuple(d["betas"])
    return TuneConfig(**d)


def _segments(tg, cuts: list[int], per_shot: bool) -> list[tuple[int, int]]:
    """The frame ranges tuned separately: the target's span, or its shots."""
    a, b = int(tg.frames[0]), int(tg.frames[1])
    if not per_shot:
        return [(a, b)]
    edges = [a] + [c for c in sorted(cuts) if a < c < b] + [b]
    return [(s, e) for s, e in zip(edges[:-1], edges[1:]) if tg.valid[s:e].any()]


def tune_items(path: Path, targets: list, per_target: dict, cuts: list[int], cfg, quiet: bool) -> list[dict]:
    """The PTI jobs: one per target (or per shot), each with its sampled frames, matrices and pivots."""
    pti = cfg.tune.pti
    items = []
    for ti, tg in enumerate(targets):
        if ti not in per_target:
            continue
        code = per_target[ti][0]
        for a, b in _segments(tg, cuts, cfg.tune.per_shot):
            valid = [t for t in range(a, b) if tg.valid[t]]
            frames = [valid[i] for i in pti.train_frames(len(valid))]
            items.append(dict(path=str(path), target=ti, start=a, stop=b, frames=frames,
                              serves=list(range(a, b)) if cfg.tune.per_shot else None,
                              M=np.stack([tg.M[t] for t in frames]),
                              code={k: np.array(v[frames]) for k, v in code.items()},
                              chunk=int(cfg.execution.chunk_size), quiet=quiet))
    return items


def _aligned_crops(item: dict, m) -> torch.Tensor:
    """The item's frames, decoded a chunk at a time and aligned: ``[n, 3, S, S]`` in [-1, 1]."""
    from pipelines.stages import _to_tensor
    from vidinv.faces.align import align_faces
    from vidinv.io.video import VideoReader

    frames, M = list(item["frames"]), np.asarray(item["M"])
    reader = VideoReader(item["path"])
    out = []
    i = 0
    while i < len(frames):
        a = frames[i]
        b = min(a + item["chunk"], item["stop"])
        j = i
        while j < len(frames) and frames[j] < b:
            j += 1
        chunk = reader.read_range(a, b)
        x = _to_tensor(chunk.frames[[t - a for t in frames[i:j]]], m.device, torch.float32)
        Mt = torch.as_tensor(M[i:j], dtype=torch.float32, device=m.device)
        out.append(align_faces(x, Mt, m.size).clamp(-1, 1))
        i = j
    return torch.cat(out)


def _bar(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=quiet, leave=False)

    def progress(step: int, loss: float) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    return bar, progress


class TuneStage:
    """PTI of one target (or shot) on a GPU worker: ``item`` from :func:`tune_items` -> the weights' state."""

    def __init__(self, spec: dict, tune: dict) -> None:
        from pipelines.components import build_models

        self.m = build_models(spec)
        self.cfg = _tune_cfg(tune)
        if self.m.dtype != torch.float32:
            raise VidinvError("--tune pti needs --precision fp32 (the generator is fine-tuned)")

    def __call__(self, item: dict) -> dict:
        from vidinv.tuning import pivotal_tune, weights_to_state

        m, cfg = self.m, replace(self.cfg, max_frames=None)  # the driver sampled the frames already
        crops = _aligned_crops(item, m)
        code = {k: torch.as_tensor(v, device=m.device, dtype=torch.float32) for k, v in item["code"].items()}
        bar, progress = _bar(cfg.num_steps(len(crops)), f"tune pti #{item['target']}",
                             item.get("quiet", True))
        try:
            w = pivotal_tune(m.inverter, crops, code, cfg, noise=m.noise, progress=progress)
        finally:
            bar.close()
        if item.get("serves") is not None:
            w.frames = torch.as_tensor(item["serves"], dtype=torch.int64)
        return {"target": item["target"], "start": item["start"], "state": weights_to_state(w),
                "loss": float(w.info.get("loss", float("nan")))}


def run_pti(pipe, path: Path, targets: list, per_target: dict, cuts: list[int], spec: dict, cache) -> dict:
    """The PTI step: ``{target index: weights state}`` (every shot's group of a target in one state),
    each job taken from the run's cache when an earlier run finished it."""
    from vidinv.tuning import weights_from_state, weights_to_state

    items = tune_items(path, targets, per_target, cuts, pipe.cfg, pipe.quiet)
    kind = lambda it: f"tune_t{it['target']}"  # noqa: E731
    done = {i: cache.get(kind(it), it["start"]) for i, it in enumerate(items)}
    todo = [i for i, r in done.items() if r is None]
    if todo:
        tune = asdict(pipe.cfg.tune.pti)
        for i, res in zip(todo, pipe.executor.map(TuneStage, dict(spec=spec, tune=tune),
                                                  (items[i] for i in todo), gpu=True)):
            cache.put(kind(items[i]), items[i]["start"], res)
            cache.count("tune", "computed")
            done[i] = res
            log.info("PTI of track %d (frames %d-%d): final loss %.4g", res["target"], items[i]["start"],
                     items[i]["stop"] - 1, res["loss"])
    for i in set(done) - set(todo):
        cache.count("tune", "reused")
    groups: dict[int, list] = {}
    for i in sorted(done):
        groups.setdefault(items[i]["target"], []).extend(weights_from_state(done[i]["state"]))
    return {ti: weights_to_state(g) for ti, g in groups.items()}


def bundle_weights_path(bundle: str | Path, cfg) -> Path:
    """Where a codes bundle keeps the PTI weights of these tuning settings (and of the pivots' smoothing and
    the render noise, which shape them)."""
    import json

    key = json.dumps({"pti": asdict(cfg.tune.pti), "per_shot": cfg.tune.per_shot,
                      "codes": cfg.stabilize.codes, "noise_seed": cfg.models.noise_seed},
                     sort_keys=True, default=str)
    return Path(bundle) / f"tuned_pti_{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


def bundle_pti(bundle: str | Path | None, cfg, compute) -> dict:
    """``compute()``'s PTI weights, taken from / stored into the codes ``bundle`` when one is given."""
    from vidinv.atomic import atomic_path

    if bundle is None:
        return compute()
    path = bundle_weights_path(bundle, cfg)
    if path.is_file():
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
            log.info("PTI weights from the codes bundle: %s", path.name)
            return {int(k): v for k, v in weights.items()}
        except Exception as e:  # a torn file: tune again (and rewrite it)
            log.warning("cannot read %s (%s): tuning again", path, e)
    weights = compute()
    with atomic_path(path) as tmp:
        torch.save(weights, tmp)
    return weights


def render_tuning(cfg, weights: dict | None, quiet: bool) -> dict | None:
    """The render stage's ``tuning`` argument (None without tuning): the weights of every target, their
    digest (stages built with other weights are other stages) and the stitching settings."""
    if not cfg.tune.enabled:
        return None
    weights = weights or {}
    h = hashlib.sha1()
    for ti in sorted(weights):
        for g in weights[ti]["groups"]:
            h.update(np.asarray(g["frames"]).tobytes())
            for k in sorted(g["params"]):
                h.update(k.encode())
                h.update(g["params"][k].numpy().tobytes())
    return dict(weights=weights, digest=h.hexdigest(), quiet=quiet,
                stitch=asdict(cfg.tune.stitching) if cfg.tune.stitch else None)


class RenderTuning:
    """What a render stage does with tuned weights: renders with each target's groups; stitching."""

    def __init__(self, tuning: dict) -> None:
        from vidinv.tuning import StitchConfig, weights_from_state

        self.weights = {int(ti): weights_from_state(s) for ti, s in tuning["weights"].items()}
        self.stitch = StitchConfig(**tuning["stitch"]) if tuning.get("stitch") else None
        self.quiet = bool(tuning.get("quiet", True))
        self.last_regions: tuple | None = None  # the stitching (content, border) masks of the last call

    @staticmethod
    def _by_target(jobs: list[dict]) -> dict[int, list[int]]:
        rows: dict[int, list[int]] = {}
        for i, j in enumerate(jobs):
            rows.setdefault(int(j.get("target", 0)), []).append(i)
        return rows

    def render(self, m, code: dict, w_edit: torch.Tensor | None, jobs: list[dict]) -> torch.Tensor:
        """One batch of faces with their targets' tuned weights. Shape: -> ``[B, 3, S, S]``."""
        from vidinv.tuning import render_tuned

        out = None
        for ti, rows in self._by_target(jobs).items():
            idx = torch.as_tensor(rows, device=m.device)
            frames = torch.as_tensor([jobs[i]["frame"] for i in rows], dtype=torch.int64)
            img = render_tuned(m.inverter, {k: v[idx] for k, v in code.items()},
                               None if w_edit is None else w_edit[idx], m.noise, self.weights.get(ti),
                               frames=frames)
            out = img.new_empty(len(jobs), *img.shape[1:]) if out is None else out
            out[idx.to(out.device)] = img
        return out

    def faces(self, stage, frames_u8: np.ndarray, start: int, jobs: list[dict],
              w_edit: list | None) -> torch.Tensor:
        """The chunk's faces ``[N, 3, S, S]`` in [-1, 1]: tuned renders, stitched when configured."""
        if self.stitch is None:
            return stage.render([j["code"] for j in jobs], w_edit, jobs)
        with torch.enable_grad():
            return self._stitched(stage, frames_u8, start, jobs, w_edit)

    def _stitched(self, stage, frames_u8: np.ndarray, start: int, jobs: list[dict],
                  w_edit: list | None) -> torch.Tensor:
        from pipelines.stages import _stack_codes, _to_tensor
        from vidinv.faces.align import align_faces
        from vidinv.inverters.base import expand_w
        from vidinv.tuning import render_tuned, stitch_masks, stitch_tune, weights_for_frame

        m, cfg = stage.m, self.stitch
        x = _to_tensor(frames_u8[[j["frame"] - start for j in jobs]], m.device, torch.float32)
        M = torch.as_tensor(np.stack([j["M"] for j in jobs]), dtype=torch.float32, device=m.device)
        crops = align_faces(x, M, m.size).clamp(-1, 1)
        masks = face_masks(stage, crops, np.stack([j["lm_crop"] for j in jobs])).to(m.device)
        code = _stack_codes([j["code"] for j in jobs], m.device, torch.float32)
        w = expand_w(code["w"], m.inverter.n_latent, m.inverter.style_dim) if w_edit is None else \
            torch.as_tensor(np.stack(w_edit), device=m.device, dtype=torch.float32)
        frames = torch.as_tensor([j["frame"] for j in jobs], dtype=torch.int64)
        out = torch.empty_like(crops)
        desc = f"stitch {jobs[0]['frame']}-{jobs[-1]['frame']}"
        bar, progress = _bar(cfg.steps * len(jobs), desc, self.quiet)
        done = [0]
        try:
            for rows in self._stitch_groups(jobs, weights_for_frame):
                idx = torch.as_tensor(rows, device=m.device)
                sub = {k: v[idx] for k, v in code.items()}
                ti, f0 = int(jobs[rows[0]].get("target", 0)), int(frames[rows[0]])
                base = weights_for_frame(self.weights.get(ti, []), f0)
                groups = stitch_tune(m.inverter, sub, w[idx], crops[idx], masks[idx], cfg, base=base,
                                     noise=m.noise, frames=frames[rows],
                                     progress=lambda s, loss: progress(done[0] + s, loss))
                done[0] += cfg.steps * len(rows)
                with torch.no_grad():
                    out[idx] = render_tuned(m.inverter, sub, w[idx], m.noise, groups, frames[rows])
        finally:
            bar.close()
        content, border, _ = stitch_masks(masks, cfg)
        self.last_regions = (content.detach().cpu(), border.detach().cpu())
        return out.detach()

    def _stitch_groups(self, jobs: list[dict], weights_for_frame) -> list[list[int]]:
        """Rows tuned together: same target and same PTI group (shot), in frame order."""
        out: dict[tuple, list[int]] = {}
        for ti, rows in self._by_target(jobs).items():
            for i in rows:
                g = weights_for_frame(self.weights.get(ti, []), int(jobs[i]["frame"]))
                out.setdefault((ti, id(g)), []).append(i)
        return list(out.values())


def face_masks(stage, crops: torch.Tensor, lm_crop: np.ndarray) -> torch.Tensor:
    """Face masks of the original crops ``[N, 1, S, S]`` (no dilation, no feather: the stitching regions
    are grown from them): BiSeNet's face classes when the stage has the parser, else the landmark hull."""
    from vidinv.faces.mask import landmark_hull_mask, parsing_mask

    S = crops.shape[-1]
    if stage.parser is None:
        return landmark_hull_mask(torch.as_tensor(lm_crop, dtype=torch.float32), S, dilate=0.0, feather=0.0)
    from vidinv.models.bisenet import parse_faces

    with torch.no_grad():
        labels = parse_faces(stage.parser, crops.to(stage.m.device))
    m = parsing_mask(labels).float()
    if m.shape[-1] != S:
        m = torch.nn.functional.interpolate(m, size=(S, S), mode="bilinear", align_corners=False)
    return m.clamp(0, 1).cpu()
