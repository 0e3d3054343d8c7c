"""Small linear-algebra helpers for symmetric positive definite matrices.

The helpers factor with Cholesky and solve triangular systems; none of them forms
an explicit inverse.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def symmetrize(matrix: torch.Tensor) -> torch.Tensor:
    """Return ``(M + M^T) / 2``, removing the round-off asymmetry of ``M``."""
    return 0.5 * (matrix + matrix.transpose(-1, -2))


def cholesky(matrix: torch.Tensor, name: str = "matrix") -> torch.Tensor:
    """Return the lower Cholesky factor of a batch of SPD matrices.

    Args:
        matrix: symmetric positive definite matrices of shape ``(..., n, n)``.
        name: name of the matrix used in the error message.

    Returns:
        Lower triangular ``C`` with ``C C^T = matrix``.

    Raises:
        ValueError: if a matrix in the batch is not positive definite.
    """
    factor, info = torch.linalg.cholesky_ex(matrix)
    check_cholesky_info(name, info)
    return factor


def check_cholesky_info(name: str, info: torch.Tensor, context: str = "") -> None:
    """Raise ``ValueError`` if a ``cholesky_ex`` status tensor reports a failure.

    Args:
        name: name of the factored matrix used in the message.
        info: the ``info`` output of :func:`torch.linalg.cholesky_ex`; nonzero
            entries mark matrices that are not positive definite.
        context: extra location, for example ``"at step 12"``.
    """
    failed = info != 0
    if bool(failed.any()):
        count = int(failed.sum())
        where = f" {context}" if context else ""
        raise ValueError(
            f"{name} is not positive definite in {count} of {info.numel()} "
            f"matrices{where}; make the noise covariances positive definite "
            "(all variances > 0) and check the inputs for NaN or Inf"
        )


def logdet_from_cholesky(factor: torch.Tensor) -> torch.Tensor:
    """Return ``log |M|`` from the lower Cholesky factor of ``M``."""
    return 2.0 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def mvn_log_prob_cholesky(residual: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    r"""Return the log-density of ``N(0, M)`` at ``residual`` from ``M``'s factor.

    .. math::

        \log N(e; 0, M) = -\tfrac12 e^T M^{-1} e - \tfrac12 \log |M|
            - \tfrac{n}{2} \log 2\pi

    Args:
        residual: points of shape ``(..., n)``.
        factor: lower Cholesky factor of ``M``, shape ``(..., n, n)``, broadcastable
            against ``residual``.

    Returns:
        Log-densities of shape ``(...)``.
    """
    factor = factor.expand(residual.shape[:-1] + factor.shape[-2:])
    whitened = torch.linalg.solve_triangular(
        factor, residual.unsqueeze(-1), upper=False
    ).squeeze(-1)
    size = residual.shape[-1]
    return -0.5 * (
        whitened.square().sum(-1) + logdet_from_cholesky(factor) + size * LOG_2PI
    )
