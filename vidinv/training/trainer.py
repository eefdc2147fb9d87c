"""Training the Feature-Style encoder against a frozen StyleGAN2 (Yao et al., Sec. 3 and Table 1 of the supp.).

One step: a batch of synthetic faces (rendered from ``w = mapping(z)`` with their ground-truth noise)
and real aligned crops (given random noise) is encoded, ``w = E_w(y) + latent_avg`` and ``F = E_F(y)``;
two inversions are rendered, ``x1 = G(w, n)`` and ``x2 = G(w, n; F at layer K, blended with
feature_scale)``, and :class:`~vidinv.training.losses.FSLoss` scores them. Only the encoder learns
(Ranger, LR divided by 10 for the last epochs); the generator and the loss networks are frozen.

Where the paper and the official ``trainer.py`` differ, the paper wins: the official code renders
its "latent-only" image with the feature code blended in and fresh random noise; here ``x1`` is
G(w) alone, rendered with the sample's noise ``n`` like ``x2``. G^K(w) (the feature-loss target) is
read from the ``x1`` pass, detached, as the official does.

The same :class:`Trainer` runs in one process (``--executor local``, tests) and inside each Ray Train
worker (``pipelines/train_ray.py``), which passes ``rank``/``world`` and a model wrapper (DDP).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from vidinv.errors import InputError, VidinvError
from vidinv.models.fs_encoder import ENCODER_SIZE, FSEncoder, preprocess
from vidinv.training.config import ABLATIONS, DataConfig, EncoderConfig, TrainConfig, load_train_config
from vidinv.training.data import ImageFolder, StepBatchSampler, sample_synthetic, stack_noise
from vidinv.training.losses import FSLoss, build_lpips, freeze
from vidinv.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "DataConfig", "EncoderConfig", "TrainModels", "Trainer", "ABLATIONS", "load_train_config",
           "build_models", "atomic_save"]

LOG_COLUMNS = ("step", "epoch", "lr", "feature_scale", "total", "mse", "lpips_1", "lpips_2", "feature", "id_1",
               "id_2", "parsing_1", "parsing_2", "sec_per_step")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half-written file)."""
    from vidinv.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


# ----------------------------------------------------------------------------- models


@dataclass
class TrainModels:
    """The networks of a run: the trained encoder and the frozen rest (None = that loss is off)."""

    generator: nn.Module
    latent_avg: Tensor
    encoder: FSEncoder
    arcface: Optional[nn.Module] = None
    parser: Optional[nn.Module] = None
    lpips: Optional[nn.Module] = None


def _feature_res(k: int) -> int:
    return 4 if k == 1 else 2 ** (k // 2 + 2)


def make_encoder(G: nn.Module, cfg: TrainConfig) -> FSEncoder:
    """An FSEncoder sized for ``G``: n_styles/style_dim from G, F's channels and stride from layer K."""
    r = _feature_res(cfg.feature_idx)
    stride = (ENCODER_SIZE // 8) // r  # block_3 is at 1/8 of the 256 input
    if stride not in (1, 2) or r not in G.channels:
        raise VidinvError(f"feature_idx {cfg.feature_idx} ({r}x{r}) cannot be produced by the encoder")
    return FSEncoder(G.n_latent, G.style_dim, cfg.encoder.widths, G.channels[r], stride=stride,
                     layers=cfg.encoder.layers)


def init_from_arcface(encoder: FSEncoder, arcface: nn.Module) -> bool:
    """Copy the ArcFace trunk (stem, layer1..4) into the encoder when the shapes match (official init)."""
    src = arcface.state_dict()
    mapping = {"conv.0.": "conv1.", "conv.1.": "bn1.", "conv.2.": "prelu."}
    mapping.update({f"block_{i}.": f"layer{i}." for i in range(1, 5)})
    new, dst = {}, encoder.state_dict()
    for k, v in dst.items():
        for a, b in mapping.items():
            if k.startswith(a):
                s = src.get(b + k[len(a):])
                if s is None or s.shape != v.shape:
                    return False
                new[k] = s
    encoder.load_state_dict(new, strict=False)
    return True


def _resolve(name: str, zoo_name: str) -> Path:
    """'zoo' -> the zoo's ``zoo_name``; an existing file -> itself; another zoo name -> that artifact."""
    p = Path(name)
    if name != "zoo" and p.is_file():
        return p
    from vidinv.zoo import Zoo

    zoo = Zoo()
    key = zoo_name if name == "zoo" else name
    try:
        zoo.get(key)
    except Exception:
        raise InputError(f"checkpoint not found: {name} (give a file path or a zoo name)") from None
    return zoo.require(key)


def build_models(cfg: TrainConfig) -> TrainModels:
    """Build or load every network of the run on the CPU (float32); the caller moves them."""
    from vidinv.models import tiny

    loss = cfg.effective_loss()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.generator == "tiny":
            G, avg = tiny.tiny_generator(0), None
        else:
            from vidinv.models.stylegan2 import load_generator

            G, avg = load_generator(_resolve(cfg.generator, "psp_ffhq_encode"))
        if avg is None:
            with torch.no_grad():
                avg = G.mean_latent(4096)[0]
        arcface = None
        if loss.identity > 0 or cfg.encoder.init_from_arcface:
            if cfg.arcface == "tiny":
                arcface = tiny.tiny_iresnet(0)
            elif cfg.arcface != "none":
                from vidinv.models.iresnet import load_iresnet

                arcface = load_iresnet(_resolve(cfg.arcface, "arcface_r50"))
        parser = None
        if loss.parsing > 0:
            if cfg.parser == "random":
                from vidinv.models.bisenet import BiSeNet

                parser = BiSeNet(19)
                tiny.calibrate_batchnorm(parser, (3, loss.parsing_size, loss.parsing_size), cfg.seed, batch=2)
            else:
                from vidinv.models.bisenet import load_bisenet

                parser = load_bisenet(_resolve(cfg.parser, "bisenet_79999"))
        lp = build_lpips(cfg.lpips == "random") if loss.lpips > 0 else None
        encoder = make_encoder(G, cfg)
        if cfg.generator == "tiny":
            tiny.calibrate_batchnorm(encoder, (3, ENCODER_SIZE, ENCODER_SIZE), cfg.seed)
    if cfg.encoder.init_from_arcface and arcface is not None and not init_from_arcface(encoder, arcface):
        log.info("encoder trunk not initialised from ArcFace (shapes differ)")
    return TrainModels(G, avg.detach().float(), encoder, arcface if loss.identity > 0 else None, parser, lp)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains an :class:`FSEncoder` for a frozen generator.

    Args:
        cfg: the run configuration.
        models: prebuilt networks (default: :func:`build_models`).
        device: where to train (default: ``cfg.device``).
        rank, world: this process's place in data-parallel training (sharding, seeds, who writes).
        wrap: wraps the encoder for the forward pass (``ray.train.torch.prepare_model`` -> DDP).

    Shape:
        ``train_step(real [Br, 3, S, S] or None) -> {term: float}``; S is the generator resolution.
    """

    def __init__(self, cfg: TrainConfig, models: TrainModels | None = None, device: str | torch.device | None = None,
                 rank: int = 0, world: int = 1, wrap: Callable[[nn.Module], nn.Module] | None = None):
        from vidinv.device import pick_device

        self.cfg, self.rank, self.world = cfg, rank, world
        self.device = torch.device(device) if device is not None else pick_device(cfg.device)
        m = models if models is not None else build_models(cfg)
        self.G = freeze(m.generator).to(self.device)
        self.latent_avg = m.latent_avg.to(self.device)
        self.encoder = m.encoder.to(self.device).train()
        self.encoder_fwd = wrap(self.encoder) if wrap is not None else self.encoder
        self.loss_cfg = cfg.effective_loss()
        self.loss_fn = FSLoss(self.loss_cfg, m.lpips, m.arcface, m.parser).to(self.device)
        self.opt = build_optimizer(self.encoder.parameters(), cfg.optimizer, cfg.lr, cfg.betas, cfg.weight_decay)
        self.sched = build_scheduler(self.opt, [e * cfg.iters_per_epoch for e in cfg.lr_drop_epochs
                                                if 0 < e * cfg.iters_per_epoch], cfg.lr_gamma)
        self.sampler_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 17 + rank)
        self.step = 0
        self.feature_branch = "no_feature" not in cfg.ablate

    # ---------------------------------------------------------------- one step
    def feature_scale(self, step: int | None = None) -> float:
        """The feature blend weight: ``min(1, step / feature_scale_ramp)`` (official: 1e-4 * iteration)."""
        s = self.step if step is None else step
        ramp = self.cfg.feature_scale_ramp
        return 1.0 if ramp <= 0 else min(1.0, s / ramp)

    def make_batch(self, real: Tensor | None) -> tuple[Tensor, list[Tensor], Tensor]:
        """Synthetic faces (with their noise) then the real ones (with fresh random noise).

        Returns:
            ``(images [B,3,S,S], noise list [B,1,r,r], synthetic bool [B])``.
        """
        n_real, n_syn = self.cfg.batch_sizes()
        imgs, noises, flags = [], [], []
        if n_syn:
            y, _, nz = sample_synthetic(self.G, n_syn, self.sampler_gen, self.cfg.data.truncation, self.latent_avg)
            imgs.append(y)
            noises.append(nz)
            flags.append(torch.ones(n_syn, dtype=torch.bool))
        if real is not None and real.shape[0]:
            S = self.G.size
            if real.ndim != 4 or tuple(real.shape[1:]) != (3, S, S):
                raise VidinvError(f"real images must be [B,3,{S},{S}] in [-1,1], got {tuple(real.shape)}")
            imgs.append(real.to(self.device, torch.float32))
            noises.append(self.G.make_noise(real.shape[0], generator=self.sampler_gen, device=self.device))
            flags.append(torch.zeros(real.shape[0], dtype=torch.bool))
        if not imgs:
            raise VidinvError("empty batch: no synthetic samples and no real images")
        return torch.cat(imgs), stack_noise(noises), torch.cat(flags).to(self.device)

    def forward(self, y: Tensor, noise: list[Tensor], synthetic: Tensor, step: int | None = None):
        """Encode, render both inversions, score them. Returns ``(terms, (x1, x2))``."""
        k = self.cfg.feature_idx
        w_raw, feat = self.encoder_fwd(preprocess(y, ENCODER_SIZE))
        w = w_raw + self.latent_avg  # [B, L, sd]
        x1, feats = self.G.synthesis(w, noise, return_features=True)
        x2 = feat_gen = None
        if self.feature_branch:
            x2 = self.G.synthesis(w, noise, feature_in=feat, feature_idx=k, feature_scale=self.feature_scale(step))
            feat_gen = feats[k].detach()  # G^K(w): the target of the feature loss
        terms = self.loss_fn(y, x1, x2, feat if self.feature_branch else None, feat_gen, synthetic)
        return terms, (x1, x2)

    def train_step(self, real: Tensor | None = None,
                   batch: tuple[Tensor, list[Tensor], Tensor] | None = None) -> dict[str, float]:
        """One optimisation step on a fresh batch (or on a given ``(images, noise, synthetic)``).

        Returns the loss terms as floats.
        """
        y, noise, synthetic = self.make_batch(real) if batch is None else batch
        self.encoder.train()
        self.opt.zero_grad(set_to_none=True)
        terms, _ = self.forward(y, noise, synthetic)
        if not torch.isfinite(terms["total"]):
            raise VidinvError(f"non-finite loss at step {self.step}: "
                              + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items()))
        terms["total"].backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        self._last = (y, noise, synthetic)
        return {k: float(v.detach()) for k, v in terms.items()}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything needed to resume bit-exactly (tensors and plain containers: weights_only loadable)."""
        rng = {"torch": torch.get_rng_state(), "sampler": self.sampler_gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"encoder": self.encoder.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": self.step, "rng": rng, "config": self.cfg.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.encoder.load_state_dict(state["encoder"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.step = int(state["step"])
            rng = state["rng"]
        except (KeyError, RuntimeError, ValueError) as e:
            raise VidinvError(f"training state does not match this run: {str(e).splitlines()[0]}") from None
        torch.set_rng_state(rng["torch"])
        if self.rank == 0:
            self.sampler_gen.set_state(rng["sampler"])
        else:  # the state holds rank 0's stream: other ranks derive theirs from (seed, rank, step)
            self.sampler_gen.manual_seed((self.cfg.seed * 7919 + 17 + self.rank) * 1_000_003 + self.step)
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save_state(self, path: str | Path) -> Path:
        return atomic_save(self.state_dict(), path)

    def load_state(self, path: str | Path) -> None:
        from vidinv.models.checkpoint import safe_load

        self.load_state_dict(safe_load(path))

    def save_encoder(self, path: str | Path) -> Path:
        """The inference checkpoint: a plain FSEncoder state_dict (the official ``143_enc.pth`` layout)."""
        return atomic_save({k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}, path)

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def save_samples(self, path: str | Path, n: int = 4) -> Path:
        """A PNG grid: one row per face, target | G(w) | G(w, F)."""
        from torchvision.utils import save_image

        y, noise, synthetic = self._last
        y, noise = y[:n], [z[:n] for z in noise]
        self.encoder.eval()
        _, (x1, x2) = self.forward(y, noise, synthetic[:n])
        self.encoder.train()
        cols = [y, x1] + ([x2] if x2 is not None else [])
        grid = torch.stack(cols, 1).flatten(0, 1)  # [n * cols, 3, S, S], row-major
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((grid.clamp(-1, 1) + 1) / 2, str(path), nrow=len(cols))
        return path

    @torch.no_grad()
    def validate(self, dataset: ImageFolder, batch: int = 4) -> dict[str, float]:
        """MSE, LPIPS (full scale) and ID (1 - cos of ArcFace embeddings) of G(w, F) on held-out images.

        The generator's stored noise is used (the inference setting). ID needs an ArcFace net, LPIPS an
        LPIPS net; absent ones are left out.
        """
        import torch.nn.functional as F

        self.encoder.eval()
        sums: dict[str, float] = {}
        n = min(len(dataset), self.cfg.val_max_images)
        for i in range(0, n, batch):
            y = torch.stack([dataset[j] for j in range(i, min(n, i + batch))]).to(self.device)
            w_raw, feat = self.encoder(preprocess(y, ENCODER_SIZE))
            w = w_raw + self.latent_avg
            x = self.G.synthesis(w, None, feature_in=feat if self.feature_branch else None,
                                 feature_idx=self.cfg.feature_idx)
            vals = {"val_mse": ((x - y) ** 2).flatten(1).mean(1)}
            if self.loss_fn.lpips_net is not None:
                vals["val_lpips"] = self.loss_fn.lpips_net(x, y).flatten()
            if self.loss_fn.arcface is not None:
                ea = self.loss_fn.arcface(F.interpolate(x, size=(112, 112)))
                eb = self.loss_fn.arcface(F.interpolate(y, size=(112, 112)))
                vals["val_id"] = 1 - F.cosine_similarity(ea, eb, dim=1)
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + float(v.double().sum())
        self.encoder.train()
        return {k: v / n for k, v in sums.items()}

    # ---------------------------------------------------------------- the loop
    def fit(self, out_dir: str | Path, data_dir: str | Path | None = None, val_dir: str | Path | None = None,
            progress: bool = True, report: Callable[[dict, int], None] | None = None,
            stop_at: int | None = None) -> dict[str, float]:
        """Train until ``cfg.total_steps`` or ``stop_at`` (from ``self.step``: :meth:`load_state` first to resume).

        Rank 0 writes ``out_dir``: ``enc.pth`` (latest, 143_enc.pth layout), ``checkpoints/enc_<step>.pth``
        at epoch ends, ``state.pt`` (resumable), ``log.csv`` (+ TensorBoard when installed),
        ``samples/step_<step>.png`` and ``val.csv``.

        Returns:
            The last logged terms (and validation metrics when run).
        """
        cfg, out = self.cfg, Path(out_dir)
        n_real, _ = cfg.batch_sizes()
        lead = self.rank == 0
        if n_real and data_dir is None:
            raise InputError("this config trains on real images: give --data DIR (a folder of aligned face crops)")
        loader = self._loader(data_dir, n_real) if n_real else None
        val = ImageFolder(val_dir, self.G.size, cfg.data.on_bad) if val_dir is not None else None
        sinks = _Sinks(out, lead, report)
        end = cfg.total_steps if stop_at is None else min(int(stop_at), cfg.total_steps)
        bar = None
        if progress and lead:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        it = iter(loader) if loader is not None else None
        last: dict[str, Any] = {"step": self.step}
        t0 = time.perf_counter()
        try:
            for _ in range(max(0, end - self.step)):
                terms = self.train_step(next(it) if it is not None else None)
                s = self.step
                dt, t0 = time.perf_counter() - t0, time.perf_counter()
                last = dict(terms, step=s, epoch=(s - 1) // cfg.iters_per_epoch, lr=self.opt.param_groups[0]["lr"],
                            feature_scale=self.feature_scale(s - 1), sec_per_step=dt)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{terms['total']:.4f}")
                if cfg.log_every and s % cfg.log_every == 0 or s == cfg.total_steps:
                    sinks.log(last, terms, s)
                if lead:
                    self._after_step(out, s, end, val, sinks, last)
        finally:
            if bar is not None:
                bar.close()
            sinks.close()
        return last

    def _after_step(self, out: Path, s: int, end: int, val: ImageFolder | None, sinks: "_Sinks", last: dict) -> None:
        """Rank 0's housekeeping after step ``s``: samples, checkpoints, validation (updates ``last``)."""
        cfg = self.cfg
        if cfg.sample_every and s % cfg.sample_every == 0:
            self.save_samples(out / "samples" / f"step_{s:07d}.png")
        epoch_end = s % cfg.iters_per_epoch == 0
        if cfg.checkpoint_every and s % cfg.checkpoint_every == 0 or epoch_end or s == end:
            self.save_encoder(out / "enc.pth")
            self.save_state(out / "state.pt")
            if epoch_end:
                self.save_encoder(out / "checkpoints" / f"enc_{s:07d}.pth")
        if val is not None and (cfg.val_every and s % cfg.val_every == 0 or s == cfg.total_steps):
            v = self.validate(val)
            _CsvLogger(out / "val.csv", ("step",) + tuple(sorted(v))).write(dict(v, step=s))
            sinks.scalars("val", v, s)
            last.update(v)
            log.info("step %d: %s", s, ", ".join(f"{k} {x:.4f}" for k, x in v.items()))

    def _loader(self, data_dir: str | Path, n_real: int):
        ds = ImageFolder(data_dir, self.G.size, self.cfg.data.on_bad)
        sampler = StepBatchSampler(len(ds), n_real, self.cfg.seed, start=self.step,
                                   steps=self.cfg.total_steps - self.step, rank=self.rank, world=self.world)
        w = self.cfg.data.workers
        return torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=w, persistent_workers=False,
                                           pin_memory=self.device.type == "cuda")


class _Sinks:
    """Where logged rows go: ``log.csv`` and TensorBoard on rank 0, and the caller's ``report`` callback."""

    def __init__(self, out: Path, lead: bool, report: Callable[[dict, int], None] | None) -> None:
        self.csv = _CsvLogger(out / "log.csv", LOG_COLUMNS) if lead else None
        self.tb = _tensorboard(out / "tb") if lead else None
        self.report = report

    def log(self, row: dict, terms: Mapping[str, float], step: int) -> None:
        if self.csv is not None:
            self.csv.write(row)
        self.scalars("train", terms, step)
        if self.report is not None:
            self.report(row, step)

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{group}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _CsvLogger:
    """Appends rows to a CSV file (header written once); missing terms are empty cells."""

    def __init__(self, path: Path, columns: tuple):
        self.path, self.columns = path, columns

    def write(self, row: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            wr = csv.writer(f)
            if new:
                wr.writerow(self.columns)
            wr.writerow(["" if row.get(c) is None else _fmt(row[c]) for c in self.columns])


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(path))
