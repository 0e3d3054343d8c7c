"""Alignment kernels ``P_theta(z' | z)`` between paired views.

A kernel is a module called with the conditioning latents ``z`` of shape
``(N, D)``; it returns a distribution over ``z'`` with ``batch_shape == (N,)`` and
``event_shape == (D,)``. Learnable kernel parameters are ``nn.Parameter`` objects of
the module, so the training loop puts them in the latent-model parameter group.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional

from .._validation import check_positive


class GaussianKernel(PyroModule):
    r"""Isotropic Gaussian conditional :math:`N(z'; z, \sigma^2 I)`.

    .. math::

        \log P(z' | z) = -\frac{\lVert z' - z \rVert^2}{2 \sigma^2}
            - \frac{D}{2} \log(2 \pi \sigma^2)

    Args:
        scale: the standard deviation ``sigma > 0``.
        learnable: learn ``log sigma`` with the latent-model parameters.
    """

    def __init__(self, scale: float = 1.0, learnable: bool = False):
        super().__init__()
        check_positive("scale", scale)
        log_scale = torch.tensor(math.log(scale))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The standard deviation ``sigma``."""
        return self.log_scale.exp()

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        r"""Return :math:`N(z, \sigma^2 I)` with event shape ``(D,)``."""
        return IsotropicNormal(z, self.scale.to(z.dtype))


class IsotropicNormal(TorchDistribution):
    r"""Normal distribution :math:`N(\mu, \sigma^2 I)` with one scalar scale.

    Equal to ``Normal(loc, scale).to_event(1)``, but ``log_prob`` evaluates
    :math:`\log \sigma` once instead of once per coordinate.

    Shapes:
        ``loc`` is ``batch_shape + (D,)``; ``scale`` is a scalar tensor.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc = loc
        self.scale = scale
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def log_prob(self, value):
        """Return ``-|x - mu|^2 / (2 sigma^2) - D/2 log(2 pi sigma^2)``."""
        dim = self.loc.shape[-1]
        squared = (value - self.loc).pow(2).sum(-1)
        log_normalizer = dim * (torch.log(self.scale) + 0.5 * math.log(2 * math.pi))
        return -0.5 * squared / self.scale.pow(2) - log_normalizer

    def rsample(self, sample_shape=()):
        """Draw ``mu + sigma * eps`` with standard normal ``eps``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * noise

    def expand(self, batch_shape, _instance=None):
        """Return the distribution with its mean broadcast to ``batch_shape``."""
        shape = torch.Size(batch_shape) + self.event_shape
        return IsotropicNormal(self.loc.expand(shape), self.scale)


class UnnormalizedVonMisesFisher(TorchDistribution):
    r"""Von Mises-Fisher kernel without its normalizer: ``log p = k mu^T x``.

    The dropped log-normalizer :math:`\log C_D(k)` is constant while ``k`` is fixed,
    so the gradient with respect to the latents is exact. A learnable ``k`` needs
    the normalized :class:`ldm_pyro.distributions.VonMisesFisher`.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "concentration": constraints.positive,
    }
    support = constraints.sphere

    def __init__(self, loc, concentration, validate_args=None):
        self.loc = loc
        self.concentration = concentration
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def log_prob(self, value):
        """Return ``k mu^T x`` without the normalizer."""
        return self.concentration * (self.loc * value).sum(-1)

    def expand(self, batch_shape, _instance=None):
        """Return the kernel with its location broadcast to ``batch_shape``."""
        shape = torch.Size(batch_shape) + self.event_shape
        return UnnormalizedVonMisesFisher(self.loc.expand(shape), self.concentration)


class VonMisesFisherKernel(PyroModule):
    r"""Von Mises-Fisher conditional on the unit sphere.

    .. math::

        \log P(z' | z) = \beta z^\top z' + \log C_D(\beta)

    With ``normalized=True`` (the default) the kernel is
    :class:`ldm_pyro.distributions.VonMisesFisher`, whose normalizer
    :math:`\log C_D(\beta)` is exact for every ``D`` and ``beta`` and
    differentiable in ``beta``.

    Args:
        concentration: the inverse temperature ``beta > 0``.
        learnable: learn ``beta`` with the latent-model parameters. A learned
            ``beta`` needs the normalizer, so it requires ``normalized=True``. It
            stays in ``(0, max_concentration)`` through a scaled sigmoid.
        normalized: include :math:`\log C_D(\beta)`. Without it the kernel is
            :class:`UnnormalizedVonMisesFisher`, whose gradients in the latents are
            the same for a fixed ``beta``.
        max_concentration: upper bound of a learned ``beta``.
        normalize_inputs: project ``z`` to the sphere before using it as the mean
            direction (a predictor output need not have unit norm).
    """

    def __init__(
        self,
        concentration: float = 5.0,
        learnable: bool = False,
        normalized: bool = True,
        max_concentration: float = 100.0,
        normalize_inputs: bool = False,
    ):
        super().__init__()
        check_positive("concentration", concentration)
        check_positive("max_concentration", max_concentration)
        if learnable and not normalized:
            raise ValueError(
                "a learnable concentration needs the vMF normalizer; "
                "set normalized=True"
            )
        if concentration >= max_concentration:
            raise ValueError(
                f"concentration must be below max_concentration={max_concentration}, "
                f"got {concentration}"
            )
        self.normalized = normalized
        self.max_concentration = float(max_concentration)
        self.normalize_inputs = normalize_inputs
        # A learned beta lives in (0, max_concentration) through a scaled sigmoid.
        raw = torch.tensor(
            math.log(concentration / (max_concentration - concentration))
        )
        if learnable:
            self.raw_concentration = nn.Parameter(raw)
        else:
            self.register_buffer("raw_concentration", raw)

    @property
    def concentration(self) -> torch.Tensor:
        """The concentration ``beta``."""
        return self.max_concentration * torch.sigmoid(self.raw_concentration)

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the vMF distribution centred on ``z`` with event shape ``(D,)``."""
        loc = functional.normalize(z, dim=-1) if self.normalize_inputs else z
        concentration = self.concentration.to(z.dtype)
        if self.normalized:
            return _normalized_vmf(loc, concentration)
        return UnnormalizedVonMisesFisher(loc, concentration)


def _normalized_vmf(loc, concentration):
    from ..distributions import VonMisesFisher

    # Arguments are not validated: with normalize_inputs=False the caller passes
    # latents that are on the sphere by construction, and checking every batch
    # would synchronize with the device.
    return VonMisesFisher(loc, concentration, validate_args=False)
