"""The edit pipeline end to end with tiny random models (and the offline dlib face stack).

Checks what a user relies on: the output has the input's frame count, timestamps, duration and
byte-identical audio; frames without the target face pass through; the face region is what changes;
in-process and Ray runs give the same frames; an interrupted run resumes from its chunk cache.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_clips import audio_packets, face_frames, side_by_side, write_clip  # noqa: E402

from pipelines.edit import EditPipeline  # noqa: E402
from pipelines.executors import LocalExecutor  # noqa: E402
from vidinv.config import load_config  # noqa: E402
from vidinv.errors import VidinvError  # noqa: E402

SHARED_CLIPS = ["retalking_face1.mp4", "retalking_face3_aoc.mp4", "retalking_face5_glasses.mp4",
                "liveportrait_d12_expressive_glasses.mp4", "sadtalker_WDA_KatieHill_000.mp4"]


def tiny_cfg(**over):
    o = {"models": {"generator": "tiny", "encoder": "tiny", "batch_size": 8},
         "faces": {"detector": "dlib", "detect_max_side": 320},
         "execution": {"executor": "local", "chunk_size": 16}}
    for k, v in over.items():
        o.setdefault(k, {}).update(v)
    return load_config(overrides=o)


def tiny_direction(tmp_path: Path) -> Path:
    """A unit W+ direction in the Feature-Style boundary format, sized for the tiny generator (10 x 64)."""
    v = np.random.default_rng(0).standard_normal((1, 10 * 64)).astype(np.float32)
    p = tmp_path / "tiny_boundary.npy"
    np.save(p, v / np.linalg.norm(v))
    return p


def decode(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(float(f.pts * f.time_base))
        dur = float(s.duration * s.time_base) if s.duration else None
    return np.stack(frames), np.array(pts), dur


def run_edit(cfg, src, dst, edits=(), **kw):
    return EditPipeline(cfg, executor=LocalExecutor(), quiet=True)(src, dst, list(edits), **kw)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    return write_clip(d / "face.mp4", face_frames(24))


def test_smoke_inversion_and_edit(face_clip, tmp_path):
    cfg = tiny_cfg()
    inv = run_edit(cfg, face_clip, tmp_path / "inv.mp4")
    d = tiny_direction(tmp_path)
    ed = run_edit(cfg, face_clip, tmp_path / "ed.mp4", [(str(d), 2.0)])
    assert inv.faces_edited == 24 and ed.faces_edited == 24
    src, src_pts, _ = decode(face_clip)
    a, a_pts, _ = decode(tmp_path / "inv.mp4")
    b, _, _ = decode(tmp_path / "ed.mp4")
    assert a.shape == src.shape and np.allclose(a_pts, src_pts)
    # the edit changes the face, not the corners of the frame
    diff = np.abs(a.astype(int) - b.astype(int)).mean(-1)
    assert diff[:, 60:140, 60:140].mean() > 1.0
    assert diff[:, :12, :12].mean() < 1.0 and diff[:, -12:, -12:].mean() < 1.0
    # the inversion with random tiny models still only touches the face region
    corner = np.abs(a.astype(int) - src.astype(int))[:, :12, :12].mean()
    assert corner < 3.0
    # no cache left behind after success
    assert not list(tmp_path.glob(".*vidinv-cache*"))


def test_flow_refined_landmarks(face_clip, tmp_path):
    """The optional Lucas-Kanade pass runs over chunks and changes the geometry only slightly."""
    from pipelines.cache import ChunkCache
    from pipelines.geometry import plan_geometry
    from vidinv.io.video import probe

    cfg = tiny_cfg(execution={"chunk_size": 8}, stabilize={"flow_refine": True})
    pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)
    info = probe(face_clip)

    analysis = pipe.analyze(face_clip, info, ChunkCache(None, ""))
    calls = []

    def refine(lms, valids, cuts):
        calls.append(len(lms))
        return pipe.refine(face_clip, info, lms, valids, cuts, ChunkCache(None, ""))

    plain, _, _ = plan_geometry(analysis, info.n_frames, cfg, 64)
    flow, _, _ = plan_geometry(analysis, info.n_frames, cfg, 64, refine=refine)
    assert calls == [1]
    d = np.abs(plain[0].lm_crop - flow[0].lm_crop)
    assert 0 < d.mean() < 3.0  # crop pixels at 64: a refinement, not a different face
    res = pipe(face_clip, tmp_path / "out.mp4", [])
    assert res.faces_edited == 24


@pytest.mark.parametrize("name", SHARED_CLIPS)
def test_shared_clip_keeps_timing_and_audio(videos_dir, tmp_path, name):
    src = videos_dir / name
    if not src.exists():
        pytest.skip(f"{src} absent")
    res = run_edit(tiny_cfg(), src, tmp_path / "out.mp4", [("sefa:0", 1.0)])
    a, a_pts, a_dur = decode(src)
    b, b_pts, b_dur = decode(tmp_path / "out.mp4")
    assert len(b) == len(a) == res.n_frames
    assert b.shape == a.shape
    assert np.allclose(b_pts, a_pts, atol=1e-3)
    if a_dur and b_dur:
        assert abs(a_dur - b_dur) < 0.05
    assert audio_packets(src) == audio_packets(tmp_path / "out.mp4")
    assert res.faces_edited == res.n_frames  # single-person clips: a face in every frame


def test_two_person_clip_face_all(videos_dir, tmp_path):
    fa, _, _ = decode(videos_dir / "retalking_face3_aoc.mp4")
    fb, _, _ = decode(videos_dir / "retalking_face5_glasses.mp4")
    both = side_by_side(fa[:12], fb[:12])
    src = write_clip(tmp_path / "two.mp4", both)
    res = run_edit(tiny_cfg(faces={"face": "all"}), src, tmp_path / "out.mp4")
    assert len(res.targets) == 2 and res.faces_edited == 24
    res1 = run_edit(tiny_cfg(), src, tmp_path / "one.mp4")
    assert len(res1.targets) == 1


def test_vfr_odd_size_clip(tmp_path):
    f = face_frames(14, size=(191, 193))
    pts = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19]
    src = write_clip(tmp_path / "vfr.mp4", f, pts=pts, time_base=Fraction(1, 30))
    run_edit(tiny_cfg(), src, tmp_path / "out.mp4")
    a, a_pts, _ = decode(src)
    b, b_pts, _ = decode(tmp_path / "out.mp4")
    assert b.shape == a.shape == (14, 193, 191, 3)
    assert np.allclose(a_pts, b_pts, atol=1e-3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_phone_clip(tmp_path, rotation):
    """Faces are processed upright and the output plays the way the input does."""
    from vidinv.io.video import probe

    f = face_frames(6, size=(160, 192))
    src = write_clip(tmp_path / "rot.mp4", f, rotation=rotation)
    info = probe(src)
    assert info.rotation == rotation
    res = run_edit(tiny_cfg(), src, tmp_path / "out.mp4")
    assert res.faces_edited == 6
    out = probe(tmp_path / "out.mp4")
    assert (out.display_width, out.display_height) == (info.display_width, info.display_height) == (160, 192)
    from vidinv.io.video import VideoReader

    a = next(iter(VideoReader(src).chunks(6))).frames
    b = next(iter(VideoReader(tmp_path / "out.mp4").chunks(6))).frames
    # upright in both: the top rows (background above the head) are untouched, the face differs
    assert np.abs(a[:, :8].astype(int) - b[:, :8].astype(int)).mean() < 2.0
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_parsing_mask_when_bisenet_present(tmp_path):
    """With BiSeNet weights (random here) the blend mask comes from its face classes, else from the landmarks."""
    import torch

    from dataclasses import asdict

    from pipelines.stages import RenderStage
    from vidinv.config import BlendConfig
    from vidinv.models.bisenet import BiSeNet

    torch.manual_seed(0)
    torch.save(BiSeNet(19).state_dict(), tmp_path / "79999_iter.pth")
    spec = {"inverter": "fs", "generator": "tiny", "encoder": "tiny", "device": "cpu", "precision": "fp32",
            "batch_size": 2, "feature_layer": 5, "feature_scale": 1.0, "noise_seed": 0, "allow_pickle": False}
    images = torch.rand(3, 3, 64, 64)
    lm = np.tile(np.array([[20.0, 20.0], [44.0, 20.0], [44.0, 50.0], [20.0, 50.0]] * 17, np.float32), (3, 1, 1))
    blend = asdict(BlendConfig())  # the stage takes the config's blend settings (feather 0.04, dilate 0.02)
    hull = RenderStage(spec, blend)
    parsed = RenderStage(spec, dict(blend, parser=str(tmp_path / "79999_iter.pth")))
    m0, m1 = hull.masks(images, lm), parsed.masks(images, lm)
    assert m0.shape == m1.shape == (3, 1, 64, 64)
    assert float(m1.min()) >= 0 and float(m1.max()) <= 1
    assert not torch.allclose(m0, m1)


def test_face_appearing_halfway(tmp_path):
    f = face_frames(16)
    f[:8] = 90  # a flat grey shot before the face appears
    src = write_clip(tmp_path / "half.mp4", f)
    res = run_edit(tiny_cfg(faces={"min_track_length": 3}), src, tmp_path / "out.mp4")
    assert res.faces_edited == 8
    a, _, _ = decode(src)
    b, _, _ = decode(tmp_path / "out.mp4")
    # passed through: only the codec's rounding (the grey 89 may come back as 88)
    assert np.abs(a[:8].astype(int) - b[:8].astype(int)).max() <= 2


def test_no_face_clip(tmp_path):
    f = np.full((6, 64, 64, 3), 120, np.uint8)
    src = write_clip(tmp_path / "empty.mp4", f)
    with pytest.raises(VidinvError, match="no face found"):
        run_edit(tiny_cfg(), src, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    res = run_edit(tiny_cfg(), src, tmp_path / "out.mp4", allow_no_face=True)
    assert res.copied_through and (tmp_path / "out.mp4").read_bytes() == src.read_bytes()


def test_output_never_overwrites_input(face_clip):
    with pytest.raises(VidinvError, match="overwrite"):
        run_edit(tiny_cfg(), face_clip, face_clip)


class _InterruptAfter(LocalExecutor):
    """Stops (like a Ctrl-C) after ``n`` render chunks; counts the chunks each stage computed."""

    def __init__(self, n: int | None) -> None:
        super().__init__()
        self.n, self.counts = n, {}

    def map(self, stage_cls, kwargs, items, gpu=False):
        for res in super().map(stage_cls, kwargs, items, gpu):
            name = stage_cls.__name__
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.n is not None and name == "RenderStage" and self.counts[name] > self.n:
                raise KeyboardInterrupt
            yield res


def _rendered(cache_dir: Path) -> np.ndarray:
    """The frames the render pass produced (from the kept chunk cache), before the lossy encoder.

    (libx264 with mb-tree is not bit-reproducible on very small frames, so comparisons of runs use these.)
    """
    import pickle

    files = sorted(cache_dir.glob("*/render_*.pkl"))
    assert files
    return np.concatenate([pickle.loads(f.read_bytes())["frames"] for f in files])


def test_interrupted_run_resumes_from_cache(face_clip, tmp_path):
    cfg = tiny_cfg(execution={"chunk_size": 8, "cache_dir": str(tmp_path / "cache"), "keep_cache": True})
    ref = tiny_cfg(execution={"chunk_size": 8, "cache_dir": str(tmp_path / "ref"), "keep_cache": True})
    EditPipeline(ref, executor=LocalExecutor(), quiet=True)(face_clip, tmp_path / "full.mp4", [])
    out = tmp_path / "out.mp4"
    ex1 = _InterruptAfter(1)
    with pytest.raises(KeyboardInterrupt):
        EditPipeline(cfg, executor=ex1, quiet=True)(face_clip, out, [])
    assert not out.exists()  # nothing under the final name
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    ex2 = _InterruptAfter(None)
    res = EditPipeline(cfg, executor=ex2, quiet=True)(face_clip, out, [])
    assert res.chunks == {"analyze": {"reused": 3, "computed": 0}, "invert": {"reused": 3, "computed": 0},
                          "render": {"reused": 1, "computed": 2}}
    assert "AnalyzeStage" not in ex2.counts and "InvertStage" not in ex2.counts  # all from the cache
    assert ex2.counts["RenderStage"] == 2  # 3 chunks; the first one was finished before the interrupt
    assert np.array_equal(_rendered(tmp_path / "ref"), _rendered(tmp_path / "cache"))
    assert len(decode(out)[0]) == 24


@pytest.mark.ray
def test_ray_executor_same_frames_as_local(face_clip, tmp_path, ray_local):
    from pipelines.executors import RayExecutor

    local = tiny_cfg(execution={"chunk_size": 8, "cache_dir": str(tmp_path / "local"), "keep_cache": True})
    run_edit(local, face_clip, tmp_path / "local.mp4")
    ray_cfg = tiny_cfg(execution={"chunk_size": 8, "cache_dir": str(tmp_path / "ray"), "keep_cache": True})
    ex = RayExecutor(num_workers=2, cpus_per_worker=0.5)
    EditPipeline(ray_cfg, executor=ex, quiet=True)(face_clip, tmp_path / "ray.mp4", [])
    ex.shutdown()
    a, b = _rendered(tmp_path / "local"), _rendered(tmp_path / "ray")
    assert a.shape == b.shape == (24, 192, 192, 3)
    # bitwise in practice; the documented tolerance allows 1 level for thread-count-dependent float sums
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_conditioning_projects_the_edit_off_a_kept_attribute(tmp_path):
    """InterFaceGAN conditioning in the pipeline: the per-frame edit delta is orthogonal to the kept direction."""
    from pipelines.cache import CodeStore
    from pipelines.geometry import Target

    rng = np.random.default_rng(0)
    keep = rng.standard_normal((1, 640)).astype(np.float32)
    keep /= np.linalg.norm(keep)
    edit = (keep + rng.standard_normal((1, 640)).astype(np.float32) / 10)  # mostly along `keep`
    edit /= np.linalg.norm(edit)
    np.save(tmp_path / "keep.npy", keep)
    np.save(tmp_path / "edit.npy", edit)
    cfg = tiny_cfg(edit={"condition": [str(tmp_path / "keep.npy")]}, stabilize={"edit_delta": {"method": "none"}})
    pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)
    spec = pipe.model_spec()
    plan = pipe.resolve_edits([(str(tmp_path / "edit.npy"), 2.0)], spec)
    T = 5
    codes = {0: {"w": rng.standard_normal((T, 10, 64)).astype(np.float32)}}
    tg = Target(0, np.ones(T, bool), np.tile(np.eye(3, dtype=np.float32), (T, 1, 1)), np.zeros((T, 68, 2), np.float32))
    store = CodeStore(None)
    try:
        _, delta = pipe.edit_codes([tg], codes, plan, [], np.arange(T) / 25.0, store)[0]
        flat = np.asarray(delta).reshape(T, -1)
        assert np.abs(flat @ keep[0]).max() < 1e-4  # nothing moves along the kept attribute
        assert np.linalg.norm(flat, axis=1).min() > 1.0  # but the edit is there
    finally:
        store.close()


def test_cache_reads_past_torn_and_part_files(tmp_path):
    """A killed run leaves part files and possibly a torn chunk: the next run recomputes, never crashes."""
    from pipelines.cache import ChunkCache, cached_map

    cache = ChunkCache(tmp_path, "key")
    cache.put("analyze", 0, {"x": np.arange(3)})
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # no part file left behind
    (cache.root / "analyze_00000008.pkl").write_bytes(b"\x80\x05torn")  # a torn chunk (older writer)
    (cache.root / ".tmp-abcd").write_bytes(b"half")  # an older version's temporary file
    (cache.root / ".analyze_00000016.pkl.vidinv-part-999999999-0000.pkl").write_bytes(b"half")  # dead pid
    cache = ChunkCache(tmp_path, "key")
    assert not (cache.root / ".tmp-abcd").exists()
    calls = []

    class Stage:
        def __init__(self):
            pass

        def __call__(self, item):
            calls.append(item["start"])
            return {"x": np.arange(item["start"], item["stop"])}

    out = list(cached_map(LocalExecutor(), Stage, {}, [(0, 8), (8, 16), (16, 20)],
                          lambda a, b: dict(start=a, stop=b), cache, "analyze", gpu=False))
    assert np.array_equal(out[0]["x"], np.arange(3))  # reused
    assert np.array_equal(out[1]["x"], np.arange(8, 16)) and np.array_equal(out[2]["x"], np.arange(16, 20))
    assert sorted(calls) == [8, 16]
    assert cache.stats == {"analyze": {"reused": 1, "computed": 2}}
    assert not list(cache.root.glob(".*vidinv-part*"))
    assert ChunkCache(tmp_path, "key").get("analyze", 8)["x"].tolist() == list(range(8, 16))


def test_resume_with_another_chunk_size(face_clip, tmp_path):
    """The chunk size is part of the run key: a rerun with another --chunk-size starts a fresh cache."""
    from pipelines.cache import run_key

    cache = str(tmp_path / "cache")
    a = tiny_cfg(execution={"chunk_size": 8, "cache_dir": cache, "keep_cache": True})
    b = tiny_cfg(execution={"chunk_size": 16, "cache_dir": cache, "keep_cache": True})
    assert run_key(face_clip, a, []) != run_key(face_clip, b, [])
    assert run_key(face_clip, a, []) == run_key(face_clip, tiny_cfg(execution={"chunk_size": 8, "num_workers": 3}), [])
    run_edit(a, face_clip, tmp_path / "a.mp4")
    res = run_edit(b, face_clip, tmp_path / "b.mp4")
    assert res.n_frames == 24 and res.chunks["render"] == {"reused": 0, "computed": 2}
