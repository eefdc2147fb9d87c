"""`vidinv edit --tune pti / --stitch` through the pipeline (tiny random models, a few frames, few steps).

Measured here (12 frames of retalking_face1.mp4, tiny fs at 64 px; printed with -s): PTI (6 passes of
batch 6 at lr 1e-2, L2 only) lowers the crops' MSE against the source 15587 -> 2925 (5.3x); stitching
(8 steps at lr 1e-3, content weight 1) lowers the border-band MSE 8668 -> 3335 (2.6x) while the content
region moves 21 levels on average (the edit itself: 64). The tests ask for >= 2x on both.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import decode, tiny_cfg, tiny_direction  # noqa: E402

from pipelines.edit import EditPipeline  # noqa: E402
from pipelines.executors import LocalExecutor  # noqa: E402
from pipelines.reconstruct import reconstruct_clip  # noqa: E402

PTI = {"epochs": 6, "lr": 1e-2, "batch": 6, "lpips_lambda": 0.0}
STITCH = {"steps": 8, "lr": 1e-3, "content_lambda": 1.0}
N = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip(videos_dir, tmp_path_factory) -> Path:
    """The first N frames of a shared real clip."""
    from vidinv.io.video import VideoReader, VideoWriter, probe

    src = videos_dir / "retalking_face1.mp4"
    dst = tmp_path_factory.mktemp("tune") / "face.mp4"
    info = probe(src)
    chunk = VideoReader(src).read_range(0, N)
    with VideoWriter(dst, info, crf=16, preset="veryfast") as w:
        w.write(chunk.frames, chunk.pts)
    return dst


def cfg_for(tmp_path: Path | None = None, name: str = "cache", stitch: bool = False, pti: bool = True,
            **tune):
    t = {"method": "pti" if pti else "none", "stitch": stitch, "pti": dict(PTI), "stitching": dict(STITCH)}
    t.update(tune)
    ex = {"chunk_size": 6}
    if tmp_path is not None:
        ex.update(cache_dir=str(tmp_path / name), keep_cache=True)
    return tiny_cfg(tune=t, execution=ex)


def mse(a, b, mask=None):
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is None:
        return float(d.mean())
    m = np.broadcast_to(mask[..., None], d.shape)
    return float(d[m].mean())


def rendered(cache_dir: Path) -> np.ndarray:
    files = sorted(cache_dir.glob("*/render_*.pkl"))
    assert files
    return np.concatenate([pickle.loads(f.read_bytes())["frames"] for f in files])


def run(cfg, src, dst, edits=(), executor=None):
    return EditPipeline(cfg, executor=executor or LocalExecutor(), quiet=True)(src, dst, list(edits))


def test_pti_through_the_pipeline_lowers_reconstruction_error(clip):
    rec = reconstruct_clip(EditPipeline(cfg_for(), executor=LocalExecutor(), quiet=True), clip)
    src, plain, tuned = rec["source"], rec["inversion"], rec["tuned"]["inversion"]
    assert tuned.shape == plain.shape == src.shape and len(rec["frames"]) == N
    factor = mse(plain, src) / mse(tuned, src)
    print(f"\nPTI reconstruction MSE {mse(plain, src):.1f} -> {mse(tuned, src):.1f} (factor {factor:.1f})")
    assert factor >= 2.0, factor


def test_stitching_through_the_pipeline_lowers_the_border_error(clip, tmp_path):
    d = tiny_direction(tmp_path)
    edits = [(str(d), 2.0)]
    pti = reconstruct_clip(EditPipeline(cfg_for(), executor=LocalExecutor(), quiet=True), clip, edits)
    st = reconstruct_clip(EditPipeline(cfg_for(stitch=True), executor=LocalExecutor(), quiet=True), clip,
                          edits)
    src, border = st["source"], st["tuned"]["border"]
    assert border is not None and border.any() and pti["tuned"]["border"] is None
    before, after = mse(pti["tuned"]["edit"], src, border), mse(st["tuned"]["edit"], src, border)
    inside = st["tuned"]["content"]
    moved = np.abs(st["tuned"]["edit"].astype(int) - pti["tuned"]["edit"].astype(int))[inside].mean()
    tuned = pti["tuned"]
    edit_size = np.abs(tuned["edit"].astype(int) - tuned["inversion"].astype(int))[inside].mean()
    print(f"\nstitching border-band MSE {before:.1f} -> {after:.1f} (factor {before / after:.1f}); "
          f"mean |change| on the content {moved:.2f} levels (the edit itself: {edit_size:.2f})")
    assert before / after >= 2.0, (before, after)
    # the inside keeps most of the edit (the tiny random generator couples every pixel, so it moves some)
    assert moved < 0.5 * edit_size, (moved, edit_size)


def test_reedit_from_the_cache_equals_the_first_run(clip, tmp_path):
    cfg = cfg_for(tmp_path, stitch=True)
    d = tiny_direction(tmp_path)
    first = run(cfg, clip, tmp_path / "a.mp4", [(str(d), 2.0)])
    assert first.chunks["tune"] == {"reused": 0, "computed": 1}
    frames1 = rendered(tmp_path / "cache")
    for f in (tmp_path / "cache").glob("*/render_*.pkl"):
        f.unlink()  # re-render every chunk: only the tuned weights come from the cache
    again = run(cfg, clip, tmp_path / "b.mp4", [(str(d), 2.0)])
    assert again.chunks["tune"] == {"reused": 1, "computed": 0}
    assert again.chunks["render"]["computed"] == 2
    assert np.array_equal(frames1, rendered(tmp_path / "cache"))
    # and tuning changes the output (the tuned weights are used)
    plain = cfg_for(tmp_path, "plain", pti=False)
    run(plain, clip, tmp_path / "c.mp4", [(str(d), 2.0)])
    assert not np.array_equal(frames1, rendered(tmp_path / "plain"))


class _Boom(Exception):
    pass


def test_resume_after_an_interruption_mid_tuning(clip, tmp_path, monkeypatch):
    import pipelines.tuning as pt

    ref = cfg_for(tmp_path, "ref")
    run(ref, clip, tmp_path / "ref.mp4")
    real = pt.TuneStage.__call__
    calls = []

    def failing(self, item):
        import vidinv.tuning.pti as pti_mod

        orig_step = pti_mod._pti_step

        def step(*a, **k):
            calls.append(1)
            if len(calls) == 3:  # a fault in the middle of PTI
                raise _Boom("injected")
            return orig_step(*a, **k)

        monkeypatch.setattr(pti_mod, "_pti_step", step)
        try:
            return real(self, item)
        finally:
            monkeypatch.setattr(pti_mod, "_pti_step", orig_step)

    monkeypatch.setattr(pt.TuneStage, "__call__", failing)
    cfg = cfg_for(tmp_path, "cache")
    with pytest.raises(_Boom):
        run(cfg, clip, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    monkeypatch.setattr(pt.TuneStage, "__call__", real)
    res = run(cfg, clip, tmp_path / "out.mp4")
    assert res.chunks["analyze"]["computed"] == 0 and res.chunks["invert"]["computed"] == 0
    assert res.chunks["tune"] == {"reused": 0, "computed": 1}
    assert np.array_equal(rendered(tmp_path / "ref"), rendered(tmp_path / "cache"))
    assert len(decode(tmp_path / "out.mp4")[0]) == N


def test_per_shot_tuning_gives_one_group_per_shot(clip, tmp_path):
    """With tune.per_shot, each shot gets its own group serving exactly its frames."""
    from pipelines.geometry import Target
    from pipelines.tuning import tune_items

    cfg = cfg_for(per_shot=True)
    tg = Target(track_id=0, frames=(0, N), valid=np.ones(N, bool), M=np.tile(np.eye(3), (N, 1, 1)),
                lm_crop=np.zeros((N, 68, 2)))
    code = {"w": np.zeros((N, 10, 64), np.float32)}
    items = tune_items(clip, [tg], {0: (code, None)}, [5], cfg, quiet=True)
    assert [(it["start"], it["stop"]) for it in items] == [(0, 5), (5, N)]
    assert items[0]["serves"] == list(range(5)) and items[1]["frames"] == list(range(5, N))


@pytest.mark.ray
def test_tuned_edit_on_ray_matches_in_process(clip, tmp_path, ray_local):
    from pipelines.executors import RayExecutor

    d = tiny_direction(tmp_path)
    run(cfg_for(tmp_path, "local", stitch=True), clip, tmp_path / "l.mp4", [(str(d), 2.0)])
    ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)
    try:
        run(cfg_for(tmp_path, "ray", stitch=True), clip, tmp_path / "r.mp4", [(str(d), 2.0)], executor=ex)
    finally:
        ex.shutdown()
    a, b = rendered(tmp_path / "local"), rendered(tmp_path / "ray")
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_eval_ravdess_adds_tuned_rows_and_names_the_id_mode(videos_dir, tmp_path_factory, tmp_path, capsys):
    import json

    import yaml

    from test_eval import ravdess_tree
    from vidinv.cli import main

    root = ravdess_tree.__wrapped__(videos_dir, tmp_path_factory)
    conf = tmp_path / "tune.yaml"
    conf.write_text(yaml.safe_dump({"tune": {"pti": {"lr": 1e-2, "batch": 8, "lpips_lambda": 0.0}}}))
    out = tmp_path / "eval"
    rc = main(["eval", "ravdess", str(root), "--num-videos", "1", "--identity", "dlib", "--no-lpips",
               "--generator", "tiny", "--encoder", "tiny", "--executor", "local", "--detector", "dlib",
               "--config", str(conf), "--tune", "pti", "--tune-steps", "4", "--id-mode", "ratio_of_means",
               "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["id_mode"] == "ratio_of_means"
    assert {"source", "inversion", "fs+pti"} <= set(summary["methods"])
    s = summary["summary"]
    for k in ("ic", "tl_id", "tg_id", "ssim_mean", "psnr_mean", "id_mean"):
        assert s["fs+pti"][k]["n"] == 1, k
    assert s["fs+pti"]["mse_mean"]["mean"] < s["inversion"]["mse_mean"]["mean"] / 2
    report = (out / "report.md").read_text()
    assert "ratio_of_means" in report and "| fs+pti |" in report


def test_tuning_flags_set_the_config_and_defaults_are_the_librarys():
    import argparse

    from vidinv.commands.edit import add_parser, config_from_args
    from vidinv.tuning import StitchConfig, TuneConfig

    p = argparse.ArgumentParser()
    p.add_argument("--quiet", action="store_true")
    add_parser(p.add_subparsers())
    cfg = config_from_args(p.parse_args(["edit", "x.mp4"]))
    assert cfg.tune.method == "none" and not cfg.tune.stitch
    assert cfg.tune.pti == TuneConfig() and cfg.tune.stitching == StitchConfig()  # one source of defaults
    cfg = config_from_args(p.parse_args(["edit", "x.mp4", "--tune", "pti", "--stitch", "--tune-steps", "7",
                                         "--tune-frames", "5", "--tune-per-shot", "--stitch-steps", "3"]))
    t = cfg.tune
    assert (t.method, t.stitch, t.per_shot, t.pti.epochs, t.pti.max_frames, t.stitching.steps) == \
        ("pti", True, True, 7, 5, 3)
    assert t.pti.lr == TuneConfig().lr


def test_codes_bundle_keeps_the_pti_weights_and_reedits_bit_for_bit(clip, tmp_path, monkeypatch):
    """`vidinv edit --codes X.codes --tune pti` stores the tuned weights in the bundle; the next re-edit from
    the bundle does not tune again and gives the first run's frames bit for bit."""
    import pipelines.tuning as pt
    from pipelines.codes import invert_clip

    edits = [(str(tiny_direction(tmp_path)), 2.0)]
    first = run(cfg_for(tmp_path, "first"), clip, tmp_path / "first.mp4", edits)  # one shot, tuned
    assert first.chunks["tune"]["computed"] == 1
    invert_clip(EditPipeline(cfg_for(tmp_path, "inv", pti=False), executor=LocalExecutor(), quiet=True), clip,
                tmp_path / "face.codes")
    pipe = EditPipeline(cfg_for(tmp_path, "a"), executor=LocalExecutor(), quiet=True)
    pipe(clip, tmp_path / "a.mp4", edits, codes=tmp_path / "face.codes")
    assert len(list((tmp_path / "face.codes").glob("tuned_pti_*.pt"))) == 1

    def no_tuning(self, item):
        raise AssertionError("tuned again despite the bundle's weights")

    monkeypatch.setattr(pt.TuneStage, "__call__", no_tuning)
    pipe = EditPipeline(cfg_for(tmp_path, "b"), executor=LocalExecutor(), quiet=True)
    res = pipe(clip, tmp_path / "b.mp4", edits, codes=tmp_path / "face.codes")
    assert "tune" not in res.chunks
    ref = rendered(tmp_path / "first")
    assert np.array_equal(ref, rendered(tmp_path / "a")) and np.array_equal(ref, rendered(tmp_path / "b"))


def test_preview_shows_the_tuned_renders(clip, tmp_path):
    """`--preview` with `--tune pti`: the inversion panel is the tuned generator's (closer to the source)."""
    from pipelines.preview import PREVIEW_SIZE

    run_plain = EditPipeline(cfg_for(tmp_path, "p0", pti=False), executor=LocalExecutor(), quiet=True)
    run_plain(clip, tmp_path / "p0.mp4", [], preview=tmp_path / "p0_preview.mp4")
    run_tuned = EditPipeline(cfg_for(tmp_path, "p1"), executor=LocalExecutor(), quiet=True)
    run_tuned(clip, tmp_path / "p1.mp4", [], preview=tmp_path / "p1_preview.mp4")
    a, b = decode(tmp_path / "p0_preview.mp4")[0], decode(tmp_path / "p1_preview.mp4")[0]
    s = PREVIEW_SIZE
    src, inv0, inv1 = b[:, :, :s], a[:, :, s : 2 * s], b[:, :, s : 2 * s]
    assert mse(inv1, src) < mse(inv0, src) / 2
