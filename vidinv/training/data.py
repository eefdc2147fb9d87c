"""Training data: folders of aligned face crops (real) and faces sampled from the generator (synthetic).

Real images are read with PIL, resized to the generator resolution and mapped to [-1, 1]. The
order is a function of the step (a fresh seeded permutation per pass over the folder, sharded by
rank), so resuming at step ``s`` reads exactly the images an uninterrupted run would have read.
Unreadable files are found by a header scan at start-up (``Image.open``, no full decode) (``on_bad='error'`` raises naming the file,
``'skip'`` drops it with a warning); a file that still fails to decode later is replaced by the next
one with a warning, never a crash mid-epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from vidinv.errors import InputError, VidinvError

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTS", "ImageFolder", "StepBatchSampler", "sample_synthetic", "load_image"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_image(path: str | Path, size: int) -> Tensor:
    """One RGB image as ``[3, size, size]`` float in [-1, 1] (PIL, Lanczos resize when needed)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.LANCZOS)
        a = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1) / 127.5 - 1.0


class ImageFolder(torch.utils.data.Dataset):
    """Aligned face crops in a folder (recursively), as ``[3, size, size]`` in [-1, 1].

    Args:
        root: the folder.
        size: output side (the generator resolution).
        on_bad: 'skip' (warn and drop unreadable files) or 'error' (raise :class:`InputError` naming it).
        scan: check every file's header at start-up.

    Shape:
        ``dataset[i] -> [3, size, size]``
    """

    def __init__(self, root: str | Path, size: int, on_bad: str = "skip", scan: bool = True):
        root = Path(root)
        if on_bad not in ("skip", "error"):
            raise VidinvError(f"on_bad must be 'skip' or 'error', got {on_bad!r}")
        if not root.is_dir():
            raise InputError(f"image folder not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        self.root, self.size, self.on_bad = root, int(size), on_bad
        if scan:
            files = [p for p in files if self._readable(p)]
        if not files:
            raise InputError(f"no readable images ({', '.join(IMAGE_EXTS)}) in {root}")
        self.files = files

    def _readable(self, p: Path) -> bool:
        from PIL import Image

        try:  # the header only (a full decode of 70k FFHQ PNGs would take an hour)
            with Image.open(p) as im:
                if min(im.size) < 1:
                    raise ValueError(f"empty image {im.size}")
            return True
        except Exception as e:
            if self.on_bad == "error":
                raise InputError(f"unreadable image {p}: {e} (fix or remove it, or use on_bad: skip)") from None
            log.warning("skipping unreadable image %s: %s", p, e)
            return False

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        n = len(self.files)
        for j in range(n):
            p = self.files[(i + j) % n]
            try:
                return load_image(p, self.size)
            except Exception as e:
                if self.on_bad == "error":
                    raise InputError(f"unreadable image {p}: {e}") from None
                log.warning("skipping unreadable image %s: %s", p, e)
        raise InputError(f"no image in {self.root} can be decoded")


class StepBatchSampler(torch.utils.data.Sampler):
    """Index batches as a pure function of the step: resumable and rank-sharded.

    Pass ``q`` over the data uses ``randperm(n, seed + q)``; global step ``s`` takes positions
    ``[(s * world + rank) * batch, ... + batch)`` of the concatenated passes.

    Shape:
        yields lists of ``batch`` indices, ``steps`` of them from ``start``.
    """

    def __init__(self, n: int, batch: int, seed: int = 0, start: int = 0, steps: int | None = None,
                 rank: int = 0, world: int = 1, shuffle: bool = True):
        if n < 1 or batch < 1:
            raise VidinvError(f"StepBatchSampler needs n >= 1 and batch >= 1, got n={n} batch={batch}")
        self.n, self.batch, self.seed, self.start, self.steps = n, batch, seed, start, steps
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self._perm: tuple[int, Tensor] | None = None

    def _order(self, q: int) -> Tensor:
        if self._perm is None or self._perm[0] != q:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + q)
            self._perm = (q, torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n))
        return self._perm[1]

    def indices(self, step: int) -> list[int]:
        first = (step * self.world + self.rank) * self.batch
        return [int(self._order(pos // self.n)[pos % self.n]) for pos in range(first, first + self.batch)]

    def __iter__(self) -> Iterator[list[int]]:
        s = self.start
        while self.steps is None or s < self.start + self.steps:
            yield self.indices(s)
            s += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless StepBatchSampler has no length")
        return self.steps


@torch.no_grad()
def sample_synthetic(G, n: int, generator: torch.Generator, truncation: float = 1.0,
                     latent_avg: Tensor | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Faces from the generator with their ground truth: ``z ~ N(0, I)``, ``w = mapping(z)``, random noise.

    Returns:
        ``(images [n,3,S,S], w [n,L,sd], noise list of [n,1,r,r])``.
    """
    dev = G.input.input.device
    z = torch.randn(n, G.style_dim, generator=generator).to(dev)
    w = G.mapping(z)
    if truncation < 1:
        if latent_avg is None:
            raise VidinvError("truncation < 1 needs the generator's latent_avg")
        avg = latent_avg.reshape(-1, G.style_dim).mean(0) if latent_avg.ndim > 1 else latent_avg
        w = avg + truncation * (w - avg)
    w = w.unsqueeze(1).expand(-1, G.n_latent, -1).contiguous()
    noise = G.make_noise(n, generator=generator, device=dev)
    return G.synthesis(w, noise), w, noise


def stack_noise(parts: Sequence[list[Tensor]]) -> list[Tensor]:
    """Concatenate per-layer noise lists along the batch."""
    return [torch.cat(layer, 0) for layer in zip(*parts)]
