"""Priors ``P_theta(z)`` over a batch of latents, as Pyro distributions.

A prior is a module called with the observed latents ``z`` of shape ``(N, D)``. It
returns a distribution with ``batch_shape == (N,)`` and ``event_shape == (D,)`` that
a latent model passes to ``pyro.sample(name, prior(z), obs=z)``.
"""

from __future__ import annotations

import torch
from pyro.distributions import ImproperUniform, TorchDistribution, constraints
from pyro.nn import PyroModule

from ..distributions import HypersphericalUniform


class FlatPrior(PyroModule):
    """Improper flat prior on ``R^D``: ``log P(z) = 0``.

    It adds nothing to the alignment term. Plane methods such as VICReg use it.
    """

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return an improper uniform distribution over the rows of ``z``."""
        return ImproperUniform(constraints.real_vector, z.shape[:-1], z.shape[-1:])


class SphereUniformPrior(PyroModule):
    """Uniform prior on the unit sphere in ``R^D``.

    Its log-density is the constant ``-log |S^{D-1}|``, so it shifts the objective
    but adds no gradient.
    """

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the uniform distribution on the sphere over the rows of ``z``."""
        return HypersphericalUniform(
            z.shape[-1], z.shape[:-1], dtype=z.dtype, device=z.device
        )


class EmpiricalPriorDistribution(TorchDistribution):
    r"""Marker for the empirical prior ``P_theta(z) = R(z)``.

    Its ``log_prob`` is zero. The objective recognises the marker and accounts for
    :math:`\langle \log R(z) \rangle_R = -H_R[z]` by removing one marginal entropy
    from the entropy term, so the prior contributes nothing to the alignment.
    """

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, batch_shape, event_shape, validate_args=None):
        super().__init__(
            torch.Size(batch_shape), torch.Size(event_shape), validate_args=False
        )

    def log_prob(self, value):
        """Return zeros of the batch shape of ``value``."""
        return value.new_zeros(value.shape[: value.dim() - len(self.event_shape)])

    def expand(self, batch_shape, _instance=None):
        """Return the marker with a larger batch shape."""
        return EmpiricalPriorDistribution(batch_shape, self.event_shape)


class EmpiricalPrior(PyroModule):
    """Empirical prior ``P_theta(z) = R(z)``: the encoder's own marginal.

    It contributes nothing to the alignment term and cancels one marginal entropy
    in the objective (see :class:`EmpiricalPriorDistribution`). BYOL, SimSiam, JEPA
    and SimCLR's single-entropy form use it.
    """

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the empirical-prior marker over the rows of ``z``."""
        return EmpiricalPriorDistribution(z.shape[:-1], z.shape[-1:])
