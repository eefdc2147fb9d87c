"""Issue 14 through the pipeline: the run report, the preview, --overwrite, small faces and shot cuts on
clips built from the shared real clips (both people of a video-chat layout, three shots with two cuts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_clips import face_frames, write_clip  # noqa: E402
from test_pipeline import decode, run_edit, tiny_cfg, tiny_direction  # noqa: E402

from pipelines.edit import EditPipeline  # noqa: E402
from pipelines.executors import LocalExecutor  # noqa: E402
from vidinv.errors import InputError, VidinvError  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("feat") / "face.mp4", face_frames(12))


def test_report_holds_what_the_run_did(clip, tmp_path):
    from pipelines.cache import ChunkCache
    from vidinv.io.video import probe

    cfg = tiny_cfg(execution={"chunk_size": 8})
    edits = [(str(tiny_direction(tmp_path)), 1.5)]
    rep = tmp_path / "run.json"
    res = run_edit(cfg, clip, tmp_path / "out.mp4", edits, report=rep)
    data = json.loads(rep.read_text())
    assert data == json.loads(json.dumps(res.report))  # the file is the result's report
    pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)
    analysis = pipe.analyze(clip, probe(clip), ChunkCache(None, ""))
    assert data["faces_per_frame"] == [len(f) for a in analysis for f in a["faces"]] == [1] * 12
    assert data["frames"] == 12 == len(decode(tmp_path / "out.mp4")[0])
    assert data["output"] == str(tmp_path / "out.mp4") and data["input"] == str(clip)
    assert data["tracks"] == [{"id": 0, "start": 0, "stop": 12, "length": 12}] and data["targets"] == [0]
    assert data["cuts"] == [] and data["faces_edited"] == 12 and data["executor"] == "local"
    assert data["options"] == cfg.to_dict() and data["edits"] == [[edits[0][0], 1.5]]
    passes = ("analyze", "invert", "render")
    assert data["chunks"] == res.chunks == {k: {"reused": 0, "computed": 2} for k in passes}
    assert set(data["timings"]) == {"analyze_s", "plan_s", "invert_s", "render_write_s"}
    assert all(v >= 0 for v in data["timings"].values())


def test_preview_panels(clip, tmp_path):
    d = str(tiny_direction(tmp_path))
    panels = {}
    for s in (0.0, 3.0):
        p = tmp_path / f"preview{s}.mp4"
        # lossless encoding (crf 0): equal panels decode equal
        res = run_edit(tiny_cfg(output={"crf": 0}), clip, tmp_path / f"out{s}.mp4", [(d, s)], preview=p)
        frames, pts, _ = decode(p)
        assert frames.shape == (12, 256, 768, 3) and res.report["preview"] == str(p)
        assert np.allclose(pts, decode(clip)[1])  # the clip's timing
        panels[s] = frames.astype(int)
    for s, f in panels.items():
        src, inv, edit = f[..., :256, :], f[..., 256:512, :], f[..., 512:, :]
        assert np.abs(src - inv).mean() > 5  # random tiny models: the inversion is not the source
        diff = np.abs(inv - edit).mean()
        assert (diff < 0.1) if s == 0 else (diff > 3.0), (s, diff)
    # the source panel does not depend on the edit
    assert np.abs(panels[0.0][..., :256, :] - panels[3.0][..., :256, :]).mean() < 1.0


class _NoWork(LocalExecutor):
    def map(self, *a, **k):
        raise AssertionError("work started")


def test_existing_output_needs_overwrite(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match="exists; pass --overwrite") as e:
        EditPipeline(tiny_cfg(), executor=_NoWork(), quiet=True)(clip, out, [])
    assert e.value.exit_code == 2 and out.read_bytes() == b"old"
    rep = tmp_path / "r.json"
    rep.write_text("{}")
    with pytest.raises(InputError, match="report exists"):
        EditPipeline(tiny_cfg(), executor=_NoWork(), quiet=True)(clip, tmp_path / "new.mp4", [], report=rep)
    run_edit(tiny_cfg(output={"overwrite": True}), clip, out, [], report=rep)
    assert len(decode(out)[0]) == 12 and json.loads(rep.read_text())["frames"] == 12
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


@pytest.mark.parametrize("models, tune, match", [
    ({"precision": "fp16"}, {"method": "pti"}, r"generator tuning \(--tune pti, --stitch\) needs --precision fp32"),
    ({"precision": "bf16"}, {"stitch": True}, "needs --precision fp32"),
    ({"precision": "bf16", "device": "cpu"}, {}, "precision bf16 is a GPU option"),
])
def test_precision_conflicts_stop_before_any_work(clip, tmp_path, models, tune, match):
    cfg = tiny_cfg(models=models, tune=tune)
    with pytest.raises(VidinvError, match=match):
        EditPipeline(cfg, executor=_NoWork(), quiet=True)(clip, tmp_path / "out.mp4", [])
    assert not list(tmp_path.glob("*.mp4"))


def test_video_chat_clip_both_faces_every_frame(videos_dir, tmp_path):
    """Two ~150 px faces in 1280x720 (the reported bug: one lost at detect_max_side 480)."""
    from test_faces_detect import two_person_clip

    frames = two_person_clip(videos_dir, n=10)
    src = write_clip(tmp_path / "chat.mp4", frames)
    cfg = tiny_cfg(faces={"face": "all", "detect_max_side": 480})
    assert cfg.faces.min_face == 128  # the default does it
    out, preview = tmp_path / "out.mp4", tmp_path / "preview.mp4"
    res = run_edit(cfg, src, out, [(str(tiny_direction(tmp_path)), 2.0)], preview=preview)
    assert len(res.targets) == 2 and res.faces_edited == 20
    assert res.report["faces_per_frame"] == [2] * 10
    b = decode(out)[0].astype(int)
    a = decode(src)[0].astype(int)
    diff = np.abs(a - b).mean(-1)
    assert diff[:, 250:450, 200:440].mean() > 2 and diff[:, 250:450, 840:1080].mean() > 2  # both faces
    assert diff[:, :60, 560:720].mean() < 1.5  # not the background between them
    p = decode(preview)[0].astype(int)  # one row of original | inversion | edit per person
    assert p.shape == (10, 512, 768, 3)
    rows = p[:, :256], p[:, 256:]
    assert all(r.mean() > 20 for r in rows)  # both rows hold a face (an absent face's row is black)
    assert np.abs(rows[0][..., :256, :] - rows[1][..., :256, :]).mean() > 10  # two different people
    for r in rows:
        assert np.abs(r[..., 256:512, :] - r[..., 512:, :]).mean() > 1.0  # the edit shows in each row


def test_three_shots_cuts_found_and_tracks_split(videos_dir, tmp_path):
    import av
    import cv2

    parts = []
    names = ("retalking_face1.mp4", "sadtalker_WDA_KatieHill_000.mp4",
             "liveportrait_d12_expressive_glasses.mp4")
    for name in names:
        with av.open(str(videos_dir / name)) as c:
            fr = [f.to_ndarray(format="rgb24") for _, f in zip(range(8), c.decode(video=0))]
        parts.append(np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in fr]))
    src = write_clip(tmp_path / "shots.mp4", np.concatenate(parts))  # cuts at 8 and 16
    res = run_edit(tiny_cfg(faces={"face": "all"}), src, tmp_path / "out.mp4")
    rep = res.report
    assert rep["cuts"] == [8, 16]
    assert len(rep["tracks"]) == 3 and len(res.targets) == 3
    for t in rep["tracks"]:
        assert not any(t["start"] < c < t["stop"] for c in rep["cuts"]), t
