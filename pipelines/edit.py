"""The edit pipeline: ``vidinv edit clip.mp4 --attr smile --strength 2``.

Passes (each embarrassingly parallel over chunks of frames, with a cheap gather between):

1. analyze  (CPU)  decode + detect + landmarks + colour histograms      -> per-frame detections
   gather          shot cuts, face tracks, target selection, landmark/quad smoothing, align matrices
2. invert   (GPU)  decode + batched warp + Feature-Style encoder         -> (w, F) per target face-frame
   gather          code smoothing, edits with their schedule, edit-delta smoothing
3. render   (GPU)  decode + feature-code edit + unalign + mask + blend   -> frames, written in order

What crosses the object store: chunk ranges and detections (a few KB per frame) in pass 1;
3x3 matrices in, codes out in pass 2 (w: L*sd floats, F: C*16*16 floats per face-frame);
codes in and finished frames out in pass 3. The driver keeps per-chunk results in a cache
folder so that an interrupted run resumes without redoing finished chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vidinv.config import PipelineConfig
from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)


@dataclass
class Target:
    """One face track to edit: per-frame validity, align matrices and crop-space landmarks."""

    track_id: int
    valid: np.ndarray  # [T] bool
    M: np.ndarray  # [T,3,3] frame -> crop
    lm_crop: np.ndarray  # [T,68,2]
    frames: tuple[int, int] = (0, 0)


@dataclass
class EditResult:
    output: str | None
    n_frames: int
    targets: list[int]
    faces_edited: int
    timings: dict = field(default_factory=dict)
    copied_through: bool = False


# ----------------------------------------------------------------------------- cache


class ChunkCache:
    """Per-chunk results on disk (pickle of plain dicts of numpy arrays), keyed by the run's inputs."""

    def __init__(self, root: Path | None, key: str) -> None:
        self.root = None if root is None else Path(root) / key
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, start: int) -> Path:
        assert self.root is not None
        return self.root / f"{kind}_{start:08d}.pkl"

    def get(self, kind: str, start: int) -> Any | None:
        if self.root is None:
            return None
        p = self._path(kind, start)
        if not p.is_file():
            return None
        try:
            with open(p, "rb") as fh:
                return pickle.load(fh)
        except Exception:  # a torn file from a killed run: recompute
            return None

    def put(self, kind: str, start: int, value: Any) -> None:
        if self.root is None:
            return
        p = self._path(kind, start)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, p)

    def has(self, kind: str, start: int) -> bool:
        return self.root is not None and self._path(kind, start).is_file()


def _cached_map(executor, stage_cls, kwargs, ranges: list[tuple[int, int]], make_item: Callable[[int, int], dict],
                cache: ChunkCache, kind: str, gpu: bool, progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Yield each chunk's result in order, taking finished chunks from the cache and computing the rest.

    Work items are built lazily (``make_item(start, stop)``) as the executor asks for them, so only the
    chunks in flight are in memory, whatever the clip's length.
    """
    cached = {a for a, _ in ranges if cache.has(kind, a)}
    todo = (make_item(a, b) for a, b in ranges if a not in cached)
    computed = executor.map(stage_cls, kwargs, todo, gpu=gpu) if len(cached) < len(ranges) else iter(())
    for a, b in ranges:
        res = cache.get(kind, a) if a in cached else None
        if res is None:  # not cached, or a cached file that cannot be read (then the chunk is redone)
            res = next(computed) if a not in cached else stage_cls(**kwargs)(make_item(a, b))
            cache.put(kind, a, res)
        if progress:
            progress(b - a)
        yield res


class CodeStore:
    """Per-frame codes of a clip in ``.npy`` memory maps, so that RAM does not grow with the clip's length."""

    def __init__(self, root: Path | None) -> None:
        self._tmp = None
        if root is None:
            self._tmp = tempfile.mkdtemp(prefix="vidinv-codes-")
            root = Path(self._tmp)
        self.root = Path(root) / "codes"
        self.root.mkdir(parents=True, exist_ok=True)

    def array(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        return np.lib.format.open_memmap(self.root / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- geometry


def _runs(valid: np.ndarray, cuts: list[int]) -> list[tuple[int, int]]:
    """Maximal [a, b) runs of valid frames that cross no shot cut."""
    runs, start = [], None
    cutset = set(cuts)
    for t in range(len(valid) + 1):
        boundary = t == len(valid) or not valid[t] or (t in cutset and start is not None)
        if boundary and start is not None:
            runs.append((start, t))
            start = None
        if t < len(valid) and valid[t] and start is None:
            start = t
    return runs


def smooth_runs(x: np.ndarray, valid: np.ndarray, cuts: list[int], cfg: dict, inplace: bool = False,
                block_bytes: int = 64 << 20) -> np.ndarray:
    """Apply a stabilizer (``{'method': 'gaussian', 'sigma': 3}`` ...) to each valid run separately.

    Large arrays (feature codes of a long clip, possibly memory-mapped) are filtered a block of
    columns at a time, so the extra memory is about ``block_bytes`` whatever the clip's length.
    """
    from stabilizers import build_stabilizer

    if not cfg or cfg.get("method", "none") == "none":
        return x
    filt = build_stabilizer(dict(cfg))
    out = x if inplace else x.copy()
    T = len(x)
    flat = out.reshape(T, -1)
    cols = max(1, block_bytes // max(1, T * flat.itemsize))
    for a, b in _runs(valid, cuts):
        for c in range(0, flat.shape[1], cols):
            flat[a:b, c : c + cols] = np.asarray(filt(np.array(flat[a:b, c : c + cols])))
    return out


def plan_geometry(analysis: list[dict], n_frames: int, cfg: PipelineConfig, size: int,
                  refine: Callable | None = None) -> tuple[list[Target], list, list[int]]:
    """Gather of pass 1: cuts, tracks, the selected targets and their smoothed align matrices.

    ``refine(landmarks [n][T,68,2], valid [n][T], cuts) -> landmarks`` is the optional optical-flow pass.
    """
    from vidinv.faces.align import ffhq_quad, quad_to_matrix
    from vidinv.faces.detect import Face
    from vidinv.faces.track import build_tracks, cuts_from_histograms, select_tracks

    dets: list[list] = []
    hists = []
    for res in analysis:
        for faces in res["faces"]:
            dets.append([Face(bbox=f["bbox"], score=f["score"], landmarks=f["landmarks"]) for f in faces])
        hists.append(res["hists"])
    hists_a = np.concatenate(hists) if hists else np.zeros((0, 1))
    cuts = list(cuts_from_histograms(hists_a, threshold=cfg.faces.cut_threshold)) if len(hists_a) > 1 else []
    tracks = build_tracks(dets, max_gap=cfg.faces.max_gap, cuts=cuts)
    tracks = [t for t in tracks if len(t.frames) >= min(cfg.faces.min_track_length, n_frames)]
    chosen = select_tracks(tracks, _face_mode(cfg.faces.face)) if tracks else []
    arrays = [tr.landmarks_array(n_frames) for tr in chosen]
    if refine is not None and arrays:
        refined = refine([a[0] for a in arrays], [a[1] for a in arrays], cuts)
        arrays = [(r, a[1]) for r, a in zip(refined, arrays)]
    targets = []
    for tr, (lm, valid) in zip(chosen, arrays):
        lm = smooth_runs(lm.astype(np.float64), valid, cuts, cfg.stabilize.landmarks)
        quads = ffhq_quad(lm)
        quads = smooth_runs(quads, valid, cuts, cfg.stabilize.quads)
        M = np.asarray(quad_to_matrix(np.asarray(quads, np.float64), size), np.float64)
        ones = np.ones(lm.shape[:-1] + (1,))
        hom = np.concatenate([lm, ones], -1) @ np.swapaxes(M, -1, -2)
        lm_crop = hom[..., :2] / hom[..., 2:3]
        idx = np.flatnonzero(valid)
        span = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)
        targets.append(Target(int(tr.id), valid.astype(bool), M.astype(np.float32), lm_crop.astype(np.float32), span))
    return targets, tracks, cuts


def _face_mode(face: str):
    s = str(face)
    if s in ("largest", "all"):
        return s
    try:
        return int(s)
    except ValueError:
        raise VidinvError(f"--face {face!r}: expected 'largest', 'all' or a track id (see `vidinv faces CLIP`)") from None


# ----------------------------------------------------------------------------- the pipeline


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _run_key(path: Path, cfg: PipelineConfig, edits: Any) -> str:
    st = path.stat()
    d = cfg.to_dict()
    d.pop("execution", None)
    d.pop("output", None)
    blob = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, d, edits], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class _Progress:
    def __init__(self, total: int, desc: str, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=quiet, leave=False)

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class EditPipeline:
    """Named components + one ``__call__``: ``EditPipeline(cfg)(input, output, edits)``.

    ``edits`` is a list of ``(attribute spec, strength)``: a known attribute name, ``sefa:N``
    or a direction file; an empty list renders the plain inversion.
    """

    def __init__(self, cfg: PipelineConfig, executor=None, quiet: bool = False, offline: bool | None = None) -> None:
        self.cfg = cfg
        self.quiet = quiet
        self.offline = offline
        self._executor = executor

    @property
    def executor(self):
        if self._executor is None:
            from pipelines.executors import make_executor

            self._executor = make_executor(self.cfg.execution)
        return self._executor

    # -- helpers used by several commands
    def model_spec(self) -> dict:
        from pipelines.components import resolve_model_spec

        return resolve_model_spec(self.cfg.models, offline=self.offline)

    def analyze(self, path: Path, info, cache: ChunkCache) -> list[dict]:
        from pipelines.stages import AnalyzeStage

        ranges = _chunks(info.n_frames, self.cfg.execution.chunk_size)

        bar = _Progress(info.n_frames, "detect", self.quiet)
        kw = dict(detector=self.cfg.faces.detector, detect_max_side=self.cfg.faces.detect_max_side,
                  upsample=self.cfg.faces.detect_upsample)
        out = list(_cached_map(self.executor, AnalyzeStage, kw, ranges, lambda a, b: dict(path=str(path), start=a, stop=b),
                               cache, "analyze", gpu=False, progress=bar))
        bar.close()
        return out

    def refine(self, path: Path, info, lms: list, valids: list, cuts: list[int], cache: ChunkCache) -> list:
        """The optical-flow pass: Lucas-Kanade refinement of each target's landmarks, parallel over chunks
        (each chunk starts one frame early so that its first frame is tracked from the previous one)."""
        from pipelines.stages import RefineStage

        def make_item(a: int, b: int) -> dict:
            a0 = max(0, a - 1)
            seg = [c - a0 for c in cuts if a0 < c < b]
            return dict(path=str(path), start=a0, stop=b, segments=seg,
                        landmarks=[lm[a0:b] for lm in lms], valid=[v[a0:b] for v in valids])

        out = [lm.copy() for lm in lms]
        bar = _Progress(info.n_frames, "flow", self.quiet)
        ranges = _chunks(info.n_frames, self.cfg.execution.chunk_size)
        for (a, b), res in zip(ranges, _cached_map(self.executor, RefineStage, {}, ranges, make_item, cache, "refine",
                                                   gpu=False, progress=bar)):
            for i, lm in enumerate(res["landmarks"]):
                out[i][a:b] = lm[a - res["start"]:]
        bar.close()
        return out

    def invert(self, path: Path, info, targets: list[Target], spec: dict, cache: ChunkCache, store: CodeStore) -> dict:
        """Codes per target: ``{target index: {name: [T, ...]}}`` (memory-mapped; rows of invalid frames are zero)."""
        from pipelines.stages import InvertStage

        def make_item(a: int, b: int) -> dict:
            jobs = [(t, (ti, t), tg.M[t]) for ti, tg in enumerate(targets) for t in range(a, b) if tg.valid[t]]
            return dict(path=str(path), start=a, stop=b, jobs=jobs)

        bar = _Progress(info.n_frames, "invert", self.quiet)
        out: dict[int, dict[str, np.ndarray]] = {}
        ranges = _chunks(info.n_frames, self.cfg.execution.chunk_size)
        for res in _cached_map(self.executor, InvertStage, dict(spec=spec), ranges, make_item, cache, "invert",
                               gpu=True, progress=bar):
            for i, (ti, t) in enumerate(res["keys"]):
                code = out.setdefault(ti, {})
                for k, v in res["code"].items():
                    if k not in code:
                        code[k] = store.array(f"t{ti}_{k}", (info.n_frames,) + v.shape[1:])
                    code[k][t] = v[i]
        bar.close()
        return out

    def __call__(self, input_path: str | os.PathLike, output_path: str | os.PathLike | None = None,
                 edits: list[tuple[str, float]] | None = None, allow_no_face: bool = False) -> EditResult:
        import time

        from vidinv.io.video import VideoWriter, probe

        src = Path(input_path)
        if not src.exists():
            raise InputError(f"{src}: no such file")
        out = Path(output_path) if output_path else src.with_name(f"{src.stem}_{_edit_tag(edits)}.mp4")
        if out.resolve() == src.resolve():
            raise InputError(f"the output {out} would overwrite the input")
        info = probe(src)
        if info.n_frames == 0:
            raise InputError(f"{src}: the video has no frames")
        edits = list(edits or [])
        spec = self.model_spec()  # fails here, before any work, when weights are missing
        from pipelines.components import resolve_parser

        parser = resolve_parser(self.cfg.blend.mask, self.offline)
        directions = self._directions(edits, spec)
        cache_root = Path(self.cfg.execution.cache_dir) if self.cfg.execution.cache_dir else out.parent / f".{out.name}.vidinv-cache"
        cache = ChunkCache(cache_root, _run_key(src, self.cfg, edits))
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        analysis = self.analyze(src, info, cache)
        timings["analyze_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        size, self._n_latent, _ = model_dims(spec)
        refine = (lambda lms, valids, cuts: self.refine(src, info, lms, valids, cuts, cache)) \
            if self.cfg.stabilize.flow_refine else None
        targets, tracks, cuts = plan_geometry(analysis, info.n_frames, self.cfg, size, refine=refine)
        timings["plan_s"] = time.perf_counter() - t0
        if not targets or not any(t.valid.any() for t in targets):
            if not allow_no_face:
                raise VidinvError(f"no face found in {src} ({info.n_frames} frames); "
                                  "pass --allow-no-face to copy it through unchanged")
            _atomic_copy(src, out)
            self._cleanup(cache_root)
            return EditResult(str(out), info.n_frames, [], 0, timings, copied_through=True)
        log.info("editing %d face track(s): %s", len(targets), ", ".join(f"#{t.track_id} frames {t.frames[0]}-{t.frames[1] - 1}" for t in targets))

        store = CodeStore(cache.root)
        try:
            t0 = time.perf_counter()
            codes = self.invert(src, info, targets, spec, cache, store)
            timings["invert_s"] = time.perf_counter() - t0

            times = np.asarray(analysis_pts(analysis), np.float64) * float(info.time_base)
            per_target = self._edit_codes(targets, codes, directions, cuts, times, store)

            t0 = time.perf_counter()
            from pipelines.stages import RenderStage

            def make_item(a: int, b: int) -> dict:
                jobs = []
                for ti, tg in enumerate(targets):
                    if ti in per_target:
                        jobs += [dict(frame=t, M=tg.M[t], lm_crop=tg.lm_crop[t], **frame_code(per_target[ti], t))
                                 for t in range(a, b) if tg.valid[t]]
                jobs.sort(key=lambda j: j["frame"])
                return dict(path=str(src), start=a, stop=b, jobs=jobs)

            bar = _Progress(info.n_frames, "render", self.quiet)
            n_written = 0
            ranges = _chunks(info.n_frames, self.cfg.execution.chunk_size)
            blend = dict(asdict(self.cfg.blend), parser=parser)
            with VideoWriter(out, info, crf=self.cfg.output.crf, preset=self.cfg.output.preset, audio_from=src) as writer:
                for res in _cached_map(self.executor, RenderStage, dict(spec=spec, blend=blend), ranges,
                                       make_item, cache, "render", gpu=True, progress=bar):
                    writer.write(res["frames"], res["pts"])
                    n_written += len(res["frames"])
            bar.close()
        finally:
            store.close()
        timings["render_write_s"] = time.perf_counter() - t0
        if n_written != info.n_frames:  # pragma: no cover - a broken invariant
            raise VidinvError(f"internal error: wrote {n_written} of {info.n_frames} frames")
        self._cleanup(cache_root)
        return EditResult(str(out), info.n_frames, [t.track_id for t in targets],
                          int(sum(t.valid.sum() for t in targets)), timings)

    def _cleanup(self, cache_root: Path) -> None:
        if not self.cfg.execution.keep_cache:
            shutil.rmtree(cache_root, ignore_errors=True)

    def _directions(self, edits: list[tuple[str, float]], spec: dict) -> list:
        if not edits:
            return []
        from vidinv.editing.attributes import resolve_attribute

        _, n_latent, style_dim = model_dims(spec)
        self._n_latent = n_latent
        out = []
        for name, strength in edits:
            d = resolve_attribute(name, n_latent=n_latent, style_dim=style_dim, generator_spec=spec, offline=self.offline)
            out.append((d, float(strength)))
        self._conditioning = [resolve_attribute(name, n_latent=n_latent, style_dim=style_dim, generator_spec=spec,
                                                offline=self.offline) for name in self.cfg.edit.condition]
        return out

    def _edit_codes(self, targets, codes, directions, cuts, times, store: CodeStore, block: int = 256) -> dict:
        """Gather of pass 2: code smoothing, edits with their schedule, edit-delta smoothing.

        Returns ``{target index: (code {name: [T, ...]}, delta [T, L, sd] or None)}`` where the edited
        latent of frame t is ``w[t] + delta[t]`` (see :func:`frame_code`). Arrays stay memory-mapped and
        are processed ``block`` frames at a time.
        """
        import torch

        from vidinv.editing.directions import apply_edits
        from vidinv.editing.schedule import Schedule

        sched = Schedule.parse(self.cfg.edit.schedule)
        T = len(times)
        ramp = np.asarray(sched.strengths(T, times=times - times[0] if T else None), np.float64)
        out = {}
        for ti, tg in enumerate(targets):
            if ti not in codes:
                continue
            code = {k: smooth_runs(v, tg.valid, cuts, self.cfg.stabilize.codes, inplace=True) for k, v in codes[ti].items()}
            if not directions:
                out[ti] = (code, None)
                continue
            W = code["w"]
            L = W.shape[1] if W.ndim == 3 else self._n_latent
            delta = store.array(f"t{ti}_delta", (T, L, W.shape[-1]))
            for a in range(0, T, block):
                w = torch.from_numpy(_as_wplus(np.array(W[a : a + block]), L))
                edits = [(d, torch.as_tensor(s * ramp[a : a + block], dtype=torch.float32)) for d, s in directions]
                delta[a : a + block] = (apply_edits(w, edits, getattr(self, "_conditioning", None)) - w).numpy()
            delta[~tg.valid] = 0
            smooth_runs(delta, tg.valid, cuts, self.cfg.stabilize.edit_delta, inplace=True)
            out[ti] = (code, delta)
        return out


def _as_wplus(w: np.ndarray, n_latent: int) -> np.ndarray:
    """A W code ``[B, sd]`` repeated to W+ ``[B, L, sd]``; W+ returned as is."""
    return np.repeat(w[:, None], n_latent, axis=1) if w.ndim == 2 else w


def frame_code(target_codes: tuple, t: int) -> dict:
    """One frame's job fields from ``(code, delta)``: ``{'code': {...}, 'w_edit': w + delta or None}``."""
    code, delta = target_codes
    c = {k: np.array(v[t]) for k, v in code.items()}
    w_edit = None if delta is None else (_as_wplus(c["w"][None], delta.shape[1])[0] + delta[t]).astype(np.float32)
    return {"code": c, "w_edit": w_edit}


def analysis_pts(analysis: list[dict]) -> list[int]:
    return [int(p) for res in analysis for p in res["pts"]]


def _edit_tag(edits) -> str:
    if not edits:
        return "inversion"
    parts = []
    for name, s in edits:
        base = Path(str(name)).stem if ("/" in str(name) or "." in str(name)) else str(name)
        parts.append(base.replace(":", "") + ("" if float(s) == 1 else f"{float(s):+g}"))
    return "_".join(parts)


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def model_dims(spec: dict) -> tuple[int, int, int]:
    """``(size, n_latent, style_dim)`` of the spec's generator, without a second full model in the driver when possible."""
    if spec.get("inverter", "fs") == "fs" and spec["generator"] != "tiny":
        g = _light_generator(spec)
        return int(g.size), int(g.n_latent), int(g.style_dim)
    from pipelines.components import build_models

    inv = build_models(spec).inverter
    return int(inv.size), int(inv.n_latent), int(inv.style_dim)


_LIGHT: dict[str, Any] = {}


def _light_generator(spec: dict):
    """The generator's dimensions read from its checkpoint's shapes."""
    key = spec["generator"]
    if key not in _LIGHT:
        from types import SimpleNamespace

        from vidinv.models.checkpoint import safe_load
        from vidinv.models.stylegan2 import generator_config_from_state_dict, split_checkpoint

        sd, _ = split_checkpoint(safe_load(key, allow_pickle=spec.get("allow_pickle", False)))
        c = generator_config_from_state_dict(sd)
        log_size = int(np.log2(c["size"]))
        _LIGHT[key] = SimpleNamespace(size=c["size"], style_dim=c["style_dim"], n_latent=log_size * 2 - 2)
    return _LIGHT[key]


def reconstruct_clip(pipe: EditPipeline, src: str | os.PathLike, edits: list[tuple[str, float]] | None = None,
                     metric_size: int = 256) -> dict:
    """Source crops, inversion and edit of the clip's main face track, for evaluation.

    Returns ``{'frames': [T'] frame indices, 'source'/'inversion'/'edit': uint8 [T', s, s, 3] (edit None
    without edits), 'n_frames', 'track_id'}``; raises ``VidinvError`` when no face is found.
    """
    from pipelines.stages import ReconstructStage
    from vidinv.io.video import probe

    src = Path(src)
    info = probe(src)
    edits = list(edits or [])
    spec = pipe.model_spec()
    directions = pipe._directions(edits, spec)
    cache = ChunkCache(None, "")
    analysis = pipe.analyze(src, info, cache)
    size, pipe._n_latent, _ = model_dims(spec)
    targets, _, cuts = plan_geometry(analysis, info.n_frames, pipe.cfg, size)
    targets = targets[:1]
    if not targets or not targets[0].valid.any():
        raise VidinvError(f"no face found in {src}")
    store = CodeStore(None)
    try:
        codes = pipe.invert(src, info, targets, spec, cache, store)
        times = np.asarray(analysis_pts(analysis), np.float64) * float(info.time_base)
        per = pipe._edit_codes(targets, codes, directions, cuts, times, store)[0]
        tg = targets[0]

        def make_item(a: int, b: int) -> dict:
            jobs = [dict(frame=t, M=tg.M[t], **frame_code(per, t)) for t in range(a, b) if tg.valid[t]]
            return dict(path=str(src), start=a, stop=b, jobs=jobs)

        parts: dict[str, list] = {"frames": [], "source": [], "inversion": [], "edit": []}
        bar = _Progress(info.n_frames, "reconstruct", pipe.quiet)
        for res in _cached_map(pipe.executor, ReconstructStage, dict(spec=spec, out_size=metric_size),
                               _chunks(info.n_frames, pipe.cfg.execution.chunk_size), make_item, cache,
                               "reconstruct", gpu=True, progress=bar):
            if not res["frames"]:
                continue
            parts["frames"] += res["frames"]
            for k in ("source", "inversion", "edit"):
                if res[k] is not None:
                    parts[k].append(res[k])
        bar.close()
    finally:
        store.close()
    out: dict[str, Any] = {"frames": parts["frames"], "n_frames": info.n_frames, "track_id": tg.track_id}
    for k in ("source", "inversion", "edit"):
        out[k] = np.concatenate(parts[k]) if parts[k] else None
    return out
