"""Importing vidinv stays cheap: no Ray, no insightface, no face-alignment, no LPIPS until a feature needs them.

Each case imports modules in a fresh interpreter and lists which heavy packages got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "package and cli": (["vidinv", "vidinv.cli"], ["torch", "ray", "insightface", "face_alignment", "lpips", "kornia"]),
    "zoo and its commands": (["vidinv.zoo", "vidinv.commands.weights", "vidinv.commands.doctor"],
                             ["torch", "ray", "insightface", "face_alignment", "lpips", "requests", "gdown"]),
    "metrics": (["vidinv.metrics.report", "vidinv.metrics.identity", "vidinv.metrics.ravdess"],
                ["ray", "insightface", "lpips", "dlib", "face_alignment", "matplotlib"]),
    "training": (["vidinv.training", "vidinv.commands.train"], ["ray", "lpips", "insightface", "face_alignment"]),
}


def heavy_loaded(modules: list[str], heavy: list[str]) -> list[str]:
    code = (f"import sys, {', '.join(modules)}; "
            f"print(sorted(m for m in {tuple(heavy)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip())


@pytest.mark.parametrize("name", list(CASES))
def test_imports_stay_light(name):
    modules, heavy = CASES[name]
    assert heavy_loaded(modules, heavy) == []


def test_the_check_can_fail():
    assert heavy_loaded(["json"], ["json", "ray"]) == ["json"]
