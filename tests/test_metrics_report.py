"""evaluate_clip + write_outputs on small synthetic crops: the four outputs, values recomputed here."""

import csv
import json
import math

import numpy as np
import pytest

from vidinv.errors import InputError
from vidinv.metrics.consistency import identity_consistency, pairwise_id, tg_id, tl_id
from vidinv.metrics.image import mse, psnr, ssim
from vidinv.metrics.report import CLIP_METRICS, evaluate_clip, summarize, write_outputs


class GridBackend:
    """A deterministic stand-in identity net: mean colour of a 4x4 grid of cells, centred (48-d)."""

    name = "grid"
    dim = 48

    def __init__(self):
        self.calls = 0

    def embed(self, images):
        self.calls += 1
        x = images.astype(np.float64) / 255.0
        n, s = x.shape[0], x.shape[1] // 4
        e = x.reshape(n, 4, s, 4, s, 3).mean(axis=(2, 4)).reshape(n, -1)
        e = e - 0.5
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def clip(T=5, S=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (1, S, S, 3))
    drift = np.linspace(0, 1, T)[:, None, None, None] * rng.uniform(-60, 60, (1, S, S, 3))
    src = np.clip(base + drift, 0, 255).astype(np.uint8)
    inv = np.clip(src + rng.normal(0, 6, src.shape), 0, 255).astype(np.uint8)
    edit = np.clip(src.astype(float) * np.linspace(1.0, 0.6, T)[:, None, None, None] + 20, 0, 255).astype(np.uint8)
    return src, {"inversion": inv, "edit": edit}


def mad(a, b):  # a stand-in LPIPS: mean absolute difference per frame
    return np.abs(a.astype(float) - b.astype(float)).reshape(len(a), -1).mean(1) / 255.0


def test_evaluate_clip_values():
    src, methods = clip()
    be = GridBackend()
    rows, c = evaluate_clip(src, methods, be, lpips=mad)
    assert be.calls == 3  # the source once, each method once
    assert len(rows) == 2 * 5 and {r["method"] for r in rows} == {"inversion", "edit"}
    assert c["n_frames"] == 5 and c["identity_backend"] == "grid" and c["lpips"] is True
    e_src = be.embed(src)
    assert c["methods"]["source"]["ic"] == pytest.approx(identity_consistency(e_src), abs=1e-12)
    for name, x in methods.items():
        e = be.embed(x)
        m = c["methods"][name]
        assert m["ic"] == pytest.approx(identity_consistency(e), abs=1e-12)
        assert m["tl_id"] == pytest.approx(tl_id(e, e_src), abs=1e-12)
        assert m["tg_id"] == pytest.approx(tg_id(e, e_src), abs=1e-12)
        assert m["ssim_mean"] == pytest.approx(ssim(src, x).mean(), abs=1e-9)
        assert m["psnr_mean"] == pytest.approx(psnr(src, x).mean(), abs=1e-9)
        assert m["lpips_mean"] == pytest.approx(mad(src, x).mean(), abs=1e-12)
        r = [q for q in rows if q["method"] == name]
        np.testing.assert_allclose([q["id"] for q in r], pairwise_id(e_src, e), atol=1e-12)
        np.testing.assert_allclose([q["mse"] for q in r], mse(src, x), atol=1e-12)
    # the noisy inversion is closer to the source than the darkening edit
    assert c["methods"]["inversion"]["psnr_mean"] > c["methods"]["edit"]["psnr_mean"]


def test_identical_method_and_single_frame():
    src, _ = clip(T=3)
    rows, c = evaluate_clip(src, {"copy": src.copy()}, GridBackend())
    m = c["methods"]["copy"]
    assert m["tl_id"] == pytest.approx(1.0) and m["tg_id"] == pytest.approx(1.0) and m["id_mean"] == pytest.approx(1.0)
    assert math.isnan(m["psnr_mean"]) and all(math.isinf(r["psnr"]) for r in rows)  # inf per frame, no finite mean
    assert all(math.isnan(r["lpips"]) for r in rows) and c["lpips"] is False
    _, c1 = evaluate_clip(src[:1], {"copy": src[:1]}, GridBackend())
    assert math.isnan(c1["methods"]["copy"]["ic"]) and math.isnan(c1["methods"]["source"]["tl_id"])


def test_exception():
    src, methods = clip()
    with pytest.raises(InputError, match="reserved"):
        evaluate_clip(src, {"source": src}, GridBackend())
    with pytest.raises(InputError, match="shape"):
        evaluate_clip(src, {"x": src[:3]}, GridBackend())
    with pytest.raises(InputError, match="uint8"):
        evaluate_clip(src.astype(np.float32), methods, GridBackend())
    with pytest.raises(InputError, match="at least one method"):
        evaluate_clip(src, {}, GridBackend())
    with pytest.raises(InputError, match="no clip"):
        write_outputs("/nonexistent/never", {}, "grid")


def test_write_outputs(tmp_path):
    be = GridBackend()
    results = {}
    for k, name in enumerate(["Actor_01/01-01-03-01-01-01-01.mp4", "clip b", "third"]):
        src, methods = clip(seed=k)
        results[name] = evaluate_clip(src, methods, be)
    out = write_outputs(tmp_path / "eval", results, be.name, notes=["seed 0", "3 clips"],
                        lpips_reason="LPIPS unavailable: test")
    assert set(out) == {"csv", "summary", "boxplot", "report"}
    assert len(out["csv"]) == 3 and all(p.exists() for p in out["csv"])
    assert out["csv"][0].name == "Actor_01_01-01-03-01-01-01-01.mp4.csv"
    with out["csv"][1].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and rows[0].keys() == {"method", "frame", "ssim", "psnr", "mse", "lpips", "id"}
    assert float(rows[0]["ssim"]) == pytest.approx(results["clip b"][0][0]["ssim"], rel=1e-12)
    assert out["boxplot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads(out["summary"].read_text())  # strict JSON: would fail on NaN/Infinity
    assert doc["identity_backend"] == "grid" and doc["n_clips"] == 3
    assert doc["lpips"] == {"available": False, "reason": "LPIPS unavailable: test"}
    assert doc["methods"] == ["source", "edit", "inversion"] and doc["notes"] == ["seed 0", "3 clips"]
    for method in ("inversion", "edit"):
        ic = [c["methods"][method]["ic"] for _, c in results.values()]
        s = doc["summary"][method]["ic"]
        assert s["mean"] == pytest.approx(np.mean(ic), abs=1e-12)
        assert s["median"] == pytest.approx(np.median(ic), abs=1e-12)
        assert s["std"] == pytest.approx(np.std(ic), abs=1e-12) and s["n"] == 3
        tg = [tg_id(be.embed(clip(seed=k)[1][method]), be.embed(clip(seed=k)[0])) for k in range(3)]
        assert doc["summary"][method]["tg_id"]["mean"] == pytest.approx(np.mean(tg), abs=1e-12)
        assert doc["summary"][method]["lpips_mean"] == {"mean": None, "median": None, "std": None, "n": 0}
    src_ic = [identity_consistency(be.embed(clip(seed=k)[0])) for k in range(3)]
    assert doc["summary"]["source"]["ic"]["mean"] == pytest.approx(np.mean(src_ic), abs=1e-12)
    assert set(doc["summary"]["edit"]) == set(CLIP_METRICS)

    md = out["report"].read_text()
    assert "identity backend: **grid**" in md and "LPIPS unavailable: test" in md
    assert "ic_boxplot.png" in md and "seed 0" in md and "| inversion |" in md


def test_summarize_skips_non_finite():
    src, _ = clip(T=3)
    res = {"a": evaluate_clip(src, {"m": src.copy()}, GridBackend()),
           "b": evaluate_clip(src, {"m": np.clip(src.astype(int) + 9, 0, 255).astype(np.uint8)}, GridBackend())}
    s = summarize(res)
    assert s["m"]["psnr_mean"]["n"] == 1  # clip a is identical: PSNR inf, left out
    assert s["m"]["psnr_mean"]["mean"] == pytest.approx(res["b"][1]["methods"]["m"]["psnr_mean"])
