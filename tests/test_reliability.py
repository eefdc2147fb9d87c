"""Issue 15: output paths and model files checked before any work, the cache policy after a failure, and error
lines that stand alone (no progress bar drawn over or after them). In-process and fast; the kill/resume
subprocess cases are in test_kill_resume.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from media_utils import make_clip  # noqa: E402
from pipeline_clips import face_frames, write_clip  # noqa: E402

from vidinv.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NARROW = REPO.parent / "shared" / "golden" / "narrow"
TINY = ["--generator", "tiny", "--encoder", "tiny", "--executor", "local", "--detector", "dlib", "--quiet"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("rel") / "face.mp4", face_frames(6))


@pytest.fixture(scope="module")
def direction(tmp_path_factory) -> Path:
    v = np.random.default_rng(1).standard_normal((1, 640)).astype(np.float32)
    d = tmp_path_factory.mktemp("dir") / "d.npy"
    np.save(d, v / np.linalg.norm(v))
    return d


def one_error_line(capsys) -> str:
    """The error line: the last line on stderr as a terminal shows it (bars redraw with a carriage return),
    and the only one that is not blank."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").split("\n") if ln.strip()]
    assert lines and lines[-1].startswith("vidinv: error:"), err[-500:]
    assert sum(ln.startswith("vidinv: error:") for ln in lines) == 1 and "Traceback" not in err
    return lines[-1]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def edit(clip: Path, direction: Path, *extra: str) -> int:
    return main(["edit", str(clip), "--attr", f"{direction}=1.5", *TINY, *extra])


# -- 1. output paths
@pytest.mark.parametrize("make,needle", [
    (lambda t: ["--out", str(t / "missing" / "deeper" / "o.mp4")], "does not exist"),
    (lambda t: ["--out", str(t / "file.txt" / "o.mp4")], "is a file, not a folder"),
    (lambda t: ["--out", str(t), "--overwrite"], "is a folder"),  # not replaced by a file, even so
    (lambda t: ["--out", str(t / "o.mp4"), "--cache-dir", str(t / "file.txt" / "c")],
     "is a file, not a folder"),
    (lambda t: ["--out", str(t / "o.mp4"), "--cache-dir", str(t / "missing" / "c")], "does not exist"),
])
def test_exception_output_path_one_line_before_work(clip, direction, tmp_path, capsys, monkeypatch, make,
                                                     needle):
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setenv("VIDINV_FAULT", "error:analyze:1")  # any work done would end in this error instead
    rc = edit(clip, direction, *make(tmp_path))
    line = one_error_line(capsys)
    assert rc == 2 and needle in line and "injected" not in line
    assert leftovers(tmp_path, set()) == ["file.txt"]  # no folder tree created, no cache


def test_feature_cache_dir_last_level_created(clip, direction, tmp_path):
    out, cache = tmp_path / "o.mp4", tmp_path / "cache"
    assert edit(clip, direction, "--out", str(out), "--cache-dir", str(cache)) == 0 and out.is_file()


def test_exception_folder_mode_out_parent_missing(clip, direction, tmp_path, capsys):
    rc = main(["edit", str(clip.parent), "--attr", f"{direction}=1", *TINY,
               "--out", str(tmp_path / "a" / "b")])
    assert rc == 2 and "does not exist" in one_error_line(capsys) and not (tmp_path / "a").exists()


def test_exception_read_only_folder(tmp_path):
    """A folder the user cannot write in. Root writes everywhere, so as root the check runs as 'nobody'."""
    from pipelines.outputs import check_output_path

    ro = Path(tempfile.mkdtemp(prefix="vidinv-ro-"))
    try:
        ro.chmod(0o555)
        if os.geteuid() != 0:
            from vidinv.errors import InputError

            with pytest.raises(InputError, match="cannot write in the folder"):
                check_output_path(ro / "o.mp4")
            return
        code = ("import sys; from pipelines.outputs import check_output_path\n"
                "try: check_output_path(sys.argv[1])\nexcept Exception as e: print(type(e).__name__, e)")
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                              "-c", code, str(ro / "o.mp4")], capture_output=True, text=True, timeout=120,
                             cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert res.stdout.startswith("InputError") and "cannot write in the folder" in res.stdout, res
        assert len(res.stdout.strip().splitlines()) == 1 and not list(ro.iterdir())
    finally:
        ro.chmod(0o755)
        ro.rmdir()


# -- 2. model files checked before any work
def _pickled(path: Path) -> Path:
    import torch

    torch.save({"layer": torch.nn.Linear(2, 2)}, path)
    return path


@pytest.mark.parametrize("encoder,needle", [
    (lambda t: NARROW / "iresnet50.pt", "does not match"),  # another model's layout
    (lambda t: NARROW / "generator_rosinality.pt", "does not match"),
    (lambda t: _pickled(t / "pickled.pt"), "--allow-pickle"),
])
def test_exception_model_files_before_work(clip, direction, tmp_path, capsys, monkeypatch, encoder, needle):
    monkeypatch.setenv("VIDINV_FAULT", "error:analyze:1")
    out = tmp_path / "o.mp4"
    rc = main(["edit", str(clip), "--attr", f"{direction}=1", "--executor", "local", "--detector", "dlib",
               "--quiet", "--generator", str(NARROW / "generator_rosinality.pt"),
               "--encoder", str(encoder(tmp_path)), "--out", str(out)])
    line = one_error_line(capsys)
    assert rc == 2 and needle in line and "injected" not in line
    assert not out.exists() and not (tmp_path / ".o.mp4.vidinv-cache").exists()


def test_smoke_model_check_accepts_official_layouts():
    from pipelines.components import check_models

    check_models({"inverter": "fs", "encoder": str(NARROW / "fs_encoder.pt"),
                  "generator": str(NARROW / "generator_rosinality.pt"), "feature_layer": 5,
                  "feature_scale": 1.0, "allow_pickle": False})


# -- 3. cache policy
def test_feature_no_face_leaves_nothing(tmp_path, capsys):
    src = make_clip(tmp_path / "noface.mp4", 6, size=(64, 48))
    rc = main(["edit", str(src), "--invert-only", *TINY, "--out", str(tmp_path / "o.mp4")])
    assert rc == 2 and "no face" in one_error_line(capsys)
    assert leftovers(tmp_path, {"noface.mp4"}) == []


def test_feature_decode_failure_mid_file_leaves_nothing(clip, direction, tmp_path, capsys):
    data = bytearray(clip.read_bytes())
    n = len(data)
    data[n // 2 : n // 2 + 4000] = (bytes(range(256)) * 16)[:4000]  # garbage inside the video data
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    before = bad.read_bytes()
    rc = edit(bad, direction, "--out", str(tmp_path / "o.mp4"), "--chunk-size", "2")
    assert rc == 2 and "decod" in one_error_line(capsys)
    assert leftovers(tmp_path, {"bad.mp4"}) == [] and bad.read_bytes() == before


@pytest.mark.parametrize("fault,rc_want,kept", [
    ("error:invert:1", 2, False),      # deterministic: removed
    ("interrupt:invert:1", 130, True),  # Ctrl-C: kept, the rerun resumes
])
def test_feature_cache_kept_only_when_resumable(clip, direction, tmp_path, capsys, monkeypatch, fault,
                                                rc_want, kept):
    out = tmp_path / "o.mp4"
    monkeypatch.setenv("VIDINV_FAULT", fault)
    assert edit(clip, direction, "--out", str(out), "--chunk-size", "2") == rc_want
    cache = tmp_path / ".o.mp4.vidinv-cache"
    assert cache.is_dir() == kept and not out.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    monkeypatch.delenv("VIDINV_FAULT")
    assert edit(clip, direction, "--out", str(out), "--chunk-size", "2") == 0
    assert leftovers(tmp_path, set()) == ["o.mp4"]


class _CrashingExecutor:
    """In-process executor whose worker 'dies' on the 2nd invert chunk, as Ray reports it."""

    def __init__(self):
        from pipelines.executors import LocalExecutor

        self.inner = LocalExecutor()

    def map(self, stage_cls, kwargs, items, gpu=False):
        from ray.exceptions import WorkerCrashedError

        for i, res in enumerate(self.inner.map(stage_cls, kwargs, items, gpu=gpu)):
            if stage_cls.__name__ == "InvertStage" and i == 1:
                raise WorkerCrashedError()
            yield res


def test_feature_worker_crash_keeps_cache_and_resumes(clip, direction, tmp_path):
    from pipelines.edit import EditPipeline
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config

    cfg = load_config(overrides={"models": {"generator": "tiny", "encoder": "tiny"},
                                 "faces": {"detector": "dlib"},
                                 "execution": {"executor": "local", "chunk_size": 2}})
    out = tmp_path / "o.mp4"
    with pytest.raises(Exception, match="crash|died|Worker"):
        EditPipeline(cfg, executor=_CrashingExecutor(), quiet=True)(clip, out, [(str(direction), 1.5)])
    assert (tmp_path / ".o.mp4.vidinv-cache").is_dir() and not out.exists()
    res = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)(clip, out, [(str(direction), 1.5)])
    assert res.chunks["analyze"]["reused"] == 3 and res.chunks["invert"]["reused"] == 1
    assert leftovers(tmp_path, set()) == ["o.mp4"]


def test_feature_resumable_classification():
    import errno

    from ray.exceptions import RayTaskError, WorkerCrashedError

    from pipelines.cache import resumable
    from vidinv.errors import InputError

    assert resumable(KeyboardInterrupt()) and resumable(WorkerCrashedError())
    assert resumable(OSError(errno.ENOSPC, "No space left on device"))
    assert not resumable(InputError("no face")) and not resumable(ValueError("bad"))
    wrapped = RayTaskError("f", "tb", InputError("no face"))  # a worker's deterministic error
    assert not resumable(wrapped)


# -- 4. errors after progress bars
def test_feature_error_line_after_progress_bars(clip, direction, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDINV_FAULT", "error:invert:2")
    args = ["edit", str(clip), "--attr", f"{direction}=1", "--generator", "tiny", "--encoder", "tiny",
            "--executor", "local", "--detector", "dlib", "--chunk-size", "2",
            "--out", str(tmp_path / "o.mp4")]
    assert main(args) == 2  # no --quiet: the bars are drawn
    err = capsys.readouterr().err
    assert "invert:" in err  # the bar was drawn, then closed before the error
    tail = err.split("vidinv: error:")[-1]
    assert "\n" not in tail.strip() and "\r" not in tail and "injected fault after invert chunk 2" in tail
    from pipelines.cache import _OPEN_BARS

    assert len(_OPEN_BARS) == 0


# -- 7. the rest of the bad-input matrix (fast cases)
@pytest.mark.parametrize("strength,needle", [("nan", "finite"), ("inf", "finite")])
def test_exception_non_finite_strength(clip, direction, tmp_path, capsys, strength, needle):
    out = tmp_path / "o.mp4"
    rc = main(["edit", str(clip), "--attr", str(direction), "--strength", strength, *TINY, "--out", str(out)])
    assert rc != 0 and needle in one_error_line(capsys) and not out.exists()


@pytest.mark.parametrize("content", [b"", b"hello, not a video\n" * 50, bytes(range(256)) * 64])
def test_exception_unreadable_inputs_untouched(direction, tmp_path, capsys, content):
    src = tmp_path / "in.mp4"
    src.write_bytes(content)
    rc = main(["edit", str(src), "--attr", str(direction), *TINY])
    assert rc == 2 and one_error_line(capsys) and src.read_bytes() == content
    assert leftovers(tmp_path, {"in.mp4"}) == []
