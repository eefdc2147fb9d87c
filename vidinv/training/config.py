"""Training configuration: the dataclasses behind ``vidinv train`` and ``configs/train_*.yaml``.

Every default lives here (the YAML files set only what differs); :func:`load_train_config` reads a
YAML file through the project's one config loader (:func:`vidinv.config.load_dataclass`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vidinv.errors import VidinvError
from vidinv.training.losses import LossConfig

#: Supplementary Table 1 ablations -> what each removes.
ABLATIONS = {
    "no_mse": "the pixel MSE term",
    "no_identity": "the ArcFace identity terms",
    "no_parsing": "the face-parsing terms",
    "single_scale_lpips": "the 1/2 and 1/4 LPIPS scales",
    "no_feature": "the feature branch (x2 = G(w, F) and the feature loss)",
    "real_only": "synthetic images (the batch is all real)",
}


@dataclass
class DataConfig:
    """Batch composition and loading.

    Attributes:
        batch_real, batch_synth: real and synthetic faces per step (paper: 2 + 2).
        workers: DataLoader worker processes.
        on_bad: 'skip' or 'error' for unreadable image files.
        truncation: psi for the synthetic samples (1 = none, as the official).
    """

    batch_real: int = 2
    batch_synth: int = 2
    workers: int = 2
    on_bad: str = "skip"
    truncation: float = 1.0


@dataclass
class EncoderConfig:
    """The encoder's trunk; n_styles, style_dim and F's channels come from the generator.

    Attributes:
        widths, layers: the IResNet stages (iresnet50: 64/128/256/512, 3/4/14/3).
        init_from_arcface: start the trunk from the ArcFace backbone (official) when shapes match.
    """

    widths: tuple = (64, 128, 256, 512)
    layers: tuple = (3, 4, 14, 3)
    init_from_arcface: bool = True


@dataclass
class TrainConfig:
    """Everything ``vidinv train`` needs (YAML in configs/train_*.yaml; every default lives here).

    Attributes:
        generator: 'zoo' (psp_ffhq_encode), a zoo name, a checkpoint path, or 'tiny'.
        arcface: 'zoo', a path, 'tiny' or 'none' (identity loss off).
        parser: 'zoo', a path, 'random' (tests) or 'none' (parsing loss off).
        lpips: 'pretrained' or 'random' (tests: a random AlexNet backbone).
        feature_idx: K, the generator layer F replaces (4-7; 5 = 16x16).
        feature_scale_ramp: steps over which the feature blend rises from 0 to 1 (official 1e4).
        epochs, iters_per_epoch: 12 x 10k.
        lr, betas, weight_decay, optimizer: Ranger at 1e-4, (0.95, 0.999), 0.
        lr_drop_epochs, lr_gamma: the LR is multiplied by gamma at these epochs (10: the last 2 of 12).
        ablate: names from :data:`ABLATIONS`.
        log_every, sample_every, checkpoint_every, val_every: steps (0 = never; checkpoints also at epoch ends).
        val_max_images: cap on validation images.
        seed: the run's seed (data order, synthetic samples, noise).
        device: 'auto', 'cpu', 'cuda', ...
    """

    generator: str = "zoo"
    arcface: str = "zoo"
    parser: str = "zoo"
    lpips: str = "pretrained"
    feature_idx: int = 5
    feature_scale_ramp: int = 10000
    epochs: int = 12
    iters_per_epoch: int = 10000
    lr: float = 1e-4
    betas: tuple = (0.95, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "ranger"
    lr_drop_epochs: tuple = (10,)
    lr_gamma: float = 0.1
    ablate: tuple = ()
    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 1000
    val_every: int = 0
    val_max_images: int = 64
    seed: int = 0
    device: str = "auto"
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self):
        bad = [a for a in self.ablate if a not in ABLATIONS]
        if bad:
            raise VidinvError(f"unknown ablation {bad[0]!r}: choose from {', '.join(ABLATIONS)}")
        if not 4 <= self.feature_idx <= 7:
            raise VidinvError(f"feature_idx must be in 4..7, got {self.feature_idx}")
        if self.epochs < 1 or self.iters_per_epoch < 1:
            raise VidinvError(f"epochs and iters_per_epoch must be >= 1, got {self.epochs}, {self.iters_per_epoch}")
        if self.data.batch_real < 0 or self.data.batch_synth < 0 or self.data.batch_real + self.data.batch_synth < 1:
            raise VidinvError("the batch needs at least one image (data.batch_real + data.batch_synth >= 1)")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iters_per_epoch

    def effective_loss(self) -> LossConfig:
        """The loss config with the ablations applied."""
        c, a = dataclasses.replace(self.loss), set(self.ablate)
        if "no_mse" in a:
            c.mse = 0.0
        if "no_identity" in a or self.arcface == "none":
            c.identity = 0.0
        if "no_parsing" in a or self.parser == "none":
            c.parsing = 0.0
        if "single_scale_lpips" in a:
            c.lpips_scales = 1
        if "no_feature" in a:
            c.feature = 0.0
        return c

    def batch_sizes(self) -> tuple[int, int]:
        """(real, synthetic) per step after the ablations ('real_only' keeps the batch size)."""
        if "real_only" in self.ablate:
            return self.data.batch_real + self.data.batch_synth, 0
        return self.data.batch_real, self.data.batch_synth

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown keys are errors)."""
        from vidinv.config import apply_overrides

        return apply_overrides(cls(), data)

    def to_dict(self) -> dict:
        def plain(v):
            if dataclasses.is_dataclass(v):
                return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return list(v) if isinstance(v, tuple) else v

        return plain(self)


def load_train_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config (unknown keys are errors) and apply dotted ``overrides``."""
    from vidinv.config import load_dataclass

    return load_dataclass(TrainConfig, path, overrides, "training config")
