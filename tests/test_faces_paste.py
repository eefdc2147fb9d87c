"""Paste-back on the face's footprint only: the same frames as the whole-frame unalign + mask + blend path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.faces.align import quad_to_matrix, unalign
from vidinv.faces.blend import blend_alpha, blend_laplacian, blend_poisson
from vidinv.faces.paste import blend_margin, footprint_box, paste_faces

H, W, S = 180, 240, 64


def whole_frame(frame, faces, masks, M, method, levels=5):
    """The pipeline's former render loop: unalign face and mask over the whole frame, blend, round."""
    out = frame.copy()
    for i in range(len(faces)):
        Mi = torch.as_tensor(M[i], dtype=torch.float32)[None]
        face, valid = unalign(faces[i : i + 1], Mi, (H, W))
        mask, _ = unalign(masks[i : i + 1], Mi, (H, W))
        mask = mask * valid
        dst = torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255.0
        if method == "poisson":
            res = torch.as_tensor(blend_poisson(face, dst, mask))
        elif method == "laplacian":
            res = blend_laplacian(face, dst, mask, levels=levels)
        else:
            res = blend_alpha(face, dst, mask)
        out = (res[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    return out


def quad(cx, cy, side, angle):
    c, s = math.cos(angle) * side / 2, math.sin(angle) * side / 2
    x, y = np.array([c, s]), np.array([-s, c])
    ctr = np.array([cx, cy])
    return np.stack([ctr - x - y, ctr - x + y, ctr + x + y, ctr + x - y])


def scene(seed, n=3):
    """A textured frame and ``n`` random faces/masks; the last crop hangs over the frame's top-left corner."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    frame = (
        (
            torch.nn.functional.interpolate(
                torch.rand(1, 3, H // 6, W // 6, generator=g), size=(H, W), mode="bilinear"
            )
            * 255
        )
        .to(torch.uint8)[0]
        .permute(1, 2, 0)
        .numpy()
    )
    faces = torch.rand(n, 3, S, S, generator=g)
    masks = torch.nn.functional.interpolate(torch.rand(n, 1, 8, 8, generator=g), size=(S, S), mode="bilinear")
    quads = [
        quad(rng.uniform(60, 180), rng.uniform(50, 130), rng.uniform(50, 90), rng.uniform(-0.5, 0.5))
        for _ in range(n - 1)
    ] + [quad(15, 10, 80, 0.3)]
    M = quad_to_matrix(np.stack(quads), S).astype(np.float32)
    return frame, faces, masks, M


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_matches_whole_frame(seed):
    frame, faces, masks, M = scene(seed)
    ref = whole_frame(frame, faces, masks, M, "alpha")
    out = paste_faces(frame, faces, masks, M, "alpha")
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert (ref != frame).any()  # the faces do change the frame
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert np.mean(out != ref) < 1e-3
    np.testing.assert_array_equal(paste_faces(frame, faces, masks, M, "alpha", region=False), ref)


def test_poisson_matches_whole_frame():
    frame, faces, masks, M = scene(3)
    ref = whole_frame(frame, faces, masks, M, "poisson")
    out = paste_faces(frame, faces, masks, M, "poisson")
    assert (ref != frame).any()
    assert np.abs(out.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("levels", [3, 5])
def test_laplacian_matches_whole_frame(levels):
    frame, faces, masks, M = scene(4, n=2)
    ref = whole_frame(frame, faces, masks, M, "laplacian", levels=levels)
    out = paste_faces(frame, faces, masks, M, "laplacian", levels=levels)
    assert (ref != frame).any()
    diff = np.abs(out.astype(int) - ref)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_footprint_box():
    M = quad_to_matrix(quad(100, 80, 40, 0.0), S)
    # crop coordinates -1..S (the bilinear fringe) land on frame x 79.4..120, y 59.4..100: the pixels around
    assert footprint_box(M, S, (H, W)) == (59, 101, 79, 121)
    y0, y1, x0, x1 = footprint_box(M, S, (H, W), margin=10, align=8)
    assert (y0, x0) == (48, 64) and (y1 - y0) % 8 == 0 and (x1 - x0) % 8 == 0
    assert footprint_box(quad_to_matrix(quad(-200, 80, 40, 0.0), S), S, (H, W)) is None
    assert blend_margin("alpha") < blend_margin("poisson") < blend_margin("laplacian", 5)
    # a face far outside the frame, and a face without valid landmarks, leave it untouched
    frame, faces, masks, _ = scene(0, n=2)
    Ms = np.stack([quad_to_matrix(quad(-200, 80, 40, 0.0), S), np.full((3, 3), np.nan)]).astype(np.float32)
    np.testing.assert_array_equal(paste_faces(frame, faces, masks, Ms), frame)


def test_exception_bad_input():
    frame, faces, masks, M = scene(0, n=1)
    with pytest.raises(VidinvError, match="frame"):
        paste_faces(frame.astype(np.float32), faces, masks, M)
    with pytest.raises(VidinvError, match="masks"):
        paste_faces(frame, faces, masks[:, :, :32, :32], M)
    with pytest.raises(VidinvError, match="M must"):
        paste_faces(frame, faces, masks, M[:, :2])
    with pytest.raises(VidinvError, match="method"):
        paste_faces(frame, faces, masks, M, "feather")
