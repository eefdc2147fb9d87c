"""Editing directions: file formats, apply_edits, conditioning, SeFa, InterFaceGAN fitting, attributes, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from vidinv.editing.attributes import list_attributes, parse_attr_args, resolve_attribute
from vidinv.editing.directions import (
    Direction,
    apply_edits,
    condition,
    load_direction,
    load_ganspace,
    save_direction,
)
from vidinv.editing.fit import squared_hinge_svm, fit_interfacegan, select_examples
from vidinv.editing.sefa import layer_map, sefa_directions, sefa_factorize
from vidinv.errors import InputError, VidinvError

FS = ["Smiling_boundary.npy", "Eyeglasses_boundary.npy", "Heavy_Makeup_boundary.npy"]


def _unit(*shape, seed=0):
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.fixture(scope="module")
def zoo_map(directions_dir):
    """Artifact name -> file in ../shared (a mapping stands in for the zoo)."""
    d = directions_dir
    return {
        "fs_smiling": d / "fs_boundaries/Smiling_boundary.npy",
        "fs_eyeglasses": d / "fs_boundaries/Eyeglasses_boundary.npy",
        "fs_heavy_makeup": d / "fs_boundaries/Heavy_Makeup_boundary.npy",
        "e4e_age": d / "e4e_interfacegan/age.pt",
        "e4e_smile": d / "e4e_interfacegan/smile.pt",
        "e4e_pose": d / "e4e_interfacegan/pose.pt",
        "ganspace_ffhq_pca": d / "e4e_ganspace/ffhq_pca.pt",
    }


# ------------------------------------------------------------------------------------------ shared files


@pytest.mark.parametrize("fname", FS)
def test_fs_boundaries(directions_dir, fname):
    path = directions_dir / "fs_boundaries" / fname
    d = load_direction(path, n_latent=18, style_dim=512)
    assert d.kind == "wplus" and tuple(d.vector.shape) == (18, 512)
    assert abs(float(d.vector.norm()) - 1) < 1e-4
    assert d.scale == 15.0
    raw = np.load(path)
    np.testing.assert_array_equal(d.vector.reshape(1, -1).numpy(), raw)


@pytest.mark.parametrize("fname", ["age.pt", "smile.pt", "pose.pt"])
def test_e4e_directions(directions_dir, fname):
    path = directions_dir / "e4e_interfacegan" / fname
    d = load_direction(path, n_latent=18, style_dim=512)
    assert d.kind == "w" and tuple(d.vector.shape) == (512,) and d.layers is None and d.scale == 1.0
    assert abs(float(d.vector.norm()) - 1) < 1e-4
    raw = torch.load(path, map_location="cpu", weights_only=True)
    # e4e adds factor * raw to the W+ code ([1, 512] broadcast, or pose's [1, 18, 512] per layer)
    w = torch.randn(2, 18, 512)
    np.testing.assert_allclose(apply_edits(w, [(d, 2.5)]).numpy(), (w + 2.5 * raw).numpy(), atol=1e-5)


def test_ganspace_file(directions_dir):
    path = directions_dir / "e4e_ganspace/ffhq_pca.pt"
    pca = torch.load(path, map_location="cpu", weights_only=True)
    d = load_direction(path, component=54, layers=[7])
    assert d.kind == "pca" and d.layers == (7,)
    assert abs(float(d.vector.norm()) - 1) < 1e-4
    assert d.scale == pytest.approx(float(pca["std"][54]))
    g = load_ganspace(pca, 57, start=7, end=10, sigmas=-24)
    assert g.layers == (7, 8, 9) and g.scale == pytest.approx(-24 * float(pca["std"][57]))
    with pytest.raises(VidinvError, match="component"):
        load_direction(path)
    with pytest.raises(VidinvError, match="out of range"):
        load_direction(path, component=80)


def _e4e_ganspace_edit(w: torch.Tensor, d, target: float) -> torch.Tensor:
    """e4e's named GANSpace edit as its notebook describes it (the reference for our additive edit): set
    the coordinate of W+ layer 0 along the component to ``target`` std, add that change to the layers."""
    std, comp, mean = d.meta["std"], d.vector.to(w), d.meta["mean"].to(w)
    coord = ((w[:, 0] - mean) @ comp) / std  # [B]
    out = w.clone()
    out[:, list(d.layers)] += ((target - coord) * std)[:, None, None] * comp
    return out


def test_ganspace_additive_matches_official_at_zero_coordinate(directions_dir):
    d = load_ganspace(directions_dir / "e4e_ganspace/ffhq_pca.pt", 54, start=7, end=8, sigmas=1.0)
    comp, mean = d.vector, d.meta["mean"]
    w = torch.randn(2, 18, 512)
    w0 = w[:, 0] - mean
    w[:, 0] = w0 - (w0 @ comp)[:, None] * comp + mean  # coordinate 0 along the component
    official, ours = _e4e_ganspace_edit(w, d, 20.0), apply_edits(w, [(d, 20.0)])
    np.testing.assert_allclose(official.numpy(), ours.numpy(), atol=1e-4)
    # away from 0 they differ by coord * std * comp on the edited layers (small next to |s| = 20)
    w2 = torch.randn(1, 18, 512) * 3
    coord = float((w2[0, 0] - mean) @ comp) / d.meta["std"]
    diff = _e4e_ganspace_edit(w2, d, 5.0) - apply_edits(w2, [(d, 5.0)])
    torch.testing.assert_close(diff[0, 7], -coord * d.meta["std"] * comp, atol=1e-4, rtol=1e-4)
    assert diff[0, :7].abs().max() == 0 and diff[0, 8:].abs().max() == 0


# ----------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_round_trip_wplus(tmp_path, suffix):
    d = Direction("x", "wplus", _unit(10, 64), None, 15.0)
    p = save_direction(d, tmp_path / f"x{suffix}")
    e = load_direction(p, n_latent=10, style_dim=64)
    assert e.kind == "wplus"
    torch.testing.assert_close(e.vector, d.vector)


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_round_trip_w(tmp_path, suffix):
    d = Direction("x", "w", _unit(64), (1, 2), 3.0)
    p = save_direction(d, tmp_path / f"x{suffix}")
    e = load_direction(p, style_dim=64)
    assert e.kind == "w"
    torch.testing.assert_close(e.vector, d.vector)


def test_round_trip_shared_boundary(tmp_path, directions_dir):
    src = directions_dir / "fs_boundaries/Smiling_boundary.npy"
    d = load_direction(src)
    p = save_direction(d, tmp_path / "copy.npy")
    a, b = np.load(src), np.load(p)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def test_load_exceptions(tmp_path, directions_dir):
    fs = directions_dir / "fs_boundaries/Smiling_boundary.npy"
    with pytest.raises(VidinvError, match="18 x 512.*10 W\\+ layers"):
        load_direction(fs, n_latent=10)
    with pytest.raises(VidinvError, match="10 W\\+ layers"):
        load_direction(fs, n_latent=10, style_dim=64)
    with pytest.raises(VidinvError, match="style dim 512.*64"):
        load_direction(directions_dir / "e4e_interfacegan/age.pt", style_dim=64)
    with pytest.raises(InputError, match="not found"):
        load_direction(tmp_path / "nope.npy")
    bad = tmp_path / "x.txt"
    bad.write_text("1 2 3")
    with pytest.raises(InputError, match="unsupported"):
        load_direction(bad)
    odd = tmp_path / "odd.npy"
    np.save(odd, np.zeros((1, 1000), np.float32))
    with pytest.raises(VidinvError, match="1000 values"):
        load_direction(odd)
    with pytest.raises(VidinvError, match="kind"):
        Direction("x", "style", torch.zeros(3))
    with pytest.raises(VidinvError, match="2 dims"):
        Direction("x", "wplus", torch.zeros(3))


# ---------------------------------------------------------------------------------------- apply_edits


def test_apply_edits_values():
    B, L, sd = 3, 10, 64
    w = torch.randn(B, L, sd)
    w_before = w.clone()
    dp = Direction("plus", "wplus", _unit(L, sd, seed=1), None, 15.0)
    dw = Direction("w", "w", _unit(sd, seed=2), (2, 3, 4), 3.0)
    s = torch.tensor([0.0, 1.0, -2.5])
    out = apply_edits(w, [(dp, 0.5), (dw, s)])
    torch.testing.assert_close(w, w_before)  # input untouched
    expect = 0.5 * 15.0 * dp.vector[None].expand(B, L, sd).clone()
    expect[:, 2:5] += s[:, None, None] * 3.0 * dw.vector
    torch.testing.assert_close(out - w, expect, atol=1e-5, rtol=0)
    # only layers 2..4 move for the W direction
    only_w = apply_edits(w, [(dw, 1.0)]) - w
    assert only_w[:, [0, 1, 5, 6, 7, 8, 9]].abs().max() == 0
    assert only_w[:, 2:5].abs().min() >= 0 and only_w[:, 2:5].abs().max() > 0
    assert torch.equal(apply_edits(w, []), w)


def test_apply_edits_exceptions():
    w = torch.randn(2, 10, 64)
    with pytest.raises(VidinvError, match="\\[B, L, sd\\]"):
        apply_edits(w[0], [])
    d18 = Direction("big", "wplus", torch.zeros(18, 64))
    with pytest.raises(VidinvError, match="18-layer.*10 W\\+ layers"):
        apply_edits(w, [(d18, 1.0)])
    dw = Direction("w", "w", _unit(64), (12,))
    with pytest.raises(VidinvError, match="only 10"):
        apply_edits(w, [(dw, 1.0)])
    with pytest.raises(VidinvError, match="style dim 512"):
        apply_edits(w, [(Direction("w", "w", _unit(512)), 1.0)])
    with pytest.raises(VidinvError, match="strength"):
        apply_edits(w, [(Direction("w", "w", _unit(64)), torch.ones(3))])
    with pytest.raises(VidinvError, match="pair"):
        apply_edits(w, [Direction("w", "w", _unit(64))])


def test_condition_makes_orthogonal():
    a = Direction("a", "w", _unit(64, seed=3), None, 3.0)
    b = Direction("b", "w", _unit(64, seed=4), None, 3.0)
    c = Direction("c", "w", _unit(64, seed=5), None, 3.0)
    assert abs(float(a.vector @ b.vector)) > 1e-3
    ab = condition(a, b)
    assert ab.kind == "w" and abs(float(ab.vector @ b.vector)) < 1e-5
    assert float(ab.vector.norm()) == pytest.approx(1.0, abs=1e-5)
    abc = condition(a, b, c)
    assert max(abs(float(abc.vector @ b.vector)), abs(float(abc.vector @ c.vector))) < 1e-5
    # mixed W+ / layer-restricted W: compared as W+ offsets
    p = Direction("p", "wplus", _unit(10, 64, seed=6), None, 15.0)
    q = Direction("q", "w", _unit(64, seed=7), (0, 1, 2), 3.0)
    pq = condition(p, q)
    assert pq.kind == "wplus"
    assert abs(float((pq.delta(10) * q.delta(10)).sum())) < 1e-4
    assert float(pq.delta(10).norm()) == pytest.approx(float(p.delta(10).norm()), rel=1e-5)
    # apply_edits with conditioning moves orthogonally to the condition
    w = torch.randn(2, 10, 64)
    delta = apply_edits(w, [(p, 1.0)], conditioning=[q]) - w
    assert abs(float((delta[0] * q.delta(10)).sum())) < 1e-3
    with pytest.raises(VidinvError, match="span"):
        condition(a, a)


# ------------------------------------------------------------------------------------------------ SeFa


def _planted_modulations(u: torch.Tensor, seed=0, noise=0.2):
    """A rosinality-layout dict of modulation weights (8 px-ish: 4 convs, 2 to_rgbs) whose rows cluster around +-u."""
    g = torch.Generator().manual_seed(seed)
    sd = u.numel()

    def rows(c):
        sign = torch.where(torch.rand(c, 1, generator=g) > 0.5, 1.0, -1.0)
        scale = torch.rand(c, 1, generator=g) + 0.5
        return scale * (sign * u + noise * torch.randn(c, sd, generator=g))

    sdict = {"conv1.conv.modulation.weight": rows(12), "to_rgb1.conv.modulation.weight": rows(3),
             "conv1.conv.weight": torch.randn(1, 12, 12, 3, 3)}
    for i in range(4):
        sdict[f"convs.{i}.conv.modulation.weight"] = rows(10)
    for j in range(2):
        sdict[f"to_rgbs.{j}.conv.modulation.weight"] = rows(3)
    return sdict


def test_sefa_recovers_planted_direction():
    u = _unit(16, seed=8)
    sdict = _planted_modulations(u)
    vecs, vals, layers = sefa_factorize(sdict)
    assert layers == tuple(range(6)) and vecs.shape == (16, 16)
    assert torch.all(vals[:-1] >= vals[1:] - 1e-5)
    torch.testing.assert_close(vecs @ vecs.T, torch.eye(16), atol=1e-4, rtol=0)
    assert abs(float(vecs[0] @ u)) > 0.95
    # the same as the top right singular vector of the stacked row-normalised weights
    names = ["conv1", "convs.0", "convs.1", "convs.2", "convs.3", "to_rgbs.1"]  # index 5 has only to_rgbs.1
    A = torch.cat([sdict[f"{n}.conv.modulation.weight"] for n in names]).double()
    A = A / A.norm(dim=1, keepdim=True)
    top = torch.linalg.svd(A).Vh[0].float()
    assert abs(float(top @ vecs[0])) > 1 - 1e-5
    dirs = sefa_directions(sdict, k=3)
    assert [d.name for d in dirs] == ["sefa:0", "sefa:1", "sefa:2"]
    assert all(d.kind == "w" and d.layers == tuple(range(6)) for d in dirs)


def test_sefa_layer_selection():
    sdict = _planted_modulations(_unit(16, seed=9))
    vecs, _, layers = sefa_factorize(sdict, layers=[0])
    A = sdict["conv1.conv.modulation.weight"].double()
    A = A / A.norm(dim=1, keepdim=True)
    assert abs(float(torch.linalg.svd(A).Vh[0].float() @ vecs[0])) > 1 - 1e-5
    with pytest.raises(VidinvError, match="0..5"):
        sefa_factorize(sdict, layers=[6])
    with pytest.raises(VidinvError, match="modulation"):
        sefa_factorize({"foo": torch.zeros(3)})
    with pytest.raises(VidinvError, match="k must"):
        sefa_directions(sdict, k=17)


def test_layer_map_matches_generator_forward():
    """W+ index -> modulated layers, checked by hooking the tiny generator's modulations."""
    tiny = pytest.importorskip("vidinv.models.tiny")
    G = tiny.tiny_generator()
    L, sd = G.n_latent, G.style_dim
    w = torch.arange(L, dtype=torch.float32)[None, :, None].expand(1, L, sd).contiguous()
    seen = {}
    hooks = []

    def record(name):
        def hook(mod, inp, out):
            seen.setdefault(name, int(inp[0][0, 0]))  # which W+ index fed this modulation

        return hook

    for name, m in G.named_modules():
        if name.endswith("conv.modulation"):
            hooks.append(m.register_forward_hook(record(name[: -len(".conv.modulation")])))
    with torch.no_grad():
        G.synthesis(w)
    for h in hooks:
        h.remove()
    n_convs = sum(n.startswith("convs.") for n in seen)
    n_rgbs = sum(n.startswith("to_rgbs.") for n in seen)
    lmap = layer_map(n_convs, n_rgbs)
    assert max(lmap) + 1 == L
    expected = {n: i for i, names in lmap.items() for n in names}
    assert seen == expected
    # and SeFa reads a real generator
    dirs = sefa_directions(G, layers=[0, 1, 2], k=2)
    assert dirs[0].vector.shape == (sd,) and abs(float(dirs[0].vector.norm()) - 1) < 1e-5


# ----------------------------------------------------------------------------------------- InterFaceGAN


def _planted(n=300, shape=(4, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(*shape, generator=g)
    normal = normal / normal.norm()
    X = torch.randn(n, *shape, generator=g) + 0.3
    score = ((X - 0.3) * normal).flatten(1).sum(1)
    return X, score, normal


def test_fit_recovers_planted_normal():
    X, score, normal = _planted()
    d = fit_interfacegan(X, (score > 0).long(), C=1.0, name="planted")
    assert d.kind == "wplus" and d.vector.shape == (4, 8) and d.scale == 15.0
    assert float((d.vector * normal).sum()) > 0.95
    assert d.meta["train_accuracy"] > 0.95 and d.meta["val_accuracy"] > 0.85
    # continuous scores: top/bottom fraction
    d2 = fit_interfacegan(X.flatten(1), score.numpy(), fraction=0.3, n_latent=4)
    assert d2.kind == "wplus" and float((d2.vector * normal).sum()) > 0.9
    assert d2.meta["n_pos"] == d2.meta["n_neg"] == 90
    # W codes
    Xw, sw, nw = _planted(shape=(8,), seed=1)
    dw = fit_interfacegan(Xw, (sw > 0).numpy(), split=1.0)
    assert dw.kind == "w" and dw.scale == 3.0 and float(dw.vector @ nw) > 0.95 and dw.meta["val_accuracy"] is None


def test_svm_fallback_recovers_normal():
    X, score, normal = _planted(shape=(12,), seed=2)
    coef, b = squared_hinge_svm(X.double().numpy(), (score > 0).numpy().astype(np.int64), 1.0, 2000)
    coef = coef / np.linalg.norm(coef)
    assert float(coef @ normal.double().numpy()) > 0.95


def test_fit_exceptions():
    X, score, _ = _planted(n=20)
    with pytest.raises(VidinvError, match="labels"):
        fit_interfacegan(X, torch.ones(20))
    with pytest.raises(VidinvError, match="20 codes but 19"):
        fit_interfacegan(X, score[:19])
    with pytest.raises(VidinvError, match="not enough"):
        select_examples(np.arange(3.0), 0.5, min_per_class=2)
    idx, y = select_examples(np.array([0.1, 5.0, -3.0, 2.0, 0.0, 1.0]), 0.34)
    assert set(idx[y == 1]) == {1, 3} and set(idx[y == 0]) == {2, 4}


# ----------------------------------------------------------------------------------------- attributes


def test_resolve_attribute_names(zoo_map):
    smile = resolve_attribute("smile", zoo=zoo_map, n_latent=18, style_dim=512)
    assert smile.kind == "wplus" and smile.scale == 15.0 and smile.meta["artifact"] == "fs_smiling"
    assert resolve_attribute("Smiling", zoo=zoo_map).name == "smile"  # alias, case-insensitive
    age = resolve_attribute("age", zoo=zoo_map, style_dim=512)
    assert age.kind == "w" and age.scale == 3.0 and age.layers is None
    pose = resolve_attribute("pose", zoo=zoo_map)
    assert pose.kind == "w" and pose.vector.shape == (512,)
    eye = resolve_attribute("eye_openness", zoo=zoo_map)
    pca = torch.load(zoo_map["ganspace_ffhq_pca"], map_location="cpu", weights_only=True)
    assert eye.kind == "pca" and eye.layers == (7,)
    assert eye.scale == pytest.approx(20 * float(pca["std"][54]))
    torch.testing.assert_close(eye.vector, pca["comp"][54, 0])
    hair = resolve_attribute("white_hair", zoo=zoo_map)
    assert hair.layers == (7, 8, 9) and hair.scale < 0
    # a path, and a GANSpace component by '#'
    p = resolve_attribute(str(zoo_map["e4e_age"]), style_dim=512)
    assert p.kind == "w" and p.scale == 1.0
    assert resolve_attribute(f"{zoo_map['ganspace_ffhq_pca']}#54").meta["component"] == 54


def test_resolve_attribute_errors(zoo_map):
    with pytest.raises(VidinvError) as exc:
        resolve_attribute("frown", zoo=zoo_map)
    msg = str(exc.value)
    for name in ("smile", "age", "eyeglasses", "makeup", "pose", "eye_openness", "sefa:N"):
        assert name in msg
    with pytest.raises(VidinvError, match="18-layer.*10 W\\+ layers"):
        resolve_attribute("smile", zoo=zoo_map, n_latent=10)
    with pytest.raises(VidinvError, match="only 10"):
        resolve_attribute("lipstick", zoo=zoo_map, n_latent=10)
    with pytest.raises(VidinvError, match="not available"):
        resolve_attribute("makeup", zoo={})
    with pytest.raises(VidinvError, match="generator"):
        resolve_attribute("sefa:0")
    with pytest.raises(VidinvError, match="bad SeFa"):
        resolve_attribute("sefa:x", generator={})


def test_resolve_attribute_through_zoo(tmp_path, directions_dir):
    from vidinv.zoo import Zoo

    zoo = Zoo(home=tmp_path)
    with pytest.raises(VidinvError, match="Smiling_boundary.npy"):
        resolve_attribute("smile", zoo=zoo, offline=True)
    zoo.import_dir(directions_dir, link=True)
    d = resolve_attribute("smile", zoo=zoo, offline=True)
    assert d.kind == "wplus" and d.vector.shape == (18, 512)
    rows = {r["name"]: r for r in list_attributes(zoo=zoo)}
    assert rows["smile"]["status"] in ("present", "verified") and rows["age"]["kind"] == "w"


def test_resolve_sefa_tiny():
    tiny = pytest.importorskip("vidinv.models.tiny")
    G = tiny.tiny_generator()
    d = resolve_attribute("sefa:3", generator=G, n_latent=G.n_latent, style_dim=G.style_dim)
    assert d.kind == "w" and d.layers == tuple(range(G.n_latent)) and d.name == "sefa:3"
    e = resolve_attribute("sefa:1:0-3", generator_spec={"generator": "tiny"}, n_latent=G.n_latent)
    assert e.layers == (0, 1, 2, 3)
    w = torch.randn(2, G.n_latent, G.style_dim)
    delta = apply_edits(w, [(e, 1.0)]) - w
    assert delta[:, 4:].abs().max() == 0
    torch.testing.assert_close(delta[0, 0], e.scale * e.vector)


def test_parse_attr_args():
    assert parse_attr_args(["smile", "age=-1.5", "sefa:3=2", "x.npy"], 2.0) == [
        ("smile", 2.0), ("age", -1.5), ("sefa:3", 2.0), ("x.npy", 2.0)]
    with pytest.raises(VidinvError, match="number"):
        parse_attr_args(["age=old"])
    with pytest.raises(VidinvError, match="name"):
        parse_attr_args(["=1"])


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_fit_from_codes(tmp_path):
    from vidinv.cli import main

    X, score, normal = _planted(n=200, shape=(4, 8), seed=3)
    torch.save(X, tmp_path / "codes.pt")
    with open(tmp_path / "labels.csv", "w") as fh:
        fh.write("index,Smiling,Male\n")
        for i, s in enumerate(score.tolist()):
            fh.write(f"{i},{int(s > 0)},{i % 2}\n")
    out = tmp_path / "smiling_boundary.npy"
    rc = main(["directions", "fit", "--codes", str(tmp_path / "codes.pt"), "--labels", str(tmp_path / "labels.csv"),
               "--attr", "smiling", "--out", str(out)])
    assert rc == 0
    d = load_direction(out, n_latent=4, style_dim=8)
    assert d.kind == "wplus" and float((d.vector * normal).sum()) > 0.95
    assert np.load(out).shape == (1, 32)
    rc = main(["directions", "fit", "--codes", str(tmp_path / "codes.pt"), "--labels", str(tmp_path / "labels.csv"),
               "--attr", "smiling", "--out", str(tmp_path / "bad.txt")])
    assert rc == 2


def test_cli_fit_from_images(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from vidinv.commands.directions import fit_command

    rng = np.random.default_rng(0)
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    lines = ["file,Red"]
    for i in range(40):
        color = rng.integers(0, 256, 3)
        img = np.full((32, 32, 3), color, np.uint8)
        cv2.imwrite(str(img_dir / f"{i:03d}.png"), img[..., ::-1])  # RGB -> BGR on disk
        lines.append(f"{i:03d}.png,{int(color[0] > color[2])}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    proj = torch.randn(3, 2 * 8, generator=torch.Generator().manual_seed(0))
    calls = []

    def inverter(x):  # [B, 3, S, S] in [-1, 1] -> W+ [B, 2, 8] linear in the mean colour
        calls.append(tuple(x.shape))
        return (x.mean((2, 3)) @ proj).reshape(-1, 2, 8), None

    args = argparse.Namespace(out=str(tmp_path / "red.pt"), labels=str(tmp_path / "labels.csv"), attr="red",
                              codes=None, images=str(img_dir), space="wplus", C=1.0, fraction=0.02, split=0.7,
                              save_codes=str(tmp_path / "codes.pt"), encoder=None, generator=None, batch_size=16,
                              size=64, offline=True)
    d = fit_command(args, inverter=inverter)
    assert calls[0] == (16, 3, 64, 64) and sum(c[0] for c in calls) == 40
    assert d.meta["train_accuracy"] > 0.9
    # red minus blue through the projection is the planted normal
    normal = (proj[0] - proj[2]).reshape(2, 8)
    assert float((d.vector * normal).sum() / normal.norm()) > 0.95
    saved = torch.load(tmp_path / "codes.pt", weights_only=True)
    assert saved["codes"].shape == (40, 2, 8) and saved["names"][0] == "000.png"
    assert load_direction(tmp_path / "red.pt").kind == "wplus"


def test_cli_list_and_show(capsys, directions_dir):
    from vidinv.cli import main

    assert main(["directions", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("smile", "age", "pose", "eyeglasses", "makeup", "eye_openness", "white_hair"):
        assert name in out
    assert main(["directions", "show", str(directions_dir / "fs_boundaries/Smiling_boundary.npy")]) == 0
    out = capsys.readouterr().out
    assert "wplus" in out and "(18, 512)" in out and "x15" in out
    assert main(["directions", "sefa", "--generator", "tiny", "-k", "2", "--layers", "0-3"]) == 0
    assert "sefa:1:0-3" in capsys.readouterr().out


def test_sefa_from_checkpoint_paths(tmp_path):
    """SeFa reads a pSp-layout checkpoint (decoder.* keys) and a rosinality one (g_ema) alike."""
    tiny = pytest.importorskip("vidinv.models.tiny")
    G = tiny.tiny_generator()
    sd = G.state_dict()
    torch.save({"state_dict": {f"decoder.{k}": v for k, v in sd.items()}, "latent_avg": torch.zeros(10, 64)},
               tmp_path / "psp.pt")
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(64)}, tmp_path / "rosinality.pt")
    ref = resolve_attribute("sefa:2", generator=G)
    for name in ("psp.pt", "rosinality.pt"):
        d = resolve_attribute("sefa:2", generator=str(tmp_path / name), n_latent=10, style_dim=64)
        torch.testing.assert_close(d.vector, ref.vector)
    with pytest.raises(InputError, match="not found"):
        resolve_attribute("sefa:0", generator=str(tmp_path / "nope.pt"))


def test_read_labels_and_matching(tmp_path):
    from vidinv.commands.directions import match_labels, read_labels

    p = tmp_path / "l.csv"
    p.write_text("file,Male,Smiling\na.png,1,0\nb.png,0,1\nc.png,1,1\n")
    names, lab = read_labels(p, "smiling")
    assert names == ["a.png", "b.png", "c.png"] and lab.tolist() == [0, 1, 1]
    assert read_labels(p, "unknown")[1].tolist() == [1, 0, 1]  # falls back to the second column
    p.write_text("0,0.5\n1,2.5\n")  # no header
    names, lab = read_labels(p, "x")
    assert names == ["0", "1"] and lab.tolist() == [0.5, 2.5]
    idx, lab = match_labels(["b", "zz.png", "a.png"], 3, ["a.png", "b.png"], np.array([1.0, 0.0]))
    assert idx.tolist() == [0, 2] and lab.tolist() == [0.0, 1.0]
    with pytest.raises(InputError, match="only 2 codes"):
        match_labels(None, 2, ["0", "5"], np.array([1.0, 0.0]))
    p.write_text("file,Smiling\na.png,yes\n")
    with pytest.raises(InputError, match="not a number"):
        read_labels(p, "smiling")


def test_cli_fit_images_offline_names_missing_weights(tmp_path, monkeypatch, capsys):
    cv2 = pytest.importorskip("cv2")
    from vidinv.cli import main

    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "l.csv").write_text("file,x\na.png,1\n")
    rc = main(["directions", "fit", "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / "l.csv"),
               "--attr", "x", "--out", str(tmp_path / "x.npy"), "--offline"])
    assert rc == 3  # MissingWeightsError
    assert "143_enc.pth" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_parse_attr_args_refuses_non_finite_strengths(bad):
    from vidinv.errors import InputError

    with pytest.raises(InputError, match="finite") as ei:
        parse_attr_args([f"smile={bad}"])
    assert "\n" not in str(ei.value) and f"smile={bad}" in str(ei.value)
    with pytest.raises(InputError, match=r"--strength.*finite"):
        parse_attr_args(["smile"], float(bad))


def test_parse_attr_args_warns_on_absurd_strengths(caplog, tmp_path):
    import logging

    from vidinv.editing.attributes import strength_limit

    caplog.set_level(logging.WARNING, logger="vidinv.editing.attributes")
    parsed = parse_attr_args(["smile=-10", "age=3", "x.npy=9.5"])
    assert parsed == [("smile", -10.0), ("age", 3.0), ("x.npy", 9.5)]
    assert not caplog.records  # up to the limit: silent
    assert parse_attr_args(["smiling=1e9", "sefa:2=-11"]) == [("smiling", 1e9), ("sefa:2", -11.0)]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and "smiling" in msgs[0] and "1e+09" in msgs[0] and "useful range" in msgs[0]
    assert "sefa:2" in msgs[1]
    # the limit comes from the table: top level, per attribute, aliases resolved
    t = tmp_path / "attrs.yaml"
    t.write_text("max_strength: 4\nattributes:\n  smile: {artifact: a, kind: w, max_strength: 30}\n"
                 "aliases:\n  grin: smile\n")
    assert strength_limit("grin", t) == 30 and strength_limit("other.npy", t) == 4
    assert strength_limit("smile") == 10  # the shipped table
    caplog.clear()
    parse_attr_args(["grin=20", "other.npy=5"], table=t)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["--attr other.npy"]


def test_directions_list_does_not_import_torch(tmp_path):
    """`vidinv directions list` (the table + the zoo status) stays light: no torch, no ray."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = ("import sys; from vidinv.cli import main; rc = main(['directions', 'list']); "
            "print(rc, sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "VIDINV_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
