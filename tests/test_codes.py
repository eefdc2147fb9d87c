"""Codes bundles (issue 14): invert once, re-edit without detecting or inverting again.

Invert then re-edit from the bundle renders exactly the frames of a one-shot edit, in-process and on Ray;
a bundle of another clip or of other models is a one-line error; the bundle is written whole or not at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_clips import face_frames, write_clip  # noqa: E402
from test_pipeline import _rendered, tiny_cfg, tiny_direction  # noqa: E402

from pipelines.codes import invert_clip, read_meta  # noqa: E402
from pipelines.edit import EditPipeline  # noqa: E402
from pipelines.executors import LocalExecutor  # noqa: E402
from vidinv.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("codes") / "face.mp4", face_frames(12))


def _cfg(tmp_path: Path, name: str, **over):
    ex = {"chunk_size": 8, "cache_dir": str(tmp_path / name), "keep_cache": True}
    return tiny_cfg(execution=ex, **over)


def _one_shot_vs_codes(clip: Path, tmp_path: Path, make_executor) -> None:
    edits = [(str(tiny_direction(tmp_path)), 2.0)]
    one = EditPipeline(_cfg(tmp_path, "one"), executor=make_executor(), quiet=True)
    res1 = one(clip, tmp_path / "one.mp4", edits)
    inv = EditPipeline(_cfg(tmp_path, "inv"), executor=make_executor(), quiet=True)
    info = invert_clip(inv, clip, tmp_path / "face.codes")
    assert info["faces"] == res1.faces_edited == 12
    re = EditPipeline(_cfg(tmp_path, "re"), executor=make_executor(), quiet=True)
    res2 = re(clip, tmp_path / "re.mp4", edits, codes=tmp_path / "face.codes")
    # no detection, tracking or inversion in the re-edit: only the render pass ran
    assert set(res2.chunks) == {"render"} and "analyze" in res1.chunks and "invert" in res1.chunks
    assert np.array_equal(_rendered(tmp_path / "one"), _rendered(tmp_path / "re"))
    for k in ("frames", "faces_per_frame", "tracks", "cuts", "targets", "faces_edited"):
        assert res1.report[k] == res2.report[k], k
    assert res2.report["codes"] == str(tmp_path / "face.codes")


def test_invert_then_reedit_equals_one_shot(clip, tmp_path):
    _one_shot_vs_codes(clip, tmp_path, LocalExecutor)


@pytest.mark.ray
def test_invert_then_reedit_equals_one_shot_on_ray(clip, tmp_path, ray_local):
    from pipelines.executors import RayExecutor

    ex = RayExecutor(num_workers=1, cpus_per_worker=0.5)  # one executor: its actors serve the three runs
    try:
        _one_shot_vs_codes(clip, tmp_path, lambda: ex)
    finally:
        ex.shutdown()


def test_bundle_contents(clip, tmp_path):
    out = tmp_path / "face.codes"
    invert_clip(EditPipeline(tiny_cfg(), executor=LocalExecutor(), quiet=True), clip, out)
    meta = read_meta(out)
    assert meta["clip"]["n_frames"] == 12 and meta["clip"]["size"] == clip.stat().st_size
    assert meta["models"]["inverter"] == "fs" and meta["models"]["generator"] == "tiny"
    assert meta["geometry"]["faces"]["detector"] == "dlib" and len(meta["facts"]["pts"]) == 12
    g = np.load(out / "geometry.npz")
    assert g["valid"].shape == (1, 12) and g["M"].shape == (1, 12, 3, 3) and g["valid"].all()
    for k in meta["codes"]["0"]:
        assert np.load(out / f"t0_{k}.npy").shape[0] == 12
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # no temporary folder left
    # an existing bundle: an error without overwrite, replaced whole with it
    with pytest.raises(InputError, match="overwrite"):
        invert_clip(EditPipeline(tiny_cfg(), executor=LocalExecutor(), quiet=True), clip, out)
    (out / "stale.txt").write_text("x")
    pipe = EditPipeline(tiny_cfg(output={"overwrite": True}), executor=LocalExecutor(), quiet=True)
    invert_clip(pipe, clip, out)
    assert not (out / "stale.txt").exists() and (out / "meta.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".old" in p.name or ".part" in p.name]


def test_bundle_mismatch_is_one_line_error(clip, tmp_path):
    out = tmp_path / "face.codes"
    invert_clip(EditPipeline(tiny_cfg(), executor=LocalExecutor(), quiet=True), clip, out)
    other = write_clip(tmp_path / "other.mp4", face_frames(10, seed=1))
    pipe = EditPipeline(tiny_cfg(), executor=LocalExecutor(), quiet=True)
    with pytest.raises(InputError, match="another clip") as e:
        pipe(other, tmp_path / "x.mp4", [], codes=out)
    assert "\n" not in str(e.value)
    meta = json.loads((out / "meta.json").read_text())
    meta["models"]["feature_layer"] = 3
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="other models"):
        pipe(clip, tmp_path / "y.mp4", [], codes=out)
    with pytest.raises(InputError, match="not a codes bundle"):
        pipe(clip, tmp_path / "z.mp4", [], codes=tmp_path / "nothing.codes")
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()
