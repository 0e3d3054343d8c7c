r"""Exact entropy of the categorical code of a probabilistic (softmax) encoder.

.. math::

    R(k) = \frac{1}{N} \sum_i q_k(x_i), \qquad
    R(k, k') = \frac{1}{N} \sum_i q_k(x_i)\, q_{k'}(x'_i),

    H_R[z] = -\sum_k R(k) \log R(k), \qquad
    H_R[z, z'] = -\sum_{k, k'} R(k, k') \log R(k, k')

with :math:`q(x) = \mathrm{softmax}(f(x))` the code probabilities.
"""

from __future__ import annotations

import torch

from ._checks import check_nonnegative
from .base import EntropyEstimator

# The probabilities are floored here inside the logarithm so that an empty
# category gives a finite gradient; p log p -> 0 as p -> 0 either way.
_LOG_FLOOR = 1e-30


class CategoricalEntropy(EntropyEstimator):
    r"""Exact entropy of the batch-averaged categorical code, in nats.

    .. math::

        \hat H[z] = -\sum_k R(k) \log (R(k) + \epsilon),
        \qquad R(k) = \frac{1}{N} \sum_i q_{ik}

    and the joint over paired codes with
    :math:`R(k, k') = \frac{1}{N} \sum_i q_{ik} q'_{ik'}`. The estimate is exact
    for the mixture of the batch's codes; it drops no constant. The public
    implementation of Mikulasch and Zenke uses :math:`\epsilon = 10^{-6}`.

    Args:
        eps: offset inside the logarithm, ``>= 0``.

    Shapes:
        ``z``, ``z_prime``: ``(N, n)`` rows of probabilities; result: scalar.
    """

    min_samples = 1

    def __init__(self, eps: float = 0.0):
        super().__init__()
        self.eps = check_nonnegative("eps", eps)

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Return :math:`H_R[z]` of the codes ``z`` of shape ``(N, n)``."""
        return self._entropy(z.mean(0))

    def joint(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Return :math:`H_R[z, z']` from the joint table ``z^T z' / N``."""
        return self._entropy(z.T @ z_prime / z.shape[0])

    def _entropy(self, probabilities: torch.Tensor) -> torch.Tensor:
        log = (probabilities.clamp_min(_LOG_FLOOR) + self.eps).log()
        return -(probabilities * log).sum()
