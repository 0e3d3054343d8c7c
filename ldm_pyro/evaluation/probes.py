"""Linear and k-nearest-neighbour probes of frozen features.

A probe fits a simple classifier on the features of the training split and reports
its accuracy on the test split. :func:`probe_report` compares a trained encoder with
an untrained copy of the same architecture and with the raw inputs, the two
baselines that show whether training helped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.arrays import ArrayDataset

logger = logging.getLogger(__name__)

#: Iteration cap of the L-BFGS solver of the linear probe. On the standardized
#: digits, raw pixels and untrained-encoder features converge in under 50
#: iterations (scikit-learn 1.9.1), so the cap leaves a wide margin for trained
#: features, which can be less well conditioned.
LINEAR_PROBE_MAX_ITER = 5000

KNN_METRICS = ("cosine", "euclidean")

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


class ProbeRow(NamedTuple):
    """Probe accuracies (fractions in ``[0, 1]``) of one feature set."""

    name: str
    linear_accuracy: float
    knn_accuracy: float


def _as_features(name: str, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim < 2 or array.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, ...) with N >= 1, got shape {array.shape}"
        )
    array = array.reshape(array.shape[0], -1)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(array)).sum())} non-finite values "
            "(NaN or Inf); check the encoder for diverged weights"
        )
    return array


def _as_labels(name: str, value, num_samples: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    labels = np.asarray(value)
    if labels.shape != (num_samples,):
        raise ValueError(
            f"{name} must have shape ({num_samples},) to match the features, got "
            f"shape {labels.shape}"
        )
    return labels


def _check_split(train_features, train_labels, test_features, test_labels):
    x_train = _as_features("train_features", train_features)
    x_test = _as_features("test_features", test_features)
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train_features and test_features must have the same number of "
            f"features, got {x_train.shape[1]} and {x_test.shape[1]}"
        )
    y_train = _as_labels("train_labels", train_labels, x_train.shape[0])
    y_test = _as_labels("test_labels", test_labels, x_test.shape[0])
    if np.unique(y_train).size < 2:
        raise ValueError(
            "train_labels must contain at least 2 classes for a probe, got "
            f"{np.unique(y_train).tolist()}"
        )
    return x_train, y_train, x_test, y_test


def linear_probe_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    seed: int = 0,
) -> float:
    """Fit a standardized logistic-regression probe and return its test accuracy.

    The probe is ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=
    LINEAR_PROBE_MAX_ITER, random_state=seed))``: multinomial L2-regularized
    logistic regression with ``C = 1``, fitted by L-BFGS. Inputs with more than two
    dimensions are flattened per sample.

    Args:
        train_features: features of the training split, tensor or array.
        train_labels: integer class labels of the training split.
        test_features: features of the test split.
        test_labels: class labels of the test split.
        seed: random state passed to ``LogisticRegression``.

    Returns:
        The fraction of test samples classified correctly.

    Shapes:
        ``train_features``: ``(N_train, F)``; ``train_labels``: ``(N_train,)``;
        likewise for the test split.
    """
    x_train, y_train, x_test, y_test = _check_split(
        train_features, train_labels, test_features, test_labels
    )
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=LINEAR_PROBE_MAX_ITER, random_state=seed),
    )
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def knn_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k: int = 5,
    metric: str = "cosine",
) -> float:
    r"""Classify each test sample by a majority vote of its ``k`` nearest neighbours.

    The neighbours come from the training split, by cosine distance
    :math:`1 - u^\top v / (\lVert u \rVert \lVert v \rVert)` (the default,
    usual for latents compared by direction) or Euclidean distance. Votes are
    unweighted, and scikit-learn breaks ties toward the smallest label.

    Args:
        train_features: features of the training split, tensor or array.
        train_labels: integer class labels of the training split.
        test_features: features of the test split.
        test_labels: class labels of the test split.
        k: number of neighbours, at most the number of training samples.
        metric: ``"cosine"`` or ``"euclidean"``.

    Returns:
        The fraction of test samples classified correctly.
    """
    if metric not in KNN_METRICS:
        raise ValueError(f"metric must be one of {KNN_METRICS}, got {metric!r}")
    x_train, y_train, x_test, y_test = _check_split(
        train_features, train_labels, test_features, test_labels
    )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(x_train):
        raise ValueError(
            f"k must be an integer in [1, {len(x_train)}] (the number of training "
            f"samples), got {k!r}"
        )
    classifier = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute")
    classifier.fit(x_train, y_train)
    return float(classifier.score(x_test, y_test))


def _apply(fn: FeatureFn, x: torch.Tensor, batch_size: int) -> np.ndarray:
    parts = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            part = fn(x[start : start + batch_size])
            if isinstance(part, torch.Tensor):
                part = part.detach().cpu().numpy()
            parts.append(np.asarray(part))
    return np.concatenate(parts)


def probe_report(
    encoder_features_fn: FeatureFn,
    dataset: ArrayDataset,
    random_encoder_features_fn: FeatureFn | None = None,
    *,
    knn_k: int = 5,
    knn_metric: str = "cosine",
    seed: int = 0,
    batch_size: int = 1024,
) -> list[ProbeRow]:
    """Probe a trained encoder against an untrained one and the raw inputs.

    Each feature function is called without gradients on batches of at most
    ``batch_size`` samples of ``dataset.x_train`` and ``dataset.x_test``, and may
    return tensors or NumPy arrays of shape ``(batch, F)``.

    Args:
        encoder_features_fn: maps inputs to the trained encoder's features, for
            example ``encoder.features``.
        dataset: a labelled dataset.
        random_encoder_features_fn: the features of the same architecture at its
            initial weights; ``None`` leaves out that row.
        knn_k: neighbours of the kNN probe.
        knn_metric: distance of the kNN probe, ``"cosine"`` or ``"euclidean"``.
        seed: random state of the linear probe.
        batch_size: samples per call of a feature function.

    Returns:
        Rows named ``"encoder"``, ``"random encoder (same architecture)"`` (when
        given) and ``"raw pixels"`` (the flattened inputs, also for feature
        vectors), in that order.
    """
    if dataset.y_train is None or dataset.y_test is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no labels, so probes cannot score it; "
            "load it with labels (y_key in load_npz)"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    sources: list[tuple[str, FeatureFn]] = [("encoder", encoder_features_fn)]
    if random_encoder_features_fn is not None:
        sources.append(
            ("random encoder (same architecture)", random_encoder_features_fn)
        )
    sources.append(("raw pixels", lambda x: x))

    rows = []
    for name, fn in sources:
        train = _apply(fn, dataset.x_train, batch_size)
        test = _apply(fn, dataset.x_test, batch_size)
        args = (train, dataset.y_train, test, dataset.y_test)
        row = ProbeRow(
            name=name,
            linear_accuracy=linear_probe_accuracy(*args, seed=seed),
            knn_accuracy=knn_accuracy(*args, k=knn_k, metric=knn_metric),
        )
        logger.info(
            "probe %s on %s: linear %.4f, kNN %.4f",
            name,
            dataset.name,
            row.linear_accuracy,
            row.knn_accuracy,
        )
        rows.append(row)
    return rows


def format_probe_table(rows: list[ProbeRow]) -> str:
    """Format probe rows as a plain-text table with accuracies in percent."""
    header = ("features", "linear probe (%)", "kNN (%)")
    body = [
        (row.name, f"{100 * row.linear_accuracy:.2f}", f"{100 * row.knn_accuracy:.2f}")
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(3)]

    def render(line):
        name = line[0].ljust(widths[0])
        pairs = zip(line[1:], widths[1:], strict=True)
        numbers = [value.rjust(width) for value, width in pairs]
        return "  ".join([name, *numbers])

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)])
