"""Helpers shared by the golden-parity tests: load a fixture, compare against the official output."""

from __future__ import annotations

import torch


def load_pt(path):
    """A golden ``.pt`` file (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_max_error(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> float:
    """Shapes equal and ``max|a - b| <= atol + rtol * max|b|``; returns the max abs error."""
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item()
    bound = atol + rtol * b.abs().max().item()
    assert err <= bound, f"max abs error {err:.3g} > {bound:.3g}"
    return err


def assert_allclose(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Shapes equal and ``torch.allclose`` elementwise; the message gives the max abs error."""
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"max abs error {err:.3g}"


def latent_edit(w, direction, factor):
    """The official InterFaceGAN edit ``w + factor * direction``, through the library's edit path."""
    from vidinv.editing.directions import Direction, apply_edits

    d = torch.as_tensor(direction, dtype=w.dtype)
    if d.ndim >= 2 and d.shape[-2] > 1:
        return apply_edits(w, [(Direction("golden", "wplus", d.reshape(-1, d.shape[-1])), factor)])
    return apply_edits(w, [(Direction("golden", "w", d.reshape(-1)), factor)])
