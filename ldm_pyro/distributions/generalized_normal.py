"""Generalized normal (exponential power) distribution."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all

_EMPTY_SHAPE = torch.Size()


class GeneralizedNormal(TorchDistribution):
    r"""Generalized normal distribution with location, scale and shape ``beta``.

    .. math::

        p(x) = \frac{\beta}{2 s \Gamma(1/\beta)}
            \exp\left(-\left|\frac{x - \mu}{s}\right|^\beta\right)

    ``beta = 2`` is a normal with standard deviation ``s / sqrt(2)`` and ``beta = 1``
    a Laplace with scale ``s``. Shapes ``beta < 2`` give super-Gaussian (heavy
    tailed) and ``beta > 2`` sub-Gaussian (light tailed) densities. The
    parameterization is that of ``scipy.stats.gennorm(beta, loc, scale)``.

    Sampling uses :math:`|x - \mu| / s = G^{1/\beta}` with
    :math:`G \sim \mathrm{Gamma}(1/\beta, 1)` and a random sign, so ``rsample``
    is differentiable in all three parameters through torch's reparameterized
    Gamma.

    Args:
        loc: location :math:`\mu`.
        scale: scale :math:`s > 0`.
        beta: shape :math:`\beta > 0`.
        validate_args: check parameters and samples, as in Pyro.

    Shapes:
        ``loc``, ``scale`` and ``beta`` broadcast to the batch shape; the event
        shape is ``()``. Use ``.to_event(1)`` for a factorized vector density.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "beta": constraints.positive,
    }
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, beta, validate_args=None):
        self.loc, self.scale, self.beta = broadcast_all(loc, scale, beta)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        """Return the distribution with its parameters broadcast to ``batch_shape``."""
        new = self._get_checked_instance(GeneralizedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.beta = self.beta.expand(batch_shape)
        super(GeneralizedNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        r"""Return the log-density, whose gradient in ``x`` is zero at ``x = loc``.

        .. math::

            \log\beta - \log 2s - \log\Gamma(1/\beta) - |(x-\mu)/s|^\beta
        """
        if self._validate_args:
            self._validate_sample(value)
        magnitude = ((value - self.loc) / self.scale).abs()
        # |z|^beta with a zero gradient at z = 0: the plain power gives 0 * inf = NaN
        # there for beta < 1, and its derivative in beta contains log|z|.
        at_zero = magnitude == 0
        safe = torch.where(at_zero, torch.ones_like(magnitude), magnitude)
        power = torch.where(at_zero, torch.zeros_like(magnitude), safe.pow(self.beta))
        # The normalizer depends on the parameters only: evaluate it before they were
        # broadcast over the batch, so lgamma runs once per distinct value.
        beta, scale = _compact(self.beta), _compact(self.scale)
        log_normalizer = (
            beta.log() - math.log(2.0) - scale.log() - torch.lgamma(beta.reciprocal())
        )
        return log_normalizer - power

    def rsample(self, sample_shape=_EMPTY_SHAPE):
        """Draw reparameterized samples through a Gamma variate and a random sign."""
        shape = self._extended_shape(sample_shape)
        concentration = self.beta.reciprocal().expand(shape)
        gamma = torch.distributions.Gamma(
            concentration, torch.ones_like(concentration)
        ).rsample()
        sign = torch.empty_like(gamma).bernoulli_(0.5).mul_(2.0).sub_(1.0)
        return self.loc + self.scale * sign * gamma.pow(self.beta.reciprocal())

    def cdf(self, value):
        r"""Return the cumulative distribution function.

        .. math::

            F(x) = \tfrac12 + \tfrac12 \operatorname{sign}(z) P(1/\beta, |z|^\beta)

        ``P`` is the regularized lower incomplete gamma function and
        :math:`z = (x - \mu) / s`.
        """
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        lower = torch.special.gammainc(self.beta.reciprocal(), z.abs().pow(self.beta))
        return 0.5 + 0.5 * torch.sign(z) * lower

    @property
    def mean(self):
        """The location ``loc``."""
        return self.loc

    @property
    def mode(self):
        """The location ``loc``."""
        return self.loc

    @property
    def variance(self):
        r""":math:`s^2 \Gamma(3/\beta) / \Gamma(1/\beta)`."""
        inverse = self.beta.reciprocal()
        return self.scale.pow(2) * torch.exp(
            torch.lgamma(3.0 * inverse) - torch.lgamma(inverse)
        )

    def entropy(self):
        r""":math:`1/\beta - \log\beta + \log 2s + \log\Gamma(1/\beta)`, in nats."""
        inverse = self.beta.reciprocal()
        return (
            inverse
            - self.beta.log()
            + math.log(2.0)
            + self.scale.log()
            + torch.lgamma(inverse)
        )


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """Return the view of an expanded tensor with its stride-0 dimensions at size 1.

    The result broadcasts back to ``tensor``'s shape with the same values.
    """
    for dim, (size, stride) in enumerate(
        zip(tensor.shape, tensor.stride(), strict=True)
    ):
        if stride == 0 and size > 1:
            tensor = tensor.narrow(dim, 0, 1)
    return tensor
