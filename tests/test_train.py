"""Training the Feature-Style encoder: losses, Ranger, data, trainer state, ablations, the CLI.

CPU only, tiny networks: the 64 px tiny generator, a narrow shallow encoder, a shallow narrow
IResNet, a random (BN-calibrated) BiSeNet at 64 px and LPIPS with a random AlexNet backbone.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import pytest
import torch

from vidinv.errors import InputError, VidinvError
from vidinv.training.data import ImageFolder, StepBatchSampler, load_image
from vidinv.training.losses import LossConfig, build_lpips, multiscale_lpips
from vidinv.training.optim import Ranger
from vidinv.training.trainer import (ABLATIONS, DataConfig, EncoderConfig, TrainConfig, Trainer, TrainModels,
                                     load_train_config, make_encoder)

REPO = Path(__file__).resolve().parents[1]
FACES = ("celebahq_fse_00020.jpg", "celebahq_fse_00109.jpg", "celebahq_fse_00128.jpg", "celebahq_fse_00299.jpg")
ALL_TERMS = {"mse", "lpips_1", "lpips_2", "feature", "id_1", "id_2", "parsing_1", "parsing_2", "total"}


def small_config(**kw) -> TrainConfig:
    base = dict(generator="tiny", arcface="tiny", parser="random", lpips="random", feature_scale_ramp=0, epochs=1,
                iters_per_epoch=4, device="cpu", lr=1e-3, log_every=1, sample_every=0, checkpoint_every=0,
                encoder=EncoderConfig(widths=(8, 12, 16, 24), layers=(1, 1, 2, 1), init_from_arcface=False),
                loss=LossConfig(parsing_size=64), data=DataConfig(batch_real=2, batch_synth=2, workers=0))
    base.update(kw)
    return TrainConfig(**base)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: see conftest.one_thread


@pytest.fixture(scope="module")
def base_models() -> TrainModels:
    from vidinv.models.bisenet import BiSeNet
    from vidinv.models.iresnet import IResNet
    from vidinv.models.tiny import calibrate_batchnorm, tiny_generator

    torch.manual_seed(0)
    G = tiny_generator(0)
    with torch.no_grad():
        avg = G.mean_latent(256)[0]
    arc = IResNet((1, 1, 1, 1), (8, 12, 16, 24), 64)
    calibrate_batchnorm(arc, (3, 112, 112), 0)
    parser = BiSeNet(19)
    calibrate_batchnorm(parser, (3, 64, 64), 0, batch=2)
    enc = make_encoder(G, small_config())
    calibrate_batchnorm(enc, (3, 256, 256), 0)
    return TrainModels(G, avg, enc, arc.eval(), parser.eval(), build_lpips(random_backbone=True))


@pytest.fixture
def models(base_models) -> TrainModels:
    """A fresh copy per test (training mutates the encoder)."""
    return copy.deepcopy(base_models)


@pytest.fixture(scope="module")
def faces(images_dir) -> torch.Tensor:
    return torch.stack([load_image(images_dir / f, 64) for f in FACES])  # [4, 3, 64, 64]


@pytest.fixture
def face_dir(images_dir, tmp_path) -> Path:
    d = tmp_path / "faces"
    d.mkdir()
    for f in FACES:
        (d / f).symlink_to(images_dir / f)
    return d


# ----------------------------------------------------------------------------- losses and gradients


def test_step_all_terms_finite_grads_only_in_encoder(models, faces):
    tr = Trainer(small_config(), models)
    terms = tr.train_step(faces[:2])
    assert set(terms) == ALL_TERMS
    assert all(torch.isfinite(torch.tensor(v)) and v >= 0 for v in terms.values()), terms
    enc_params = list(tr.encoder.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc_params)
    assert sum(float(p.grad.abs().sum()) for p in enc_params) > 0
    for net in (tr.G, tr.loss_fn.arcface, tr.loss_fn.parser, tr.loss_fn.lpips_net):
        assert not net.training
        assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    # the generator really is in the gradient path: the MSE gradient reaches the style heads through G
    assert tr.encoder.styles[0].weight.grad.abs().sum() > 0


def test_batch_layout_synthetic_first(models, faces):
    tr = Trainer(small_config(), models)
    y, noise, synthetic = tr.make_batch(faces[:2])
    assert y.shape == (4, 3, 64, 64) and synthetic.tolist() == [True, True, False, False]
    assert len(noise) == tr.G.num_layers and all(n.shape[0] == 4 for n in noise)
    assert torch.equal(y[2:], faces[:2])
    # synthetic images are G(w, their noise): re-rendering with the ground truth reproduces them
    g = torch.Generator().manual_seed(123)
    from vidinv.training.data import sample_synthetic

    img, w, nz = sample_synthetic(tr.G, 2, g)
    assert torch.allclose(tr.G.synthesis(w, nz), img, atol=1e-6)
    with pytest.raises(VidinvError, match=r"\[B,3,64,64\]"):
        tr.make_batch(torch.zeros(2, 3, 32, 32))


def test_multiscale_lpips_is_sum_of_scales(models, faces):
    net = models.lpips
    x, y = faces[:2], faces[2:4]
    from vidinv.models.fs_encoder import downscale

    one = multiscale_lpips(net, x, y, scales=1)
    assert torch.allclose(one, net(x, y).mean())
    up = torch.nn.functional.interpolate
    x2, y2 = up(x, size=(128, 128), mode="bilinear"), up(y, size=(128, 128), mode="bilinear")
    three = multiscale_lpips(net, x2, y2, scales=3)  # 128, 64, 32: no scale below AlexNet's minimum
    manual = sum(net(downscale(x2, k), downscale(y2, k)).mean() for k in range(3))
    assert torch.allclose(three, manual, rtol=1e-5)
    # at 64 px the 1/4 scale (16 px) is upsampled to the 32 px minimum instead of failing
    small = multiscale_lpips(net, x, y, scales=3, min_size=32)
    q = lambda t: up(downscale(t, 2), size=(32, 32), mode="bilinear")  # noqa: E731
    expect = net(x, y).mean() + net(downscale(x, 1), downscale(y, 1)).mean() + net(q(x), q(y)).mean()
    assert torch.allclose(small, expect, rtol=1e-5)
    assert float(multiscale_lpips(net, x, x, scales=3)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(VidinvError):
        multiscale_lpips(net, x, y[:1])


def test_losses_gradcheck_small():
    """The identity-style cosine loss and the feature loss have correct gradients (double precision)."""
    from vidinv.training.losses import feature_loss

    f = torch.randn(1, 2, 3, 3, dtype=torch.double, requires_grad=True)
    g = torch.randn(1, 2, 3, 3, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda a: feature_loss(a, g), (f,))
    # the target of the feature loss is fixed: no gradient flows into G^K(w)
    g2 = g.clone().requires_grad_(True)
    feature_loss(f, g2).backward()
    assert g2.grad is None and f.grad is not None


def test_feature_scale_ramp(models):
    tr = Trainer(small_config(feature_scale_ramp=100), models)
    assert [tr.feature_scale(s) for s in (0, 50, 100, 1000)] == [0.0, 0.5, 1.0, 1.0]
    assert Trainer(small_config(feature_scale_ramp=0), models).feature_scale(0) == 1.0


# ----------------------------------------------------------------------------- ablations


def _terms(cfg, models, batch):
    tr = Trainer(cfg, models)
    with torch.no_grad():
        terms, _ = tr.forward(*batch)
    return tr, {k: float(v) for k, v in terms.items()}


@pytest.fixture(scope="module")
def full_terms(base_models, faces):
    """One batch and the full config's terms on it (shared by the ablation tests)."""
    tr = Trainer(small_config(), base_models)
    batch = tr.make_batch(faces[:2])
    _, full = _terms(small_config(), base_models, batch)
    return batch, full, {k: tr.loss_fn.weight(k) for k in full if k != "total"}


@pytest.mark.parametrize("flag,removed", [
    ("no_mse", {"mse"}),
    ("no_identity", {"id_1", "id_2"}),
    ("no_parsing", {"parsing_1", "parsing_2"}),
    ("no_feature", {"lpips_2", "id_2", "parsing_2", "feature"}),
])
def test_ablation_removes_exactly_its_terms(base_models, full_terms, flag, removed):
    batch, full, weights = full_terms
    _, abl = _terms(small_config(ablate=(flag,)), base_models, batch)
    assert set(full) - set(abl) == removed
    for k in set(abl) - {"total"}:  # every other term is unchanged
        assert abl[k] == pytest.approx(full[k], rel=1e-6, abs=1e-7), k
    weighted = sum(weights[k] * full[k] for k in removed)
    assert full["total"] - abl["total"] == pytest.approx(weighted, rel=1e-5, abs=1e-6)
    assert weighted > 0


def test_ablation_single_scale_lpips(base_models, full_terms):
    batch, full, _ = full_terms
    tr, abl = _terms(small_config(ablate=("single_scale_lpips",)), base_models, batch)
    assert set(abl) == set(full) and tr.loss_cfg.lpips_scales == 1
    assert abl["lpips_1"] < full["lpips_1"] and abl["lpips_2"] < full["lpips_2"]
    diff = 0.2 * (full["lpips_1"] - abl["lpips_1"] + full["lpips_2"] - abl["lpips_2"])
    assert full["total"] - abl["total"] == pytest.approx(diff, rel=1e-5, abs=1e-6)


def test_ablation_real_only(models, faces):
    cfg = small_config(ablate=("real_only",))
    assert cfg.batch_sizes() == (4, 0)
    tr = Trainer(cfg, models)
    y, _, synthetic = tr.make_batch(faces)
    assert not synthetic.any() and torch.equal(y, faces)
    terms = tr.train_step(faces)
    assert "mse" not in terms and set(terms) == ALL_TERMS - {"mse"}  # MSE needs ground-truth noise


def test_config_errors_and_shipped_configs():
    with pytest.raises(VidinvError, match="unknown ablation"):
        small_config(ablate=("no_lpips",))
    with pytest.raises(VidinvError, match="feature_idx"):
        small_config(feature_idx=9)
    with pytest.raises(VidinvError, match="unknown config key"):
        load_train_config(None, {"loss.lambda": 1})
    faces_cfg = load_train_config(REPO / "configs" / "train_faces.yaml")
    lc = faces_cfg.effective_loss()
    assert (lc.mse, lc.lpips, lc.feature, lc.identity, lc.parsing, lc.lpips_scales) == (1, 0.2, 0.01, 0.1, 0.1, 3)
    assert faces_cfg.batch_sizes() == (2, 2) and faces_cfg.total_steps == 120_000
    generic = load_train_config(REPO / "configs" / "train_generic.yaml", {"ablate": ["no_mse"]})
    assert generic.effective_loss().identity == 0 and generic.effective_loss().mse == 0
    assert set(ABLATIONS) == {"no_mse", "no_identity", "no_parsing", "single_scale_lpips", "no_feature", "real_only"}


# ----------------------------------------------------------------------------- learning


def test_overfit_fixed_batch(models, faces):
    """20 steps on one fixed face (real, fixed noise): MSE falls > 10x, the total > 5x.

    Measured on this CPU: MSE 3.54 -> 0.17 and total 3.70 -> 0.25 after 20 steps (lr 3e-3).
    """
    cfg = small_config(lr=3e-3, loss=LossConfig(identity=0, parsing=0, mse_on="all", parsing_size=64),
                       data=DataConfig(batch_real=1, batch_synth=0, workers=0))
    tr = Trainer(cfg, models)
    batch = tr.make_batch(faces[:1])
    hist = [tr.train_step(batch=batch) for _ in range(20)]
    first, last = hist[0], hist[-1]
    assert set(first) == {"mse", "lpips_1", "lpips_2", "feature", "total"}
    assert last["mse"] < first["mse"] / 10, (first, last)
    assert last["total"] < first["total"] / 5, (first, last)


def test_feature_idx_selectable(models):
    for k in (4, 5, 6, 7):
        enc = make_encoder(models.generator, small_config(feature_idx=k)).eval()
        with torch.no_grad():
            _, feat = enc(torch.zeros(1, 3, 256, 256))
            ref = models.generator.features_at(models.latent_avg[None], k)
        assert feat.shape == ref.shape, k


# ----------------------------------------------------------------------------- checkpoints and resume


def test_checkpoint_roundtrip_into_inverter(models, faces, tmp_path):
    from vidinv.models.fs_encoder import FSInverter, load_fs_encoder, preprocess

    tr = Trainer(small_config(), models)
    tr.train_step(faces[:2])
    path = tr.save_encoder(tmp_path / "enc.pth")
    sd = torch.load(path, weights_only=True)
    assert set(sd) == set(tr.encoder.state_dict())  # a plain state_dict (143_enc.pth layout)
    inv = FSInverter(load_fs_encoder(path), tr.latent_avg).eval()
    tr.encoder.eval()
    with torch.no_grad():
        w, feat = inv(faces)
        w_ref, feat_ref = tr.encoder(preprocess(faces))
    assert torch.equal(w, w_ref + tr.latent_avg) and torch.equal(feat, feat_ref)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_resume_reproduces_next_step_bitwise(base_models, face_dir, tmp_path):
    """fit 2 steps straight == fit 1 step, save, new process state, load, fit 1 (loss and weights bitwise).

    The LR drop falls between the two steps, so the scheduler state is checked too.
    """
    cfg = small_config(epochs=2, iters_per_epoch=1, lr_drop_epochs=(1,), feature_scale_ramp=2,
                       loss=LossConfig(identity=0, parsing=0, parsing_size=64),
                       data=DataConfig(batch_real=1, batch_synth=1, workers=0))
    a = Trainer(cfg, copy.deepcopy(base_models))
    ra = a.fit(tmp_path / "a", data_dir=face_dir, progress=False)
    b = Trainer(cfg, copy.deepcopy(base_models))
    b.fit(tmp_path / "b", data_dir=face_dir, progress=False, stop_at=1)
    torch.manual_seed(999)  # a different process state: the saved RNG states must win
    c = Trainer(cfg, copy.deepcopy(base_models))
    c.load_state(tmp_path / "b" / "state.pt")
    assert c.step == 1 and c.opt.param_groups[0]["lr"] == pytest.approx(1e-4)  # the LR drop was restored
    rc = c.fit(tmp_path / "c", data_dir=face_dir, progress=False)
    assert ra["step"] == rc["step"] == 2
    assert ra["total"] == rc["total"] and ra["mse"] == rc["mse"] and ra["feature_scale"] == rc["feature_scale"] == 0.5
    for (k, va), vc in zip(a.encoder.state_dict().items(), c.encoder.state_dict().values()):
        assert torch.equal(va, vc), k
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert {"encoder", "optimizer", "scheduler", "step", "rng", "config"} <= set(state) and state["step"] == 2


def test_step_batch_sampler_resumable_and_sharded():
    full = list(StepBatchSampler(5, 2, seed=3, start=0, steps=7))
    tail = list(StepBatchSampler(5, 2, seed=3, start=4, steps=3))
    assert tail == full[4:]
    flat = sum(full, [])[:10]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))  # each pass a permutation
    r0 = StepBatchSampler(5, 2, seed=3, rank=0, world=2)
    r1 = StepBatchSampler(5, 2, seed=3, rank=1, world=2)
    assert r0.indices(0) + r1.indices(0) == full[0] + full[1]


# ----------------------------------------------------------------------------- Ranger


def test_ranger_matches_radam_without_lookahead():
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(4, 3))
    p2 = torch.nn.Parameter(p1.detach().clone())
    r = Ranger([p1], lr=1e-2, alpha=1.0, k=1, use_gc=False)
    ref = torch.optim.RAdam([p2], lr=1e-2, betas=(0.95, 0.999), eps=1e-5)
    for t in range(12):  # covers the unrectified (t < 7) and rectified steps
        g = torch.randn(4, 3)
        p1.grad, p2.grad = g.clone(), g.clone()
        r.step()
        ref.step()
        assert torch.allclose(p1, p2, atol=1e-6, rtol=1e-5), t


def test_ranger_lookahead_gc_and_state():
    torch.manual_seed(0)
    p0 = torch.randn(3, 5)
    p = torch.nn.Parameter(p0.clone())
    opt = Ranger([p], lr=1e-2, alpha=0.0, k=3)  # alpha 0: every 3rd step snaps back to the slow weights
    for t in range(1, 4):
        p.grad = torch.randn(3, 5)
        opt.step()
        assert torch.equal(p.detach(), p0) == (t == 3), t
    # gradient centralisation: a gradient constant along dim 1 is removed entirely
    q = torch.nn.Parameter(torch.zeros(2, 4))
    q.grad = torch.ones(2, 4) * torch.tensor([[1.0], [2.0]])
    Ranger([q], lr=1.0).step()
    assert torch.equal(q.detach(), torch.zeros(2, 4))
    # state round trip: two optimizers continue identically
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    oa, ob = Ranger([a], lr=1e-2, k=2), Ranger([b], lr=1e-2, k=2)
    for _ in range(3):
        a.grad = torch.randn(3, 5)
        oa.step()
    b.data.copy_(a.data)
    buf = io.BytesIO()
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    ob.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(3):
        g = torch.randn(3, 5)
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert torch.equal(a, b)
    # it minimises a quadratic
    x = torch.nn.Parameter(torch.zeros(3))
    ox = Ranger([x], lr=0.1)
    for _ in range(300):
        ox.zero_grad()
        ((x - 2.0) ** 2).sum().backward()
        ox.step()
    assert torch.allclose(x, torch.full((3,), 2.0), atol=0.05)
    with pytest.raises(VidinvError):
        Ranger([x], lr=-1)


# ----------------------------------------------------------------------------- data


def test_image_folder_bad_files(face_dir, caplog):
    bad = face_dir / "broken.png"
    bad.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        ds = ImageFolder(face_dir, 64, on_bad="skip")
    assert len(ds) == len(FACES) and "broken.png" in caplog.text
    x = ds[0]
    assert x.shape == (3, 64, 64) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(InputError, match="broken.png"):
        ImageFolder(face_dir, 64, on_bad="error")
    # a file that breaks after the scan is replaced by the next one, with a warning, not a crash
    target = ds.files[1]
    target.unlink()
    target.write_bytes(b"\xff\xd8\xff garbage")
    with caplog.at_level(logging.WARNING):
        y = ds[1]
    assert torch.equal(y, ds[2]) and target.name in caplog.text
    with pytest.raises(InputError, match="not found"):
        ImageFolder(face_dir / "nope", 64)


# ----------------------------------------------------------------------------- CLI


def test_cli_train_tiny_and_resume(face_dir, tmp_path, capsys):
    from vidinv.cli import main
    from vidinv.models.fs_encoder import load_fs_encoder

    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs" / "train_faces.yaml"), "--data", str(face_dir),
            "--val", str(face_dir), "--generator", "tiny", "--out", str(out), "--device", "cpu",
            "--epochs", "1", "--iters-per-epoch", "1", "--set", "arcface=none", "--set", "parser=none",
            "--set", "lpips=random", "--set", "encoder={widths: [8, 12, 16, 24], layers: [1, 1, 1, 1]}",
            "--set", "sample_every=1", "--set", "log_every=1", "--set", "val_max_images=2", "--set", "data.workers=0", "--quiet"]
    assert main(args) == 0
    for f in ("enc.pth", "state.pt", "log.csv", "val.csv", "config.yaml", "samples/step_0000001.png",
              "checkpoints/enc_0000001.pth"):
        assert (out / f).is_file(), f
    enc = load_fs_encoder(out / "enc.pth")
    assert enc.n_styles == 10 and enc.content_channels == 32
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 2
    assert rows[1].startswith("1,0,")
    val = (out / "val.csv").read_text().splitlines()
    assert val[0] == "step,val_lpips,val_mse" and float(val[1].split(",")[2]) > 0
    # resume to a second epoch
    assert main(args[:-1] + ["--epochs", "2", "--resume", "--quiet"]) == 0
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 2
    assert (out / "log.csv").read_text().splitlines()[2].startswith("2,1,")
    # user errors are one line and a non-zero exit
    assert main(["train", "--generator", "tiny", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "no")]) == 2
    assert "not found" in capsys.readouterr().err


def test_encoder_trunk_initialised_from_arcface(base_models):
    from vidinv.training.trainer import init_from_arcface

    arc = base_models.arcface  # layers (1, 1, 1, 1), widths 8/12/16/24
    enc = make_encoder(base_models.generator, small_config(
        encoder=EncoderConfig(widths=(8, 12, 16, 24), layers=(1, 1, 1, 1))))
    assert init_from_arcface(enc, arc)
    assert torch.equal(enc.conv[0].weight, arc.conv1.weight) and torch.equal(enc.conv[2].weight, arc.prelu.weight)
    a, e = arc.layer3.state_dict(), enc.block_3.state_dict()
    assert set(a) == set(e) and all(torch.equal(a[k], e[k]) for k in a)
    deeper = make_encoder(base_models.generator, small_config())  # layers (1, 1, 2, 1): shapes differ
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    assert not init_from_arcface(deeper, arc)
    assert all(torch.equal(before[k], v) for k, v in deeper.state_dict().items())  # untouched


def test_validate_metrics(models, face_dir):
    from vidinv.models.fs_encoder import preprocess

    tr = Trainer(small_config(val_max_images=3), models)
    ds = ImageFolder(face_dir, 64)
    v = tr.validate(ds, batch=2)
    assert set(v) == {"val_mse", "val_lpips", "val_id"} and all(x >= 0 for x in v.values())
    assert tr.encoder.training  # back in training mode
    tr.encoder.eval()
    with torch.no_grad():
        y = torch.stack([ds[i] for i in range(3)])
        w_raw, feat = tr.encoder(preprocess(y))
        x = tr.G.synthesis(w_raw + tr.latent_avg, None, feature_in=feat)
    assert v["val_mse"] == pytest.approx(float(((x - y) ** 2).mean()), rel=1e-5)
