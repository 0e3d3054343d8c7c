r"""Kernel density entropy estimate on the probability simplex with Dirichlet kernels.

.. math::

    \hat H[z] = -\frac{1}{N} \sum_i \log \Bigl[ \frac{1}{M} \sum_j
        \mathrm{Dir}(z_i; \tau z_j + 1) \Bigr]

This is the uniformity term of the simplex (DINO-like) row of the latent
distribution matching table, normalized by ``M`` (``N - 1`` leave-one-out, or
``N`` with the self-pair).
"""

from __future__ import annotations

import math

import torch

from .._validation import check_positive
from ..latents.simplex import SIMPLEX_FLOOR
from ._checks import check_bool
from .base import EntropyEstimator


def dirichlet_kernel_matrix(z: torch.Tensor, concentration: float) -> torch.Tensor:
    r"""Return :math:`L_{ij} = \log \mathrm{Dir}(z_i; \tau z_j + 1)`.

    .. math::

        L_{ij} = \tau \sum_k z_{jk} \log z_{ik} + \log \Gamma\Bigl(\tau \sum_k z_{jk}
            + n\Bigr) - \sum_k \log \Gamma(\tau z_{jk} + 1)

    Shapes:
        ``z``: ``(N, n)``; result ``(N, N)``.
    """
    log_z = z.clamp_min(SIMPLEX_FLOOR).log()
    alpha = concentration * z + 1.0
    normalizer = torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)
    return concentration * log_z @ z.T + normalizer[None, :]


class DirichletKDEEntropy(EntropyEstimator):
    r"""Kernel density entropy estimate on the simplex, in nats.

    .. math::

        \hat H[z] = -\frac{1}{N} \sum_{i=1}^N \log \Bigl[ \frac{1}{M}
            \sum_{j} \mathrm{Dir}(z_i; \tau z_j + 1) \Bigr]

    The joint estimate :math:`\hat H[z, z']` uses the product kernel
    :math:`\mathrm{Dir}(z_i; \tau z_j + 1)\,\mathrm{Dir}(z'_i; \tau z'_j + 1)`.
    The densities are with respect to the Lebesgue measure on ``n - 1``
    coordinates of the simplex, so no constant is dropped. Rows are expected on
    the simplex (softmax outputs); coordinates are floored at ``1e-30`` before
    the logarithm.

    Args:
        concentration: kernel concentration :math:`\tau > 0`.
        leave_one_out: sum over ``j != i`` with ``M = N - 1``; otherwise include
            the self-pair with ``M = N``.

    Shapes:
        ``z``, ``z_prime``: ``(N, n)``; result: scalar.
    """

    def __init__(self, concentration: float = 10.0, leave_one_out: bool = True):
        super().__init__()
        self.concentration = check_positive("concentration", concentration)
        self.leave_one_out = check_bool("leave_one_out", leave_one_out)
        self.min_samples = 2 if leave_one_out else 1

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, n)``."""
        return self._from_log_kernel(dirichlet_kernel_matrix(z, self.concentration))

    def joint(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate ``H[z, z']`` with the product of the per-view kernels."""
        log_kernel = dirichlet_kernel_matrix(z, self.concentration)
        log_kernel = log_kernel + dirichlet_kernel_matrix(z_prime, self.concentration)
        return self._from_log_kernel(log_kernel)

    def _from_log_kernel(self, log_kernel: torch.Tensor) -> torch.Tensor:
        count = log_kernel.shape[0]
        if self.leave_one_out:
            eye = torch.eye(count, dtype=torch.bool, device=log_kernel.device)
            log_kernel = log_kernel.masked_fill(eye, -math.inf)
            count -= 1
        log_density = torch.logsumexp(log_kernel, dim=1) - math.log(count)
        return -log_density.mean()
