"""``vidinv doctor``: the checks, their OK/WARN/FAIL lines and the exit code."""

from __future__ import annotations

import pytest

from vidinv.commands import doctor


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VIDINV_OFFLINE", raising=False)
    return tmp_path / "home"


def test_smoke_cli_without_models(home, capsys):
    from vidinv.cli import main

    assert main(["doctor", "--skip-models"]) == 0
    out = capsys.readouterr().out
    assert "OK    python" in out and "OK    torch" in out
    assert "WARN  fs_encoder_143" in out and "missing" in out  # empty cache
    assert str(home) in out
    assert "tiny invert+edit" not in out


def test_model_path_runs_with_tiny_models():
    c = doctor.check_model_path()
    assert c.essential
    assert c.status == "OK", c.detail
    assert "finite" in c.detail and "[1, 3, 64, 64]" in c.detail


def test_model_path_failure_is_a_fail_line(home, capsys, monkeypatch):
    import vidinv.models.tiny as tiny

    def boom(*a, **k):
        raise RuntimeError("tiny generator broke\nsecond line")

    monkeypatch.setattr(tiny, "tiny_generator", boom)
    c = doctor.check_model_path()
    assert c.status == "FAIL" and c.detail == "RuntimeError: tiny generator broke"
    from vidinv.cli import main

    assert main(["doctor"]) == 1  # reported, not raised
    out = capsys.readouterr().out
    assert "FAIL  tiny invert+edit" in out and "essential check(s) failed" in out


def test_packages_missing_essential_fails_optional_warns():
    rows = doctor.check_packages((("numpy", "numpy", "numpy", True),
                                  ("nope", "vidinv_no_such_module_xyz", "vidinv-no-such-dist", True),
                                  ("opt", "vidinv_no_such_module_abc", "vidinv-no-such-abc", False)))
    assert [r.status for r in rows] == ["OK", "FAIL", "WARN"]
    assert "pip install vidinv-no-such-dist" in rows[1].detail
    import numpy

    assert rows[0].detail == numpy.__version__


def test_zoo_lines_follow_the_cache(home, directions_dir):
    from vidinv.zoo import Zoo

    Zoo().import_dir(directions_dir / "fs_boundaries")
    lines = {c.label: c for c in doctor.check_zoo(verify=True)}
    assert lines["fs_smiling"].status == "OK" and "verified" in lines["fs_smiling"].detail
    assert lines["psp_ffhq_encode"].status == "WARN"
    p = Zoo().path("fs_eyeglasses")
    p.chmod(0o644)
    p.write_bytes(b"\0" * p.stat().st_size)  # same size, wrong bytes
    lines = {c.label: c for c in doctor.check_zoo(verify=True)}
    assert lines["fs_eyeglasses"].status == "FAIL" and "corrupt" in lines["fs_eyeglasses"].detail


def test_face_backends_find_dlib_models():
    d = doctor.dlib_model_dir()
    if d is None:
        pytest.skip("face_recognition_models is not installed")
    assert (d / "shape_predictor_68_face_landmarks.dat").is_file()
    rows = {c.label: c for c in doctor.check_face_backends()}
    assert set(rows) == {"dlib", "face-alignment", "insightface"}
    assert str(d) in rows["dlib"].detail


def test_model_path_restores_the_torch_thread_count(monkeypatch):
    import torch

    import vidinv.models.tiny as tiny

    before = torch.get_num_threads()
    seen = []
    real = tiny.tiny_generator

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(tiny, "tiny_generator", spy)
    assert doctor.check_model_path().status == "OK"
    assert seen == [1] and torch.get_num_threads() == before  # one thread while it runs, restored after

    def boom(*a, **k):
        raise RuntimeError("broken")

    monkeypatch.setattr(tiny, "tiny_generator", boom)
    assert doctor.check_model_path().status == "FAIL" and torch.get_num_threads() == before
