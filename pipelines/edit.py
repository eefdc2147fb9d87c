"""The edit pipeline: ``vidinv edit clip.mp4 --attr smile --strength 2``.

Passes (each embarrassingly parallel over chunks of frames, with a cheap gather between):

1. analyze  (CPU)  decode + detect + landmarks + colour histograms      -> per-frame detections
   plan            shot cuts, face tracks, target selection, landmark/quad smoothing, align matrices
                   (:mod:`pipelines.geometry`)
2. invert   (GPU)  decode + batched warp + Feature-Style encoder         -> (w, F) per target face-frame
   edit            code smoothing, edits with their schedule, edit-delta smoothing
                   (:mod:`vidinv.editing.temporal`)
3. render   (GPU)  decode + feature-code edit + unalign + mask + blend   -> frames, written in order

What crosses the object store: chunk ranges and detections (a few KB per frame) in pass 1;
3x3 matrices in, codes out in pass 2 (w: L*sd floats, F: C*16*16 floats per face-frame);
codes in and finished frames out in pass 3. The driver keeps per-chunk results in a cache
folder (:mod:`pipelines.cache`) so that an interrupted run resumes without redoing finished chunks.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines.cache import (ChunkCache, CodeStore, Progress, cached_map, chunk_ranges, close_progress,
                             log_chunk_stats, remove_run_cache, resumable, run_key, timed)
from pipelines.geometry import Target, plan_geometry, smooth_runs
from pipelines.outputs import check_output_path, default_output, edit_tag, existing_output
from pipelines.report import build_report, clip_facts, facts_frame_times, write_report
from pipelines.spec import model_dims
from vidinv.config import PipelineConfig
from vidinv.editing.temporal import EditPlan, as_wplus, edit_deltas, frame_code
from vidinv.errors import InputError, VidinvError

# kept importable from here for callers not yet moved to the new modules (pipelines/batch.py,
# vidinv/commands/faces.py); new code imports from pipelines.cache / .geometry / .outputs
_edit_tag = edit_tag
__all__ = ["EditPipeline", "EditResult", "ChunkCache", "CodeStore", "Target", "plan_geometry"]

log = logging.getLogger(__name__)


@dataclass
class EditResult:
    output: str | None
    n_frames: int
    targets: list[int]
    faces_edited: int
    timings: dict = field(default_factory=dict)
    copied_through: bool = False
    chunks: dict = field(default_factory=dict)  # pass -> {'reused': n, 'computed': m} chunks
    report: dict = field(default_factory=dict)  # the run report (pipelines.report.build_report)
    executor: str = ""  # the executor that ran: 'local' (in-process) or 'ray'


class EditPipeline:
    """Named components + one ``__call__``: ``EditPipeline(cfg)(input, output, edits)``.

    ``edits`` is a list of ``(attribute spec, strength)``: a known attribute name, ``sefa:N``
    or a direction file; an empty list renders the plain inversion. Each step of ``__call__`` is a
    public method, also used alone (``vidinv faces``, evaluation).
    """

    def __init__(self, cfg: PipelineConfig, executor=None, quiet: bool = False,
                 offline: bool | None = None) -> None:
        self.cfg = cfg
        self.quiet = quiet
        self.offline = offline
        self._executor = executor
        self._owns_executor = executor is None
        self._n_frames: int | None = None  # the clip's length, for the 'auto' executor choice

    @property
    def executor(self):
        """The run's executor: the one given, else made from the config on first use (kept for the run)."""
        if self._executor is None:
            from pipelines.executors import make_executor

            self._executor = make_executor(self.cfg.execution, n_frames=self._n_frames)
        return self._executor

    def close(self) -> None:
        """End the executor this pipeline made (its Ray workers and their models); a given one is left."""
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __call__(self, input_path: str | os.PathLike, output_path: str | os.PathLike | None = None,
                 edits: list[tuple[str, float]] | None = None, allow_no_face: bool = False,
                 codes: str | os.PathLike | None = None, report: str | os.PathLike | None = None,
                 preview: str | os.PathLike | None = None) -> EditResult:
        """Edit ``input_path`` into ``output_path``. ``codes``: a bundle of ``vidinv invert`` (skips
        detection, tracking and inversion); ``report``: also write the run report as JSON (it is always in
        ``EditResult.report``); ``preview``: also write the side-by-side preview video.

        On failure every progress bar is closed, and the run's cache is removed unless a rerun can resume
        from it (an interrupt or a crashed worker: :func:`~pipelines.cache.resumable`)."""
        self._run_cache = None
        try:
            return self._run(input_path, output_path, edits, allow_no_face, codes, report, preview)
        except BaseException as exc:
            close_progress()
            if self._run_cache is not None and not resumable(exc) and not self.cfg.execution.keep_cache:
                remove_run_cache(*self._run_cache)
            raise

    def _run(self, input_path, output_path, edits, allow_no_face, codes, report, preview) -> EditResult:
        timings: dict[str, float] = {}
        # 1. probe the input, resolve models and edits: everything that can fail does so before any work
        src, out, info = self.probe(input_path, output_path, edits)
        for path, what in ((out, "output"), (report, "report"), (preview, "preview")):
            if path:
                existing_output(path, self.cfg.output.overwrite, what)
        self._n_frames = info.n_frames
        edits = list(edits or [])
        self.require_weights(edits)
        spec = self.model_spec()
        self.check(out, spec)
        parser = self.parser()
        plan = self.resolve_edits(edits, spec)
        self.prefetch(spec)
        cache_root = self.cache_root(out)
        cache = ChunkCache(cache_root, run_key(src, self.cfg, edits))
        self._run_cache = (cache, cache_root)
        if codes:  # 2-4 from a codes bundle (checked against this clip and these models first)
            from pipelines.codes import load_bundle

            targets, saved_codes, facts = load_bundle(codes, src, info, spec, self.cfg)
        else:
            targets, facts = self._analyze_and_plan(src, info, spec, cache, timings)
        if not any(t.valid.any() for t in targets):
            log_chunk_stats(cache.stats)
            res = self._copy_through(src, out, info, allow_no_face, cache_root, timings)
            return self._finish(res, src, facts, edits, codes, None, report)
        log.info("editing %d face track(s): %s", len(targets),
                 ", ".join(f"#{t.track_id} frames {t.frames[0]}-{t.frames[1] - 1}" for t in targets))
        store = CodeStore(cache.root)
        try:
            # 4. invert the target faces
            with timed(timings, "invert_s"):
                code = saved_codes if codes else self.invert(src, info, targets, spec, cache, store)
            # 5. edit the codes over time
            per_target = self.edit_codes(targets, code, plan, facts["cuts"], facts_frame_times(facts), store)
            # 5b. tune the generator on the clip around its codes (--tune pti; pipelines/tuning.py)
            tuned = self._tune_step(src, targets, per_target, facts, spec, cache, codes, timings)
            # 6. render (with the tuned weights, stitched with --stitch), paste back and encode
            with timed(timings, "render_write_s"):
                n_written = self.render(src, out, info, targets, per_target, spec, parser, cache, tuned)
            if preview:
                self._preview_step(src, preview, info, targets, per_target, spec, cache, facts, tuned, timings)
        finally:
            store.close()
        if n_written != info.n_frames:  # pragma: no cover - a broken invariant
            raise VidinvError(f"internal error: wrote {n_written} of {info.n_frames} frames")
        log_chunk_stats(cache.stats)
        executor = getattr(self.executor, "name", type(self.executor).__name__)
        self._cleanup(cache_root)
        res = EditResult(str(out), info.n_frames, [t.track_id for t in targets],
                         int(sum(t.valid.sum() for t in targets)), timings, chunks=dict(cache.stats),
                         executor=executor)
        return self._finish(res, src, facts, edits, codes, preview, report)

    def _tune_step(self, src, targets, per_target, facts, spec, cache, codes, timings) -> dict | None:
        """Step 5b: with ``tune.enabled``, the clip's PTI (and stitching settings); else None."""
        if not self.cfg.tune.enabled:
            return None
        with timed(timings, "tune_s"):
            return self.tune(src, targets, per_target, facts["cuts"], spec, cache, bundle=codes)

    def _preview_step(self, src, preview, info, targets, per_target, spec, cache, facts, tuned, timings) -> None:
        """The side-by-side preview (with the PTI weights when tuned, not the stitched ones)."""
        from pipelines.preview import write_preview

        with timed(timings, "preview_s"):
            ptuned = None if tuned is None else dict(tuned, stitch=None)
            write_preview(self, src, preview, info, targets, per_target, spec, cache, facts, tuning=ptuned)

    def _analyze_and_plan(self, src: Path, info, spec: dict, cache: ChunkCache, timings: dict):
        """Steps 2-3: ``(targets, clip facts)`` (faces per frame, pts, tracks, cuts; see pipelines.report)."""
        # 2. analyse: faces, landmarks and histograms of every frame
        with timed(timings, "analyze_s"):
            analysis = self.analyze(src, info, cache)
        # 3. plan: cuts, tracks, targets and their smoothed geometry
        with timed(timings, "plan_s"):
            targets, tracks, cuts = self.plan(src, info, analysis, spec, cache)
        return targets, clip_facts(analysis, info, tracks, cuts)

    def _finish(self, res: EditResult, src: Path, facts: dict, edits: list, codes, preview,
                report) -> EditResult:
        """The run report into ``res.report`` (and to ``report`` as JSON when given)."""
        res.report = build_report(src, res, facts, self.cfg, res.executor,
                                  edits, codes=str(codes) if codes else None,
                                  preview=str(preview) if preview else None)
        if report:
            write_report(report, res.report)
        return res

    # -- 1. probe
    def probe(self, input_path: str | os.PathLike, output_path: str | os.PathLike | None = None, edits=None):
        """``(src, out, info)``: the input checked and probed, the output path (by default beside the input,
        named after the edits; never the input itself)."""
        from vidinv.io.video import probe

        src = Path(input_path)
        if not src.exists():
            raise InputError(f"{src}: no such file")
        out = Path(output_path) if output_path else default_output(src, edits)
        if out.resolve() == src.resolve():
            raise InputError(f"the output {out} would overwrite the input")
        info = probe(src)
        if info.n_frames == 0:
            raise InputError(f"{src}: the video has no frames")
        return src, out, info

    def require_weights(self, edits: list[tuple[str, float]]) -> None:
        """Every zoo file the run needs present (fetched when online), else one line naming all missing."""
        from pipelines.components import require_weights

        names = [n for n, _ in edits] + list(self.cfg.edit.condition)
        require_weights(self.cfg.models, self.cfg.blend.mask, names, offline=self.offline)

    def model_spec(self) -> dict:
        """The models with concrete paths (fails here, before any work, when weights are missing)."""
        from pipelines.components import resolve_model_spec

        return resolve_model_spec(self.cfg.models, offline=self.offline)

    def check(self, out: Path, spec: dict) -> None:
        """Output path, cache folder and model files checked before any work (one plain line each)."""
        from pipelines.components import check_models

        from vidinv.faces.detect import resolve_detector

        check_output_path(out, self.cfg.execution.cache_dir)
        check_models(spec)
        resolve_detector(self.cfg.faces.detector)
        precision = spec.get("precision", "fp32")
        if self.cfg.tune.enabled and precision != "fp32":
            raise VidinvError(f"generator tuning (--tune pti, --stitch) needs --precision fp32 (the weights are "
                              f"fine-tuned), got --precision {precision}")
        if self._models_in_process():  # else the workers' devices decide (a cluster's GPUs)
            from vidinv.device import pick_device, pick_dtype

            pick_dtype(precision, pick_device(spec.get("device", "auto")))

    def _models_in_process(self) -> bool:
        """Whether the models will run in this process (the given executor, or the one the config picks)."""
        if self._executor is not None:
            return getattr(self._executor, "name", "") == "local"
        from pipelines.executors import choose_executor

        return choose_executor(self.cfg.execution, self._n_frames)[0] == "local"

    def parser(self) -> str | None:
        """The face-parsing checkpoint of the blend mask, or None for landmark masks."""
        from pipelines.components import resolve_parser

        return resolve_parser(self.cfg.blend.mask, self.offline)

    def resolve_edits(self, edits: list[tuple[str, float]], spec: dict) -> EditPlan:
        """The edit directions (and the ``edit.condition`` ones) resolved for the spec's generator."""
        if not edits:
            return EditPlan()
        from vidinv.editing.attributes import resolve_attribute

        _, n_latent, style_dim = model_dims(spec)

        def resolve(name: str):
            return resolve_attribute(name, n_latent=n_latent, style_dim=style_dim, generator_spec=spec,
                                     offline=self.offline)

        directions = [resolve(name) for name, _ in edits]
        conditioning = [resolve(name) for name in self.cfg.edit.condition]
        return EditPlan(directions, [float(s) for _, s in edits], conditioning, n_latent)

    def prefetch(self, spec: dict) -> None:
        """Start loading the inversion models now, so that they load while the analysis runs (in-process:
        a background thread; on Ray: the workers start)."""
        from pipelines.stages import InvertStage

        prefetch = getattr(self.executor, "prefetch", None)
        if prefetch is not None:
            model_dims(spec)  # the driver's own look at the models is done before, never alongside, the load
            prefetch(InvertStage, dict(spec=spec))

    def cache_root(self, out: Path) -> Path:
        d = self.cfg.execution.cache_dir
        return Path(d) if d else out.parent / f".{out.name}.vidinv-cache"

    # -- 2. analyse
    def analyze(self, path: Path, info, cache: ChunkCache) -> list[dict]:
        """Pass 1: per chunk, detections and colour histograms (see ``AnalyzeStage``)."""
        from pipelines.stages import AnalyzeStage

        bar = Progress(info.n_frames, "detect", self.quiet)
        kw = dict(detector=self.cfg.faces.detector, detect_max_side=self.cfg.faces.detect_max_side,
                  upsample=self.cfg.faces.detect_upsample, min_face=self.cfg.faces.min_face)
        kw["device"] = self.cfg.models.device  # the neural detectors run where the models do
        out = list(cached_map(self.executor, AnalyzeStage, kw, self._ranges(info),
                              lambda a, b: dict(path=str(path), start=a, stop=b), cache, "analyze", gpu=False,
                              progress=bar))
        bar.close()
        return out

    # -- 3. plan
    def plan(self, path: Path, info, analysis: list[dict], spec: dict, cache: ChunkCache):
        """``(targets, tracks, cuts)`` for the spec's crop size, with the flow pass when configured."""
        size, _, _ = model_dims(spec)
        refine = (lambda lms, valids, cuts: self.refine(path, info, lms, valids, cuts, cache)) \
            if self.cfg.stabilize.flow_refine else None
        return plan_geometry(analysis, info.n_frames, self.cfg, size, refine=refine)

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
        bar = Progress(info.n_frames, "flow", self.quiet)
        ranges = self._ranges(info)
        results = cached_map(self.executor, RefineStage, {}, ranges, make_item, cache, "refine", gpu=False,
                             progress=bar)
        for (a, b), res in zip(ranges, results):
            for i, lm in enumerate(res["landmarks"]):
                out[i][a:b] = lm[a - res["start"]:]
        bar.close()
        return out

    # -- 4. invert
    def invert(self, path: Path, info, targets: list[Target], spec: dict, cache: ChunkCache,
               store: CodeStore) -> dict:
        """Pass 2: codes per target, ``{target index: {name: [T, ...]}}`` (memory-mapped; rows of invalid
        frames are zero)."""
        from pipelines.stages import InvertStage

        def make_item(a: int, b: int) -> dict:
            jobs = [(t, (ti, t), tg.M[t]) for ti, tg in enumerate(targets)
                    for t in range(a, b) if tg.valid[t]]
            return dict(path=str(path), start=a, stop=b, jobs=jobs)

        bar = Progress(info.n_frames, "invert", self.quiet)
        out: dict[int, dict[str, np.ndarray]] = {}
        for res in cached_map(self.executor, InvertStage, dict(spec=spec), self._ranges(info), make_item,
                              cache, "invert", gpu=True, progress=bar):
            for i, (ti, t) in enumerate(res["keys"]):
                code = out.setdefault(ti, {})
                for k, v in res["code"].items():
                    if k not in code:
                        code[k] = store.array(f"t{ti}_{k}", (info.n_frames,) + v.shape[1:])
                    code[k][t] = v[i]
        bar.close()
        return out

    # -- 5. edit
    @staticmethod
    def frame_times(analysis: list[dict], info) -> np.ndarray:
        """Presentation time (s) of every frame, from the decoded timestamps (VFR-safe)."""
        pts = [int(p) for res in analysis for p in res["pts"]]
        return np.asarray(pts, np.float64) * float(info.time_base)

    def edit_codes(self, targets: list[Target], codes: dict, plan: EditPlan, cuts: list[int],
                   times: np.ndarray, store: CodeStore, block: int = 256) -> dict:
        """Gather of pass 2: code smoothing, edits with their schedule, edit-delta smoothing.

        Returns ``{target index: (code {name: [T, ...]}, delta [T, L, sd] or None)}`` where the edited
        latent of frame t is ``w[t] + delta[t]`` (see :func:`~vidinv.editing.temporal.frame_code`).
        Arrays stay memory-mapped and are processed ``block`` frames at a time.
        """
        from vidinv.editing.schedule import Schedule

        T = len(times)
        sched = Schedule.parse(self.cfg.edit.schedule)
        ramp = np.asarray(sched.strengths(T, times=times - times[0] if T else None), np.float64)
        out = {}
        for ti, tg in enumerate(targets):
            if ti not in codes:
                continue
            code = {k: smooth_runs(v, tg.valid, cuts, self.cfg.stabilize.codes, inplace=True)
                    for k, v in codes[ti].items()}
            delta = None if not plan else self._delta(f"t{ti}", code["w"], tg.valid, plan, ramp, cuts, store,
                                                      block)
            out[ti] = (code, delta)
        return out

    def _delta(self, name: str, W: np.ndarray, valid: np.ndarray, plan: EditPlan, ramp: np.ndarray,
               cuts: list[int], store: CodeStore, block: int) -> np.ndarray:
        """One target's per-frame edit delta ``[T, L, sd]`` (zero on invalid frames, smoothed over runs)."""
        T = len(W)
        L = W.shape[1] if W.ndim == 3 else plan.n_latent
        delta = store.array(f"{name}_delta", (T, L, W.shape[-1]))
        for a in range(0, T, block):
            strengths = [s * ramp[a : a + block] for s in plan.strengths]
            w = as_wplus(np.array(W[a : a + block]), L)
            delta[a : a + block] = edit_deltas(w, plan.directions, strengths, plan.conditioning)
        delta[~valid] = 0
        smooth_runs(delta, valid, cuts, self.cfg.stabilize.edit_delta, inplace=True)
        return delta

    # -- 5b. tune
    def tune(self, src: Path, targets: list[Target], per_target: dict, cuts: list[int], spec: dict,
             cache: ChunkCache, bundle: str | os.PathLike | None = None) -> dict | None:
        """PTI per target (``tune.method: pti``): the render stage's ``tuning`` argument, or None. With a
        codes ``bundle`` the weights are taken from it, or stored into it once tuned."""
        from pipelines.tuning import bundle_pti, render_tuning, run_pti

        weights = None
        if self.cfg.tune.method == "pti":
            weights = bundle_pti(bundle, self.cfg, lambda: run_pti(self, src, targets, per_target, cuts, spec,
                                                                  cache))
        return render_tuning(self.cfg, weights, self.quiet)

    # -- 6. render + encode
    @staticmethod
    def frame_jobs(targets: list[Target], per_target: dict, a: int, b: int) -> list[dict]:
        """The render jobs of frames ``[a, b)``: one per valid target face, in frame order."""
        jobs = []
        for ti, tg in enumerate(targets):
            if ti in per_target:
                jobs += [dict(frame=t, target=ti, M=tg.M[t], lm_crop=tg.lm_crop[t],
                              **frame_code(per_target[ti], t))
                         for t in range(a, b) if tg.valid[t]]
        jobs.sort(key=lambda j: j["frame"])
        return jobs

    def render(self, src: Path, out: Path, info, targets: list[Target], per_target: dict, spec: dict,
               parser: str | None, cache: ChunkCache, tuning: dict | None = None) -> int:
        """Pass 3: render and paste back the edited faces, encode the frames in order; returns the number
        of frames written."""
        from pipelines.stages import RenderStage
        from vidinv.io.video import VideoWriter

        def make_item(a: int, b: int) -> dict:
            return dict(path=str(src), start=a, stop=b, jobs=self.frame_jobs(targets, per_target, a, b))

        bar = Progress(info.n_frames, "render", self.quiet)
        n_written = 0
        blend = dict(asdict(self.cfg.blend), parser=parser)
        enc = self.cfg.output
        with VideoWriter(out, info, crf=enc.crf, preset=enc.preset, audio_from=src) as writer:
            kw = dict(spec=spec, blend=blend)
            if tuning is not None:
                kw["tuning"] = tuning
            for res in cached_map(self.executor, RenderStage, kw,
                                  self._ranges(info), make_item, cache, "render", gpu=True, progress=bar):
                writer.write(res["frames"], res["pts"])
                n_written += len(res["frames"])
        bar.close()
        return n_written

    # -- helpers
    def _ranges(self, info) -> list[tuple[int, int]]:
        return chunk_ranges(info.n_frames, self.cfg.execution.chunk_size)

    def _copy_through(self, src: Path, out: Path, info, allow_no_face: bool, cache_root: Path,
                      timings: dict) -> EditResult:
        from vidinv.atomic import atomic_copy

        if not allow_no_face:
            raise VidinvError(f"no face found in {src} ({info.n_frames} frames); "
                              "pass --allow-no-face to copy it through unchanged")
        atomic_copy(src, out)
        executor = getattr(self.executor, "name", type(self.executor).__name__)
        self._cleanup(cache_root)
        return EditResult(str(out), info.n_frames, [], 0, timings, copied_through=True, executor=executor)

    def _cleanup(self, cache_root: Path) -> None:
        self.close()  # the run is over: its workers go
        if not self.cfg.execution.keep_cache:
            shutil.rmtree(cache_root, ignore_errors=True)
