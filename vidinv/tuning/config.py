"""Settings of the per-clip generator tuning (PTI) and of stitching tuning (STIT), with STIT's defaults.

Every default is the official STIT value (github.com/rotemtzaban/STIT); where STIT overrides the
original PTI repository (github.com/danielroich/PTI) the STIT value is taken and the PTI one noted:

=========================  ==========  ======================================================
field                      default     source
=========================  ==========  ======================================================
TuneConfig.epochs          300         ``train.py --num_pti_steps`` (passes over all frames; README
                                       example uses 80; PTI: 350 steps on one image)
TuneConfig.lr              3e-5        ``hyperparameters.pti_learning_rate`` (PTI: 3e-4)
TuneConfig.betas           0.9, 0.999  ``pti_adam_beta1`` and Adam's default beta2
TuneConfig.batch           1           one frame per optimizer step, every frame once per pass
TuneConfig.l2_lambda       10          ``train.py --l2_lambda`` (PTI: ``pt_l2_lambda`` = 1)
TuneConfig.lpips_lambda    1           ``pt_lpips_lambda``
TuneConfig.lpips_net       'alex'      ``lpips_type``
TuneConfig.locality        False       ``train.py --no_locality_reg`` (PTI: on)
TuneConfig.locality_alpha  30          ``regularizer_alpha`` (distance moved from the pivot)
TuneConfig.locality_l2     0.1         ``regularizer_l2_lambda``
TuneConfig.locality_lpips  0.1         ``regularizer_lpips_lambda``
TuneConfig.locality_samples 1          ``latent_ball_num_of_samples``
TuneConfig.locality_every  1           ``locality_regularization_interval``
TuneConfig.locality_psi    0.5         truncation of the sampled latents (``mapping(z, truncation_psi=0.5)``)
StitchConfig.steps         100         ``edit_video_stitching_tuning.py --num_steps``
StitchConfig.lr            3e-4        ``stitching_tuning_lr``
StitchConfig.content_lambda 0.01       ``--content_loss_lambda``
StitchConfig.l2            True        ``--l2/--l1``
StitchConfig.border_threshold 0.0      ``--border_loss_threshold`` (early stop; README uses 0.002-0.005)
StitchConfig.outer_dilation 50/1024    ``--outer_mask_dilation 50`` px at 1024 (as a fraction of the crop)
StitchConfig.inner_dilation 0          ``--inner_mask_dilation``
StitchConfig.edge_band      50/1024    ``border_pixels = outer_mask_dilation``: mask pixels this close to the
                                       crop's edge belong to the border band too
StitchConfig.chunk         1           STIT tunes a fresh copy of the PTI generator for every frame
=========================  ==========  ======================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vidinv.errors import InputError


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if not (value > 0 or (allow_zero and value == 0)) or not math.isfinite(value):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass
class TuneConfig:
    """Pivotal tuning of the generator on one clip (see the module table for the sources)."""

    epochs: int = 300
    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.999)
    batch: int = 1
    max_frames: int | None = None  # tune on at most this many frames, spread evenly over the clip
    l2_lambda: float = 10.0
    lpips_lambda: float = 1.0
    lpips_net: str = "alex"
    locality: bool = False
    locality_alpha: float = 30.0
    locality_l2: float = 0.1
    locality_lpips: float = 0.1
    locality_samples: int = 1
    locality_every: int = 1
    locality_psi: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch", "locality_samples", "locality_every"):
            _positive(name, getattr(self, name))
        _positive("lr", self.lr)
        for name in ("l2_lambda", "lpips_lambda", "locality_alpha", "locality_l2", "locality_lpips"):
            _positive(name, getattr(self, name), allow_zero=True)
        if self.max_frames is not None:
            _positive("max_frames", self.max_frames)
        if self.lpips_net not in ("alex", "vgg"):
            raise InputError(f"lpips_net must be 'alex' or 'vgg', got {self.lpips_net!r}")

    def train_frames(self, n_frames: int) -> list[int]:
        """The frame indices tuned on: all, or ``max_frames`` spread evenly from the first to the last."""
        if self.max_frames is None or n_frames <= self.max_frames:
            return list(range(n_frames))
        if self.max_frames == 1:
            return [n_frames // 2]
        step = (n_frames - 1) / (self.max_frames - 1)
        return [round(i * step) for i in range(self.max_frames)]

    def num_steps(self, n_frames: int) -> int:
        """Optimizer steps for a clip of ``n_frames`` (a progress bar's total)."""
        n = len(self.train_frames(n_frames))
        return self.epochs * math.ceil(n / self.batch) if n else 0


@dataclass
class StitchConfig:
    """Stitching tuning after the edit (see the module table for the sources)."""

    steps: int = 100
    lr: float = 3e-4
    content_lambda: float = 0.01
    l2: bool = True
    border_threshold: float = 0.0
    outer_dilation: float = 50 / 1024
    inner_dilation: float = 0.0
    edge_band: float = 50 / 1024
    chunk: int = 1

    def __post_init__(self) -> None:
        _positive("steps", self.steps)
        _positive("chunk", self.chunk)
        _positive("lr", self.lr)
        for name in ("content_lambda", "border_threshold", "outer_dilation", "inner_dilation", "edge_band"):
            _positive(name, getattr(self, name), allow_zero=True)

    def pixels(self, fraction: float, size: int) -> int:
        """A band width given as a fraction of the crop, in pixels of a crop of side ``size`` (rounded)."""
        return int(round(fraction * size))
