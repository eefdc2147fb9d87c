"""Ray Train data-parallel wrapper (pipelines/train_ray.py): one CPU worker, a two-step tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidinv.training.losses import LossConfig
from vidinv.training.trainer import DataConfig, EncoderConfig, TrainConfig

FACES = ("celebahq_fse_00020.jpg", "celebahq_fse_00109.jpg")


@pytest.mark.ray
@pytest.mark.slow
def test_ray_train_one_worker_writes_a_loadable_encoder(request, images_dir, tmp_path):
    pytest.importorskip("ray.train", reason="Ray Train needs the ray[train] extras (pandas, pyarrow)",
                        exc_type=ImportError)
    request.getfixturevalue("ray_local")
    from pipelines.train_ray import train_with_ray
    from vidinv.models.fs_encoder import load_fs_encoder

    data = tmp_path / "faces"
    data.mkdir()
    for f in FACES:
        (data / f).symlink_to(images_dir / f)
    cfg = TrainConfig(generator="tiny", arcface="none", parser="none", lpips="random", epochs=1, iters_per_epoch=2,
                      device="cpu", log_every=1, sample_every=0, checkpoint_every=0,
                      encoder=EncoderConfig(widths=(8, 12, 16, 24), layers=(1, 1, 1, 1), init_from_arcface=False),
                      loss=LossConfig(identity=0, parsing=0), data=DataConfig(batch_real=1, batch_synth=1, workers=0))
    out = tmp_path / "run"
    metrics = train_with_ray(cfg, out, data_dir=data, num_workers=1)
    assert metrics["step"] == 2 and torch.isfinite(torch.tensor(metrics["total"]))
    enc = load_fs_encoder(out / "enc.pth")
    assert enc.n_styles == 10
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 2
    assert len(Path(out / "log.csv").read_text().splitlines()) == 3


def test_ray_executor_without_ray_train_is_one_clear_error(tmp_path, capsys, monkeypatch):
    """Without the ray[train] extras (simulated: the import fails), --executor ray is one clear line."""
    import sys

    for name in ("ray.train", "ray.train.torch"):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray.train` now raises ImportError
    from vidinv.cli import main

    rc = main(["train", "--generator", "tiny", "--out", str(tmp_path / "run"), "--executor", "ray",
               "--set", "data.batch_real=0", "--set", "parser=none", "--set", "arcface=none"])
    assert rc == 2
    assert "ray[train]" in capsys.readouterr().err
