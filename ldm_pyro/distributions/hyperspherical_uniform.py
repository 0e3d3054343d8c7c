"""Uniform distribution on the unit sphere in ``R^D``."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints


class HypersphericalUniform(TorchDistribution):
    r"""Uniform distribution on the unit sphere :math:`S^{D-1} \subset R^D`.

    .. math::

        \log p(x) = -\log \frac{2 \pi^{D/2}}{\Gamma(D/2)}

    Args:
        dim: ambient dimension ``D >= 2``.
        batch_shape: batch shape of the distribution.
        dtype: floating dtype of samples and densities.
        device: device of samples and densities.

    Shapes:
        ``event_shape == (D,)``.
    """

    arg_constraints = {}
    support = constraints.sphere
    has_rsample = False

    def __init__(
        self, dim, batch_shape=(), dtype=None, device=None, validate_args=None
    ):
        if int(dim) != dim or dim < 2:
            raise ValueError(
                f"dim must be an integer >= 2 (the ambient dimension), got {dim!r}"
            )
        self.dim = int(dim)
        self._dtype = dtype or torch.get_default_dtype()
        self._device = device
        super().__init__(
            torch.Size(batch_shape), torch.Size([self.dim]), validate_args=validate_args
        )

    def log_surface_area(self) -> float:
        """Return ``log`` of the surface area of the unit sphere in ``R^D``."""
        half = self.dim / 2
        return math.log(2.0) + half * math.log(math.pi) - math.lgamma(half)

    def log_prob(self, value):
        """Return the constant log-density, broadcast to ``value``'s batch shape."""
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return torch.full(
            shape, -self.log_surface_area(), dtype=value.dtype, device=value.device
        )

    def sample(self, sample_shape=()):
        """Draw uniform points on the sphere by normalizing standard normals."""
        shape = self._extended_shape(torch.Size(sample_shape))
        x = torch.randn(shape, dtype=self._dtype, device=self._device)
        return x / x.norm(dim=-1, keepdim=True)

    def entropy(self):
        """Return ``log`` of the sphere's surface area, broadcast to the batch."""
        return torch.full(
            self.batch_shape,
            self.log_surface_area(),
            dtype=self._dtype,
            device=self._device,
        )

    def expand(self, batch_shape, _instance=None):
        """Return the same distribution with a larger batch shape."""
        return HypersphericalUniform(
            self.dim, batch_shape, self._dtype, self._device, self._validate_args
        )
