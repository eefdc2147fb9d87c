"""Fit an InterFaceGAN boundary: a linear SVM separating latent codes by an attribute.

Following InterFaceGAN's ``train_boundary``: with continuous scores, the codes with the top and the
bottom ``fraction`` of scores are the positives and negatives (binary labels are used as they are);
``split`` of them train a linear SVM and the rest measure its accuracy; the boundary is the SVM's
unit normal, pointing towards the positives. W+ codes give a W+ direction stored like the
Feature-Style boundaries (``.npy [1, L*sd]``, strength 1 = a step of 15); W codes give a W
direction (``.pt [1, sd]``).
"""

from __future__ import annotations

import numpy as np
import torch

from vidinv.editing.directions import FS_SCALE, Direction
from vidinv.errors import VidinvError

W_SCALE = 3.0  # strength 1 of a fitted W direction: e4e's example factor


def select_examples(labels: np.ndarray, fraction: float = 0.02,
                    min_per_class: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Indices and binary targets of the examples to train on.

    Binary labels (two distinct values) are used as they are (the larger value is positive); for
    continuous scores the top and bottom ``fraction`` of the examples (at least ``min_per_class``
    each) are taken, as InterFaceGAN does.

    Shape:
        labels ``[N]``; returns ``([M], [M])``.
    """
    y = np.asarray(labels, np.float64).reshape(-1)
    if not np.all(np.isfinite(y)):
        raise VidinvError("labels must be finite numbers")
    values = np.unique(y)
    if len(values) < 2:
        raise VidinvError("labels are all equal: need two classes (or varying scores) to fit a boundary")
    if len(values) == 2:
        idx = np.arange(len(y))
        return idx, (y == values[1]).astype(np.int64)
    if not 0 < fraction <= 0.5:
        raise VidinvError(f"fraction must be in (0, 0.5], got {fraction}")
    n = max(min_per_class, int(round(fraction * len(y))))
    if 2 * n > len(y):
        raise VidinvError(f"not enough codes: {len(y)} for {n} positives and {n} negatives")
    order = np.argsort(y, kind="stable")
    idx = np.concatenate([order[-n:], order[:n]])
    return idx, np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])


def squared_hinge_svm(X: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> tuple[np.ndarray, float]:
    """LinearSVC's primal problem (L2 penalty, squared hinge, regularised intercept as liblinear does)
    solved with L-BFGS: the fallback when scikit-learn is not installed.

    Shape:
        X ``[N, D]``, y ``[N]`` in {0, 1}; returns ``(coef [D], intercept)``.
    """
    from scipy.optimize import minimize

    Xa = np.concatenate([X, np.ones((len(X), 1))], 1)
    t = np.where(y > 0, 1.0, -1.0)

    def f(wb):
        m = np.maximum(0.0, 1.0 - t * (Xa @ wb))
        return 0.5 * wb @ wb + C * m @ m, wb - 2.0 * C * Xa.T @ (t * m)

    res = minimize(f, np.zeros(Xa.shape[1]), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=max_iter, gtol=1e-8))
    return res.x[:-1], float(res.x[-1])


def _fit_svm(X: np.ndarray, y: np.ndarray, C: float, max_iter: int):
    """``(coef [D], predict(X) -> {0,1})`` from scikit-learn's LinearSVC, or the L-BFGS fallback."""
    try:
        from sklearn.svm import LinearSVC
    except ImportError:
        coef, b = squared_hinge_svm(X, y, C, max_iter)
        return coef, lambda Z: (Z @ coef + b > 0).astype(np.int64)
    svm = LinearSVC(C=C, max_iter=max_iter)
    svm.fit(X, y)
    return svm.coef_.reshape(-1), lambda Z: svm.predict(Z).astype(np.int64)


def _flat_codes(codes, labels, n_latent: int | None) -> tuple[np.ndarray, tuple]:
    """Codes as float64 ``[N, D]`` and the shape of one direction (``(L, sd)`` for W+, ``(sd,)`` for W)."""
    X = codes.detach().cpu().double().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes, np.float64)
    if X.ndim not in (2, 3):
        raise VidinvError(f"codes must be [N, L, sd] or [N, D], got shape {X.shape}")
    N = X.shape[0]
    if len(np.asarray(labels).reshape(-1)) != N:
        raise VidinvError(f"{N} codes but {len(np.asarray(labels).reshape(-1))} labels")
    if X.ndim == 3:
        shape = X.shape[1:]
    elif n_latent and n_latent > 1:
        if X.shape[1] % n_latent:
            raise VidinvError(f"codes of {X.shape[1]} values do not split into {n_latent} W+ layers")
        shape = (n_latent, X.shape[1] // n_latent)
    else:
        shape = (X.shape[1],)
    return X.reshape(N, -1), tuple(shape)


def fit_interfacegan(codes, labels, C: float = 1.0, fraction: float = 0.02, split: float = 0.7,
                     name: str = "fitted", n_latent: int | None = None, scale: float | None = None,
                     seed: int = 0, max_iter: int = 10000) -> Direction:
    """Fit a linear SVM on codes and return its unit normal as a :class:`Direction`.

    Args:
        codes: ``[N, L, sd]`` W+ codes, ``[N, sd]`` W codes, or ``[N, L*sd]`` flattened W+ (with ``n_latent``).
        labels: ``[N]`` binary labels or continuous scores (see :func:`select_examples`).
        C: the SVM's regularisation (``sklearn.svm.LinearSVC``; without scikit-learn the same primal
            problem is solved with scipy's L-BFGS).
        fraction: for continuous scores, the top / bottom fraction used as positives / negatives.
        split: share of the selected codes used for training; the rest gives ``meta['val_accuracy']``
            (``split=1`` trains on all of them).
        name: the direction's name.
        n_latent: the number of W+ layers of flattened codes.
        scale: what strength 1 stands for (default 15 for W+, 3 for W).

    Returns:
        a ``'wplus'`` (``[L, sd]``) or ``'w'`` (``[sd]``) direction, unit norm, pointing to the positives;
        ``meta`` holds ``train_accuracy``, ``val_accuracy`` (or None), ``n_pos``, ``n_neg``.

    Shape:
        codes ``[N, L, sd]`` / ``[N, sd]``; labels ``[N]``.
    """
    X, shape = _flat_codes(codes, labels, n_latent)
    N = X.shape[0]
    if not 0 < split <= 1:
        raise VidinvError(f"split must be in (0, 1], got {split}")
    idx, y = select_examples(labels, fraction)
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(idx[y == 1]), rng.permutation(idx[y == 0])
    n_tp, n_tn = max(1, int(round(split * len(pos)))), max(1, int(round(split * len(neg))))
    train = np.concatenate([pos[:n_tp], neg[:n_tn]])
    val = np.concatenate([pos[n_tp:], neg[n_tn:]])
    target = np.zeros(N, np.int64)
    target[pos] = 1
    normal, predict = _fit_svm(X[train], target[train], C, max_iter)
    norm = np.linalg.norm(normal)
    if not np.isfinite(norm) or norm == 0:
        raise VidinvError("the SVM found no separating direction (degenerate codes?)")
    normal = normal / norm
    meta = {"train_accuracy": float(np.mean(predict(X[train]) == target[train])),
            "val_accuracy": float(np.mean(predict(X[val]) == target[val])) if len(val) else None,
            "n_pos": int(len(pos)), "n_neg": int(len(neg)), "C": float(C)}
    vec = torch.from_numpy(normal.reshape(shape)).float()
    kind = "wplus" if len(shape) == 2 else "w"
    if scale is None:
        scale = FS_SCALE if kind == "wplus" else W_SCALE
    return Direction(name, kind, vec, None, scale, meta)
