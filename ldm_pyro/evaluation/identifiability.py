r"""Identifiability metric: R^2 of an affine map from learned to true latents.

.. math::

    R^2 = 1 - \frac{\sum_{i,d} (\tilde z_{id} - (W z_i + c)_d)^2}
        {\sum_{i,d} (\tilde z_{id} - \bar{\tilde z}_d)^2}

``W`` and ``c`` are fitted by least squares on a training split and the score is
computed on held-out latents. Residuals are pooled over the output dimensions
(variance-weighted R^2). Identifiability up to an affine map (Theorem 1 of
Mikulasch and Zenke) means a score near 1; permutation scores such as the mean
correlation coefficient do not apply. The same score for an untrained encoder
gives the floor that training must beat.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class AffineFit(NamedTuple):
    """Held-out R^2 of the affine map and the fitted map ``truth ~ learned @ W + c``."""

    r2: float
    weight: np.ndarray
    bias: np.ndarray


def _as_rows(name: str, value: ArrayLike) -> np.ndarray:
    array = np.asarray(
        value.detach().cpu().numpy() if hasattr(value, "detach") else value,
        dtype=np.float64,
    )
    if array.ndim < 2:
        raise ValueError(
            f"{name} must have shape (M, D) or (B, T, D), got shape {array.shape}"
        )
    array = array.reshape(-1, array.shape[-1])
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return array


def affine_r2(
    learned_train: ArrayLike,
    true_train: ArrayLike,
    learned_test: ArrayLike,
    true_test: ArrayLike,
) -> AffineFit:
    """Fit ``true ~ W learned + c`` on the train split and score R^2 on the test split.

    Args:
        learned_train: learned latents ``(M, D)`` or ``(B, T, D)``.
        true_train: true latents ``(M, n)`` or ``(B, T, n)`` of the same samples.
        learned_test: held-out learned latents.
        true_test: held-out true latents.

    Returns:
        :class:`AffineFit` with the pooled held-out R^2 (1 is perfect, 0 is the
        mean predictor, negative is worse than the mean).

    Raises:
        ValueError: for mismatched sample counts, non-finite values, or fewer
            training samples than ``D + 1``.
    """
    x_train = _as_rows("learned_train", learned_train)
    y_train = _as_rows("true_train", true_train)
    x_test = _as_rows("learned_test", learned_test)
    y_test = _as_rows("true_test", true_test)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"learned_{split} and true_{split} must have the same number of "
                f"samples, got {x.shape[0]} and {y.shape[0]}"
            )
    if x_train.shape[1] != x_test.shape[1] or y_train.shape[1] != y_test.shape[1]:
        raise ValueError("train and test latents must have the same dimensions")
    if x_train.shape[0] <= x_train.shape[1]:
        raise ValueError(
            f"need more training samples than D + 1 = {x_train.shape[1] + 1}, got "
            f"{x_train.shape[0]}"
        )
    design = np.hstack([x_train, np.ones((x_train.shape[0], 1))])
    solution, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    weight, bias = solution[:-1], solution[-1]
    prediction = x_test @ weight + bias
    residual = ((y_test - prediction) ** 2).sum()
    total = ((y_test - y_test.mean(axis=0)) ** 2).sum()
    if total == 0:
        raise ValueError("true_test is constant; R^2 is undefined")
    return AffineFit(float(1.0 - residual / total), weight, bias)


def identifiability_report(
    learned: tuple[ArrayLike, ArrayLike],
    random: tuple[ArrayLike, ArrayLike],
    truth: tuple[ArrayLike, ArrayLike],
) -> dict[str, float]:
    """Return the affine R^2 of a trained encoder and of a random encoder.

    Args:
        learned: (train, test) latents of the trained encoder.
        random: (train, test) latents of an untrained encoder of the same shape.
        truth: (train, test) true latents.

    Returns:
        ``{"r2": ..., "r2_random": ...}``.
    """
    return {
        "r2": affine_r2(learned[0], truth[0], learned[1], truth[1]).r2,
        "r2_random": affine_r2(random[0], truth[0], random[1], truth[1]).r2,
    }


def matched_category_accuracy(categories: ArrayLike, labels: ArrayLike) -> float:
    """Return the accuracy of categorical codes after matching categories to labels.

    Each category is assigned to at most one label by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) on the confusion counts, so
    the score is identification up to a permutation of the categories.
    Categories without a label count as wrong.

    Args:
        categories: predicted category per sample, integers ``>= 0``, ``(M,)``.
        labels: true label per sample, integers ``>= 0``, ``(M,)``.
    """
    from scipy.optimize import linear_sum_assignment

    predicted = np.asarray(categories).astype(np.int64).ravel()
    truth = np.asarray(labels).astype(np.int64).ravel()
    if predicted.shape != truth.shape or predicted.size == 0:
        raise ValueError(
            f"categories and labels must be non-empty with the same length, got "
            f"{predicted.size} and {truth.size}"
        )
    if predicted.min() < 0 or truth.min() < 0:
        raise ValueError("categories and labels must be integers >= 0")
    counts = np.zeros((predicted.max() + 1, truth.max() + 1), dtype=np.int64)
    np.add.at(counts, (predicted, truth), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / predicted.size)
