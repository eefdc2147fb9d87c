"""FFHQ quads, quad -> matrix, one batched warp and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidinv.errors import VidinvError
from vidinv.faces.align import align_faces, crop_corners, ffhq_quad, quad_to_matrix, transform_points, unalign


def synthetic_landmarks(e=50.0, m=100.0, center=(0.0, 0.0)):
    """68 points whose eye contours average to (-e, 0), (e, 0) and whose mouth corners average to (0, m)."""
    rng = np.random.default_rng(0)
    lm = rng.uniform(-30, 30, (68, 2))
    ring = np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], -1) * 7  # zero mean
    lm[36:42] = ring + [-e, 0]
    lm[42:48] = ring + [e, 0]
    lm[48], lm[54] = [-20, m], [20, m]
    return lm + np.asarray(center)


def smooth_image(h, w):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.sin(3 * xx + 1) * torch.cos(2 * yy), xx * yy, torch.cos(4 * yy)], 0)[None]


def test_ffhq_quad_by_hand():
    # eye_to_eye = (100, 0), eye_to_mouth = (0, 100): x = (100 + 100, 0) -> unit * max(200, 180) = (200, 0)
    # y = rot90(x) = (0, 200), c = eye_avg + 0.1 * eye_to_mouth = (0, 10)
    q = ffhq_quad(synthetic_landmarks(50, 100))
    expect = [[-200, -190], [-200, 210], [200, 210], [200, -190]]
    np.testing.assert_allclose(q, expect, atol=1e-9)
    # mouth far below: the 1.8 * |eye_to_mouth| branch
    q = ffhq_quad(synthetic_landmarks(50, 200))
    np.testing.assert_allclose(q[2] - q[0], [720, 720], atol=1e-9)


def test_ffhq_quad_numpy_torch_batched():
    lm = np.stack([synthetic_landmarks(40 + i, 90 + 3 * i, (100 * i, 50)) for i in range(6)]).reshape(2, 3, 68, 2)
    qn = ffhq_quad(lm.astype(np.float32))
    assert qn.shape == (2, 3, 4, 2) and qn.dtype == np.float32
    qt = ffhq_quad(torch.from_numpy(lm))
    assert isinstance(qt, torch.Tensor) and qt.dtype == torch.float64
    np.testing.assert_allclose(qn, qt.numpy(), rtol=1e-5, atol=1e-3)


def test_ffhq_quad_rotation_equivariant():
    lm = synthetic_landmarks(45, 95)
    a = 0.3
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    np.testing.assert_allclose(ffhq_quad(lm @ R.T), ffhq_quad(lm) @ R.T, atol=1e-9)


def test_exception_shapes():
    with pytest.raises(VidinvError):
        ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(VidinvError):
        quad_to_matrix(np.zeros((2, 3, 2)), 64)
    with pytest.raises(VidinvError):
        align_faces(torch.zeros(2, 3, 8, 8), torch.eye(3)[None], 8)
    with pytest.raises(VidinvError):
        align_faces(torch.zeros(1, 3, 8, 8), torch.eye(3)[None], 8, padding_mode="wrap")


def test_matrix_maps_corners_exactly():
    rng = np.random.default_rng(3)
    quads = ffhq_quad(np.stack([synthetic_landmarks(40 + 10 * rng.random(), 100, rng.uniform(0, 500, 2))
                                for _ in range(4)]))
    quads[1] += rng.normal(0, 3, (4, 2))  # a smoothed quad need not be a square: still exact
    for S in (256, 1024):
        M = quad_to_matrix(quads, S)
        assert M.shape == (4, 3, 3) and M.dtype == np.float64
        np.testing.assert_allclose(transform_points(quads, M), np.broadcast_to(crop_corners(S).numpy(), (4, 4, 2)),
                                   atol=1e-8)
        Mt = quad_to_matrix(torch.from_numpy(quads).float(), S)
        assert Mt.dtype == torch.float32
        np.testing.assert_allclose(Mt.numpy(), M, rtol=1e-5, atol=1e-5)


def test_degenerate_quads_give_nan_not_errors():
    q = ffhq_quad(np.zeros((3, 68, 2)))  # invalid frames carry zero landmarks
    assert np.isnan(q).all()
    M = quad_to_matrix(np.concatenate([q[:1], np.zeros((1, 4, 2)), crop_corners(8)[None].numpy()]), 8)
    assert np.isnan(M[0]).any() and np.isnan(M[1]).all()
    np.testing.assert_allclose(M[2], np.eye(3), atol=1e-12)


def test_identity_quad_is_identity_warp():
    img = torch.rand(2, 3, 32, 32)
    quad = crop_corners(32)[None].repeat(2, 1, 1)
    M = quad_to_matrix(quad, 32)
    np.testing.assert_allclose(M.numpy(), np.eye(3)[None].repeat(2, 0), atol=1e-12)
    torch.testing.assert_close(align_faces(img, M.float(), 32), img, atol=1e-5, rtol=0)


def test_round_trip_align_unalign():
    H, W = 200, 260
    img = smooth_image(H, W).repeat(2, 1, 1, 1)
    quads = torch.tensor([[[60.0, 40], [50, 160], [170, 170], [180, 50]],
                          [[100.0, 20], [90, 120], [190, 130], [200, 30]]], dtype=torch.float64)
    M = quad_to_matrix(quads, 256).float()
    crops = align_faces(img, M, 256)
    assert crops.shape == (2, 3, 256, 256)
    back, valid = unalign(crops, M, (H, W))
    assert back.shape == (2, 3, H, W) and valid.shape == (2, 1, H, W)
    assert valid.min() >= 0 and valid.max() <= 1
    inside = valid[:, 0] > 0.999
    assert inside.sum() > 0.9 * 120 * 120
    err = (back - img).abs().amax(1)[inside].max().item()
    assert err < 1e-3, err  # measured: 6e-5 on this image (two bilinear resamplings of a smooth field)
    # outside the quad the paste-back is empty
    assert valid[0, 0, 190:, :].max() == 0 and back[0, :, 190:, :].abs().max() == 0


def test_unalign_any_channels():
    M = quad_to_matrix(torch.tensor([[[10.0, 10], [10, 50], [50, 50], [50, 10]]]), 16)
    out, valid = unalign(torch.ones(1, 1, 16, 16), M, (64, 64))
    assert out.shape == (1, 1, 64, 64)
    assert out[0, 0, 12:48, 12:48].min() > 0.999 and out[0, 0, :8].max() == 0
    torch.testing.assert_close(out, valid)


def test_antialias_shrinks_before_warping():
    # a one-pixel checkerboard seen 8x smaller aliases under plain bilinear sampling
    idx = torch.arange(256)
    board = ((idx[:, None] + idx[None, :]) % 2).float().expand(1, 3, 256, 256)
    M = quad_to_matrix(crop_corners(256)[None], 32).float()
    plain = align_faces(board, M, 32, antialias=False)
    smooth = align_faces(board, M, 32, antialias=True)
    assert (smooth - 0.5).abs().max() < 0.05
    assert (plain - 0.5).abs().max() > 0.4
    # a smooth image is unchanged by the shrink step (to interpolation accuracy)
    img = smooth_image(256, 256)
    torch.testing.assert_close(align_faces(img, M, 32, antialias=True), align_faces(img, M, 32, antialias=False),
                               atol=0.02, rtol=0)


def test_quad_of_ffhq_aligned_image(images_dir):
    """celebahq_fse_00020 is itself FFHQ-aligned at 1024: its own quad is ~ the image border."""
    import cv2

    from vidinv.faces.detect import DlibDetector, dlib_model_dir

    if dlib_model_dir() is None:
        pytest.skip("face_recognition_models not installed")
    img = cv2.imread(str(images_dir / "celebahq_fse_00020.jpg"))[..., ::-1]
    assert img.shape[:2] == (1024, 1024)
    faces = DlibDetector(max_side=512).detect(np.ascontiguousarray(img))[0]
    assert len(faces) == 1
    quad = ffhq_quad(faces[0].landmarks.astype(np.float64))
    err = np.abs(quad - crop_corners(1024).numpy()).max()
    assert err < 20, quad  # measured: 12 px (1.2%) with dlib at 512, 10 px at full size
    M = quad_to_matrix(quad[None], 1024)
    assert abs(np.linalg.det(M[0, :2, :2]) - 1) < 0.05  # ~ the identity scale
