r"""Gaussian (log-determinant) entropy estimates and their second-order expansion.

A Gaussian with covariance :math:`\Sigma` in :math:`R^d` has entropy

.. math::

    H = \frac{d}{2} (1 + \log 2 \pi) + \frac{1}{2} \log |\Sigma| .

Plugging in the batch covariance gives an estimate that is consistent for Gaussian
latents and biased otherwise. It is not a valid density estimate on the sphere.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_bool, check_choice, check_nonnegative
from .base import EntropyEstimator

METHODS = ("cholesky", "slogdet")


def gaussian_constant(dim: int) -> float:
    r"""Return :math:`\frac{d}{2} (1 + \log 2 \pi)`, the Gaussian entropy constant."""
    return 0.5 * dim * (1.0 + math.log(2.0 * math.pi))


def unbiased_covariance(z: torch.Tensor) -> torch.Tensor:
    """Return the sample covariance of the rows of ``z`` with divisor ``N - 1``.

    Shapes:
        ``z``: ``(N, d)``; result: ``(d, d)``.
    """
    centered = z - z.mean(dim=0, keepdim=True)
    return centered.T @ centered / (z.shape[0] - 1)


class GaussianEntropy(EntropyEstimator):
    r"""Entropy of the Gaussian with the batch covariance (log-determinant estimate).

    .. math::

        \hat H[z] = \frac{d}{2} (1 + \log 2 \pi)
            + \frac{1}{2} \log \lvert \hat\Sigma + r I \rvert,
        \qquad
        \hat\Sigma = \frac{1}{N - 1} \sum_i (z_i - \bar z)(z_i - \bar z)^\top,

    where ``r`` is the ridge. The ridge is added to the diagonal only (``r I``),
    not to every matrix entry. With ``method="cholesky"`` the log-determinant is
    :math:`2 \sum_i \log L_{ii}` of the Cholesky factor ``L`` of
    :math:`\hat\Sigma + r I`; ``method="slogdet"`` uses ``torch.linalg.slogdet`` of
    the same matrix.

    The exact form needs ``N > d`` (``N > 2 D`` for the joint ``H[z, z']``, which
    concatenates the views). With ``N <= d`` the covariance is singular and only
    the ridge keeps the matrix positive definite, so the estimate then mostly
    measures the ridge.

    Dropped constants: none with ``include_constant=True``. With
    ``include_constant=False`` the estimate drops :math:`\frac{d}{2}(1 + \log 2\pi)`.

    Args:
        method: ``"cholesky"`` or ``"slogdet"``.
        ridge: ``r >= 0`` added to the diagonal of the covariance.
        include_constant: add :math:`\frac{d}{2}(1 + \log 2 \pi)`.

    Raises:
        ValueError: at call time, if :math:`\hat\Sigma + r I` is not positive
            definite.

    Shapes:
        ``z``, ``z_prime``: ``(N, D)`` with ``N >= 2``; result: scalar.

    References:
        F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
        Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Eq. 34.
    """

    def __init__(
        self,
        method: str = "cholesky",
        ridge: float = 1e-6,
        include_constant: bool = True,
    ):
        super().__init__()
        self.method = check_choice("method", method, METHODS)
        self.ridge = check_nonnegative("ridge", ridge)
        self.include_constant = check_bool("include_constant", include_constant)
        self.min_samples = 2

    def log_det(self, z: torch.Tensor) -> torch.Tensor:
        r"""Return :math:`\log \lvert \hat\Sigma + r I \rvert` of the rows of ``z``."""
        dim = z.shape[-1]
        covariance = unbiased_covariance(z)
        if self.ridge > 0:
            eye = torch.eye(dim, dtype=z.dtype, device=z.device)
            covariance = covariance + self.ridge * eye
        if self.method == "cholesky":
            factor, info = torch.linalg.cholesky_ex(covariance)
            failed_minor = int(info)
            if failed_minor != 0:
                detail = f"Cholesky failed at leading minor {failed_minor}"
                self._raise_not_positive_definite(z, detail)
            return 2.0 * torch.log(torch.diagonal(factor)).sum()
        sign, log_abs_det = torch.linalg.slogdet(covariance)
        determinant_sign = float(sign.detach())
        if determinant_sign <= 0:
            detail = f"determinant sign {determinant_sign}"
            self._raise_not_positive_definite(z, detail)
        return log_abs_det

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, d)``."""
        half_log_det = 0.5 * self.log_det(z)
        if self.include_constant:
            return half_log_det + gaussian_constant(z.shape[-1])
        return half_log_det

    def _raise_not_positive_definite(self, z: torch.Tensor, detail: str):
        samples, dim = z.shape
        raise ValueError(
            f"the covariance plus ridge={self.ridge} of a batch of {samples} samples "
            f"in dimension {dim} is not positive definite ({detail}); use a larger "
            f"ridge or a batch with more samples than dimensions (N > {dim})"
        )


class GaussianExpansionEntropy(EntropyEstimator):
    r"""Gaussian entropy with the log-determinant expanded to second order.

    Writing :math:`\Sigma = \Delta^{1/2} (I + C) \Delta^{1/2}` with
    :math:`\Delta = \operatorname{diag}\Sigma` and ``C`` the correlations off the
    diagonal (zero on it), :math:`\log|I + C| = -\frac{1}{2}\operatorname{tr} C^2
    + O(C^3)`, so

    .. math::

        \hat H[z] = \frac{d}{2} (1 + \log 2 \pi) + \frac{1}{2} \Bigl(
            \sum_i \log (\hat\Sigma_{ii} + \epsilon)
            - \frac{1}{2} \sum_{i \ne j} \rho_{ij}^2 \Bigr),
        \qquad
        \rho_{ij} = \frac{\hat\Sigma_{ij}}
            {\sqrt{(\hat\Sigma_{ii} + \epsilon)(\hat\Sigma_{jj} + \epsilon)}},

    with the unbiased covariance :math:`\hat\Sigma` (divisor ``N - 1``). The series
    converges when the spectral radius of ``C`` is below 1; for two coordinates
    with correlation 0.5 the second-order term gives -0.25 against the exact
    :math:`\log(1 - 0.25) = -0.2877`. Unlike :class:`GaussianEntropy` it is defined
    for ``N <= d``. It suits the joint ``H[z, z']`` poorly, because ``z_i`` and
    ``z'_i`` are nearly perfectly correlated there.

    ``published_rho4=True`` replaces :math:`\rho_{ij}^2` by :math:`\rho_{ij}^4`
    (-0.0625 in the check above). That is the expression of the public
    implementation of Mikulasch and Zenke (commit 38473c1) in the sphere
    log-determinant runs, kept only to reproduce those runs. Those runs also
    divide the term by ``D``, a weight that this estimator leaves to the
    objective's ``entropy_weight``.

    Dropped constants: none with ``include_constant=True``. With
    ``include_constant=False`` the estimate drops :math:`\frac{d}{2}(1 + \log 2\pi)`.

    Args:
        include_constant: add :math:`\frac{d}{2}(1 + \log 2 \pi)`.
        eps: ``epsilon >= 0`` added to each variance before the logarithm and the
            correlations.
        published_rho4: use :math:`\rho^4` in place of :math:`\rho^2`.

    Shapes:
        ``z``, ``z_prime``: ``(N, D)`` with ``N >= 2``; result: scalar.

    References:
        F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
        Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Appendix A.5.3.
    """

    def __init__(
        self,
        include_constant: bool = True,
        eps: float = 1e-6,
        published_rho4: bool = False,
    ):
        super().__init__()
        self.include_constant = check_bool("include_constant", include_constant)
        self.eps = check_nonnegative("eps", eps)
        self.published_rho4 = check_bool("published_rho4", published_rho4)
        self.min_samples = 2

    def log_det(self, z: torch.Tensor) -> torch.Tensor:
        r"""Return the second-order expansion of :math:`\log|\hat\Sigma|`."""
        covariance = unbiased_covariance(z)
        variance = torch.diagonal(covariance) + self.eps
        correlation = covariance / torch.sqrt(torch.outer(variance, variance))
        power = 4 if self.published_rho4 else 2
        diagonal = torch.eye(z.shape[-1], dtype=torch.bool, device=z.device)
        off_diagonal = correlation.pow(power).masked_fill(diagonal, 0.0).sum()
        return torch.log(variance).sum() - 0.5 * off_diagonal

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, d)``."""
        half_log_det = 0.5 * self.log_det(z)
        if self.include_constant:
            return half_log_det + gaussian_constant(z.shape[-1])
        return half_log_det
