"""`vidinv edit` / `vidinv faces` / `vidinv eval` from the command line: success, and one clear line on bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_clips import face_frames, write_clip  # noqa: E402

from vidinv.cli import main  # noqa: E402

TINY = ["--generator", "tiny", "--encoder", "tiny", "--executor", "local", "--detector", "dlib"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("cli") / "face.mp4", face_frames(10))


def test_edit_cli_smoke(clip, tmp_path, capsys):
    d = tmp_path / "dir.npy"
    v = np.random.default_rng(1).standard_normal((1, 640)).astype(np.float32)
    np.save(d, v / np.linalg.norm(v))
    out = tmp_path / "out.mp4"
    rc = main(["edit", str(clip), "--attr", f"{d}=1.5", "--out", str(out), "--quiet", *TINY])
    assert rc == 0 and out.is_file()
    assert "10 frames" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle,code", [
    (["edit", "/nonexistent/clip.mp4"], "no such file", 2),
    (["edit", "{clip}", "--attr", "no_such_attribute"], "known", 2),
])
def test_edit_cli_bad_input_one_line(clip, capsys, args, needle, code):
    args = [a.format(clip=clip) for a in args]
    rc = main(args + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code
    assert len(err) == 1 and err[0].startswith("vidinv: error:") and needle in err[0]


def test_edit_cli_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    rc = main(["edit", str(bad), "--invert-only", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "Traceback" not in err[0]


def test_edit_cli_missing_weights_offline(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    rc = main(["edit", str(clip), "--invert-only", "--offline", "--executor", "local"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1
    assert "vidinv weights fetch" in err[0] and "import" in err[0]
    assert not list(clip.parent.glob("face_*.mp4"))  # failed before doing any work


def test_faces_cli_lists_tracks_and_writes_sheet(clip, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    rc = main(["faces", str(clip), "--sheet", str(sheet), *TINY])
    out = capsys.readouterr().out
    assert rc == 0 and "1 face track" in out and sheet.is_file()


@pytest.mark.parametrize("method", ["e4e", "hfgi", "hyperinverter", "padinv"])
def test_every_inverter_runs_through_edit(method, tmp_path):
    """The same pipeline (codes cache, smoothing, edit, render) with each inverter's tiny model."""
    from pipelines.edit import EditPipeline
    from pipelines.executors import LocalExecutor
    from vidinv.config import load_config

    src = write_clip(tmp_path / "f.mp4", face_frames(6))
    cfg = load_config(overrides={"models": {"inverter": method, "generator": "tiny", "encoder": "tiny"},
                                 "faces": {"detector": "dlib"},
                                 "execution": {"executor": "local", "cache_dir": str(tmp_path / "c"), "keep_cache": True}})
    # a W direction sized for the tiny model (style dim 64 for the rosinality-based methods, 32 otherwise)
    sd = 64 if method in ("e4e", "hfgi") else 32
    v = np.random.default_rng(0).standard_normal((1, sd)).astype(np.float32)
    d = tmp_path / "w_dir.npy"
    np.save(d, v / np.linalg.norm(v))
    pipe = EditPipeline(cfg, executor=LocalExecutor(), quiet=True)
    res = pipe(src, tmp_path / "o.mp4", [(str(d), 3.0)])
    assert res.faces_edited == 6 and (tmp_path / "o.mp4").is_file()
    pipe(src, tmp_path / "o0.mp4", [])  # the inversion alone
    import pickle

    frames = [pickle.loads(f.read_bytes())["frames"] for f in sorted((tmp_path / "c").glob("*/render_*.pkl"))]
    assert len(frames) == 2  # two runs (edit, inversion), one chunk each
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 0  # the edit changed the face


@pytest.mark.parametrize("extra,needle", [
    (["--strength", "2"], "--invert-only"),  # a strength without --attr used to render the plain inversion
    (["--attr", "smile", "--invert-only"], "exclude"),
])
def test_edit_cli_needs_attr_or_invert_only(clip, tmp_path, capsys, extra, needle):
    out = tmp_path / "o.mp4"
    rc = main(["edit", str(clip), "--out", str(out), *extra, *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("vidinv: error:") and needle in err[0]
    assert not out.exists()


# ----------------------------------------------------------------------------- issue 14
# invert/--codes, report, preview, --overwrite, folder mode


def test_invert_then_edit_codes_cli_with_report_and_preview(clip, tmp_path, capsys):
    import json

    codes = tmp_path / "face.codes"
    assert main(["invert", str(clip), "-o", str(codes), "--quiet", *TINY]) == 0
    assert (codes / "meta.json").is_file() and "10 faces inverted" in capsys.readouterr().out
    out, rep, prev = tmp_path / "out.mp4", tmp_path / "run.json", tmp_path / "prev.mp4"
    rc = main(["edit", str(clip), "--codes", str(codes), "--invert-only", "--out", str(out),
               "--report", str(rep), "--preview", str(prev), "--quiet", *TINY])
    assert rc == 0 and out.is_file() and prev.is_file()
    data = json.loads(rep.read_text())
    assert data["codes"] == str(codes) and data["frames"] == 10 and data["faces_edited"] == 10
    assert set(data["chunks"]) == {"render", "preview"}  # nothing detected or inverted again
    # a bundle of another clip: one line, exit 2
    other = write_clip(tmp_path / "other.mp4", face_frames(8))
    capsys.readouterr()
    rc = main(["edit", str(other), "--codes", str(codes), "--invert-only", "--quiet", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "another clip" in err and len(err.strip().splitlines()) == 1


def test_edit_cli_existing_output_needs_overwrite(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    rc = main(["edit", str(clip), "--invert-only", "--out", str(out), "--quiet", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"old"
    assert main(["edit", str(clip), "--invert-only", "--out", str(out), "--overwrite", "--quiet", *TINY]) == 0
    assert out.stat().st_size > 1000


def test_edit_cli_folder_mode_names_never_collide(tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_clip(tmp_path / "in" / sub / "take.mp4", face_frames(6))
    out = tmp_path / "out"
    rc = main(["edit", str(tmp_path / "in"), "--invert-only", "--out", str(out), "--quiet", *TINY])
    assert rc == 0 and "2 of 2 clips edited" in capsys.readouterr().out
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert made == ["a/take_inversion.mp4", "b/take_inversion.mp4"]
    # again without --overwrite: an error before any work
    rc = main(["edit", str(tmp_path / "in"), "--invert-only", "--out", str(out), "--quiet", *TINY])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_edit_cli_folder_mode_previews_mirrored(tmp_path, capsys):
    """Many clips: --preview names a folder; each clip's preview mirrors its output; a file name is refused."""
    import av

    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_clip(tmp_path / "in" / sub / "take.mp4", face_frames(6))
    out, prev = tmp_path / "out", tmp_path / "prev"
    rc = main(["edit", str(tmp_path / "in"), "--invert-only", "--out", str(out), "--preview", str(prev),
               "--quiet", *TINY])
    assert rc == 0 and "2 of 2 clips edited" in capsys.readouterr().out
    made = sorted(p.relative_to(prev).as_posix() for p in prev.rglob("*.mp4"))
    assert made == ["a/take_inversion.mp4", "b/take_inversion.mp4"]
    for p in prev.rglob("*.mp4"):
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            assert (s.codec_context.width, s.codec_context.height, s.frames) == (768, 256, 6)
    rc = main(["edit", str(tmp_path / "in"), "--invert-only", "--out", str(tmp_path / "o2"), "--preview",
               str(tmp_path / "p.mp4"), "--quiet", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "names a folder" in err[0]
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").rglob("*.mp4"))


def test_edit_cli_missing_weights_named_all_at_once(clip, tmp_path, monkeypatch, capsys):
    """Every file the run needs (encoder, generator, parsing net, each attribute's direction) in ONE line."""
    from vidinv.editing.attributes import attribute_artifact

    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    out = tmp_path / "o.mp4"
    rc = main(["edit", str(clip), "--attr", "smile", "--attr", "age", "--offline", "--executor", "local",
               "--out", str(out)] + (["--config", str(_mask_parsing(tmp_path))]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1, err
    for name in ("fs_encoder_143", "psp_ffhq_encode", "bisenet_79999", attribute_artifact("smile"),
                 attribute_artifact("age")):
        assert name in err[0], (name, err[0])
    assert not out.exists()


def _mask_parsing(tmp_path: Path) -> Path:
    cfg = tmp_path / "parsing.yaml"
    cfg.write_text("blend:\n  mask: parsing\n")
    return cfg


def test_edit_cli_unknown_detector_before_work(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    rc = main(["edit", str(clip), "--invert-only", "--out", str(out), *TINY, "--detector", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "unknown face detector 'nope'" in err[-1]
    assert not out.exists() and not list(tmp_path.glob(".o.mp4*"))  # no cache, no part file


@pytest.mark.parametrize("argv, rc", [(["--version"], 0), (["edit", "/nonexistent/clip.mp4", "--attr", "smile"], 2)])
def test_command_exit_runs_exit_handlers_and_keeps_the_code(tmp_path, argv, rc):
    """``vidinv`` (``cli.entry``) skips the interpreter teardown, never the exit handlers, output or exit code."""
    import subprocess

    code = ("import atexit, sys; from vidinv import cli; "
            "atexit.register(lambda: print('exit handler ran', flush=True)); "
            f"sys.argv = ['vidinv'] + {argv!r}; print('buffered', end=''); cli.entry()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == rc, out.stderr
    assert out.stdout.startswith("buffered") and "exit handler ran" in out.stdout
    assert (out.stderr.strip().startswith("vidinv: error:") and len(out.stderr.strip().splitlines()) == 1) if rc \
        else "vidinv" in out.stdout


def test_closed_output_pipe_exits_quietly():
    """``vidinv weights list | head -0``: the reader is gone before we write; exit 141 (as SIGPIPE), no message."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "vidinv", "weights", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the child has started writing
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""
