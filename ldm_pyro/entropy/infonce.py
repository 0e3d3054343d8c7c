r"""InfoNCE: a vMF conditional normalized over in-batch negatives (CPC, CEBRA).

.. math::

    \log q(z_i | p_i) = \beta \hat p_i^\top z_i
        - \log \frac{1}{N} \sum_{j=1}^N \exp(\beta \hat p_i^\top z_j),
    \qquad \hat p_i = p_i / \lVert p_i \rVert

The second term is a kernel density estimate of :math:`\log R(z)` with vMF kernels
centred on the predictions, so it estimates the marginal entropy term of the MI
objective. Because the estimate needs the predictions, it lives in the latent
model's conditional (:class:`InfoNCEKernel`) and not in a batch-only
:class:`~ldm_pyro.entropy.EntropyEstimator`. An objective that uses this kernel
needs no other entropy term. The vMF normalizer :math:`\log C_D(\beta)` is dropped,
so :math:`-\log q = \mathrm{InfoNCE} - \log N`, where InfoNCE is the
cross-entropy of the softmax over the ``N`` candidates with the positive among
them.

References:
    A. van den Oord, Y. Li and O. Vinyals, "Representation Learning with
    Contrastive Predictive Coding", arXiv:1807.03748, 2018.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from torch.nn import functional

from .._validation import check_positive


def infonce_log_density(
    prediction: torch.Tensor, target: torch.Tensor, concentration: float | torch.Tensor
) -> torch.Tensor:
    r"""Return :math:`\log q(z_i | p_i)` with the negatives along dimension 0.

    For inputs of shape ``(N, ..., D)`` the candidates of ``prediction[i, ...]``
    are ``target[j, ...]`` for all ``j`` with the same trailing batch index, for
    example the same time step of the other sequences.

    Shapes:
        ``prediction`` and ``target``: ``(N, ..., D)``; result ``(N, ...)``.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    if prediction.dim() < 2:
        raise ValueError(
            f"prediction must have shape (N, ..., D), got {tuple(prediction.shape)}"
        )
    direction = functional.normalize(prediction, dim=-1)
    # Move the candidate dimension next to the feature dimension: (..., N, D).
    direction = direction.movedim(0, -2)
    candidates = target.movedim(0, -2)
    scores = concentration * direction @ candidates.transpose(-1, -2)
    positive = scores.diagonal(dim1=-2, dim2=-1)
    count = scores.shape[-1]
    log_mean = torch.logsumexp(scores, dim=-1) - math.log(count)
    return (positive - log_mean).movedim(-1, 0)


class ContrastiveVonMisesFisher(TorchDistribution):
    """InfoNCE conditional: vMF scores normalized over the batch of observed values.

    ``log_prob(value)`` scores each row of ``value`` against every other row as a
    negative, so it must be called with the whole batch at once.
    """

    arg_constraints = {"loc": constraints.real_vector}
    support = constraints.real_vector

    def __init__(self, loc: torch.Tensor, concentration, validate_args=None):
        self.loc = loc
        self.concentration = concentration
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def log_prob(self, value):
        """Return the InfoNCE log-density of each row, negatives along dim 0."""
        return infonce_log_density(self.loc, value, self.concentration)

    def expand(self, batch_shape, _instance=None):
        """Return the distribution unchanged if the batch shape already matches."""
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError(
                "ContrastiveVonMisesFisher scores rows against each other and "
                f"cannot be broadcast from {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}"
            )
        return self


class InfoNCEKernel(PyroModule):
    r"""Alignment kernel with in-batch negatives: :class:`ContrastiveVonMisesFisher`.

    Args:
        concentration: the inverse temperature :math:`\beta > 0`.

    Shapes:
        Called with predictions ``(N, ..., D)``; the distribution has batch shape
        ``(N, ...)`` and event shape ``(D,)``.
    """

    def __init__(self, concentration: float = 5.0):
        super().__init__()
        self.concentration = check_positive("concentration", concentration)

    def forward(self, prediction: torch.Tensor) -> TorchDistribution:
        """Return the contrastive conditional centred on ``prediction``."""
        return ContrastiveVonMisesFisher(prediction, self.concentration)
