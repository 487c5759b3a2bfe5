"""Classification probes on settled latents: a linear probe and k-nearest neighbours (error in %).

* :func:`linear_probe`: multinomial logistic regression (scikit-learn ``LogisticRegression``, lbfgs,
  L2 with ``C = 1``) on latents standardized with the training sample's mean and standard deviation
  (paper Table 2 reports this error);
* :func:`knn_probe`: ``k``-nearest-neighbour vote (``k = 5``, Euclidean) on the raw latents
  (standardizing would blow up near-constant units such as dead ReLUs).

Both fit on ``(train_z, train_y)`` and report the error on ``(test_z, test_y)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

__all__ = ["knn_probe", "linear_probe"]


def _check(train_z, train_y, test_z, test_y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train_z, test_z = np.asarray(train_z, np.float64), np.asarray(test_z, np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
        raise ValueError(
            f"latents: expected (n, d) train and test arrays with the same d, got {train_z.shape} and {test_z.shape}"
        )
    if len(train_y) != len(train_z) or len(test_y) != len(test_z):
        raise ValueError(
            f"labels: expected one per latent, got {len(train_y)} for {len(train_z)} train "
            f"and {len(test_y)} for {len(test_z)} test latents"
        )
    if len(np.unique(train_y)) < 2:
        raise ValueError("train_y: expected at least two classes")
    if not (np.all(np.isfinite(train_z)) and np.all(np.isfinite(test_z))):
        raise ValueError("latents: expected finite values (did the settling diverge?)")
    return train_z, train_y, test_z, test_y


def _error_pct(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(100.0 * np.mean(pred != truth))


def linear_probe(
    train_z, train_y, test_z, test_y, *, C: float = 1.0, max_iter: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Multinomial logistic regression on standardized latents; returns error % and its settings."""
    train_z, train_y, test_z, test_y = _check(train_z, train_y, test_z, test_y)
    scaler = StandardScaler().fit(train_z)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_z), train_y)
    n_iter = int(np.max(clf.n_iter_))
    return {
        "error_pct": _error_pct(clf.predict(scaler.transform(test_z)), test_y),
        "train_error_pct": _error_pct(clf.predict(scaler.transform(train_z)), train_y),
        "method": "multinomial logistic regression (sklearn LogisticRegression, lbfgs, L2) on latents "
        "standardized with the training sample's mean and std",
        "C": C,
        "max_iter": max_iter,
        "n_iter": n_iter,
        "converged": n_iter < max_iter,
        "n_train": len(train_z),
        "n_test": len(test_z),
    }


def knn_probe(train_z, train_y, test_z, test_y, *, k: int = 5) -> dict[str, Any]:
    """``k``-nearest-neighbour classification (Euclidean, raw latents); returns error % and settings."""
    train_z, train_y, test_z, test_y = _check(train_z, train_y, test_z, test_y)
    if not 1 <= k <= len(train_z):
        raise ValueError(f"k: expected 1 to {len(train_z)} (the training latents), got {k}")
    clf = KNeighborsClassifier(n_neighbors=k).fit(train_z, train_y)
    return {
        "error_pct": _error_pct(clf.predict(test_z), test_y),
        "method": f"{k}-nearest neighbours, Euclidean distance on the raw latents, majority vote",
        "k": k,
        "n_train": len(train_z),
        "n_test": len(test_z),
    }
