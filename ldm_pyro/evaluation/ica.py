r"""Identifiability metrics of linear ICA: Amari distance and MCC.

Both metrics are invariant to the scaling and permutation of the recovered
sources, the ambiguities that ICA leaves.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ArrayLike = np.ndarray | torch.Tensor


def amari_distance(unmixing: ArrayLike, mixing: ArrayLike) -> float:
    r"""Return the normalized Amari distance of ``P = W A`` from a scaled permutation.

    .. math::

        d(P) = \frac{1}{2 D (D - 1)} \left[
            \sum_{i=1}^D \left( \frac{\sum_j |p_{ij}|}{\max_k |p_{ik}|} - 1 \right)
            + \sum_{j=1}^D \left( \frac{\sum_i |p_{ij}|}{\max_k |p_{kj}|} - 1 \right)
        \right]

    Each bracketed sum lies in ``[0, D (D - 1)]``, so ``d`` lies in ``[0, 1]``. It
    is 0 exactly when ``P`` has one nonzero entry in every row and column (perfect
    separation up to scale and order) and 1 when all entries of ``P`` have the
    same magnitude. The unnormalized index is from S. Amari, A. Cichocki and
    H. H. Yang, "A new learning algorithm for blind signal separation", NIPS 8,
    1996.

    With whitening, ``W`` must be the full unmixing from the raw mixtures (the
    learned matrix times the whitening matrix), because ``W A`` is the
    composition that should be a scaled permutation.

    Args:
        unmixing: ``(D, n)`` unmixing matrix ``W``.
        mixing: ``(n, D)`` mixing matrix ``A``.

    Raises:
        ValueError: if the shapes do not compose to a square ``(D, D)`` matrix
            with ``D >= 2``, an input contains NaN or Inf, or a row or column of
            ``P`` is all zero.
    """
    w = _as_matrix("unmixing", unmixing)
    a = _as_matrix("mixing", mixing)
    if w.shape[1] != a.shape[0] or w.shape[0] != a.shape[1]:
        raise ValueError(
            f"unmixing (D, n) and mixing (n, D) must compose to a square matrix, got "
            f"shapes {w.shape} and {a.shape}"
        )
    size = w.shape[0]
    if size < 2:
        raise ValueError(
            f"the Amari distance needs D >= 2 sources, got D = {size}; with one "
            "source every unmixing is a scaled permutation"
        )
    product = np.abs(w @ a)
    row_max = product.max(axis=1)
    column_max = product.max(axis=0)
    if np.any(row_max == 0) or np.any(column_max == 0):
        raise ValueError(
            "W A has an all-zero row or column, so W discards a source; check that "
            "the unmixing matrix has full rank"
        )
    rows = (product.sum(axis=1) / row_max - 1.0).sum()
    columns = (product.sum(axis=0) / column_max - 1.0).sum()
    return float((rows + columns) / (2.0 * size * (size - 1)))


def mean_correlation_coefficient(recovered: ArrayLike, true: ArrayLike) -> float:
    """Return the mean absolute correlation of matched recovered and true sources.

    The absolute Pearson correlations between every recovered and every true
    source form a ``(D_rec, D_true)`` matrix. The Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) picks the one-to-one matching with
    the largest total, and the result is the mean over the ``min(D_rec, D_true)``
    matched pairs, in ``[0, 1]``.

    Args:
        recovered: ``(N, D_rec)`` recovered sources.
        true: ``(N, D_true)`` true sources.

    Raises:
        ValueError: if the sample counts differ, there are fewer than 2 samples,
            an input contains NaN or Inf, or a source is constant.
    """
    estimate = _as_matrix("recovered", recovered)
    reference = _as_matrix("true", true)
    if estimate.shape[0] != reference.shape[0]:
        raise ValueError(
            f"recovered and true must have the same number of samples, got "
            f"{estimate.shape[0]} and {reference.shape[0]}"
        )
    if estimate.shape[0] < 2:
        raise ValueError(
            f"correlations need at least 2 samples, got {estimate.shape[0]}"
        )
    estimate = estimate - estimate.mean(axis=0)
    reference = reference - reference.mean(axis=0)
    estimate_norm = np.linalg.norm(estimate, axis=0)
    reference_norm = np.linalg.norm(reference, axis=0)
    for name, norm in (("recovered", estimate_norm), ("true", reference_norm)):
        if np.any(norm == 0):
            raise ValueError(
                f"{name} has a constant column {int(np.argmin(norm))}; its "
                "correlation is undefined, so drop it"
            )
    correlation = np.abs((estimate / estimate_norm).T @ (reference / reference_norm))
    rows, columns = linear_sum_assignment(correlation, maximize=True)
    return float(correlation[rows, columns].mean())


def _as_matrix(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must have 2 dimensions, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf; check the fit that produced it")
    return array
