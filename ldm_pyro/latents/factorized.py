r"""Factorized priors :math:`P_\theta(z) = \prod_d p_d(z_d)`, as used by linear ICA.

Each prior is a module called with the observed latents ``z`` of shape ``(N, D)``.
It returns a distribution with ``batch_shape == (N,)`` and ``event_shape == (D,)``,
the product of one univariate density per latent dimension, which a latent model
passes to ``pyro.sample(name, prior(z), obs=z)``.

Every parameter (location, scale, shape) is a scalar shared by all dimensions or a
vector of length ``D``, and is either fixed (a buffer) or learned (an
``nn.Parameter``, which the training loop puts in the latent-model parameter
group). Positive parameters are stored as their logarithm, so a learned value
stays positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import (
    Laplace,
    Logistic,
    Normal,
    StudentT,
    TorchDistribution,
)
from pyro.nn import PyroModule
from torch import nn

from .._validation import check_tensor
from ..distributions import GeneralizedNormal

ParameterValue = float | Sequence[float] | torch.Tensor


class FactorizedPrior(PyroModule):
    """Base class of the factorized priors.

    Subclasses declare their parameters with :meth:`_add_parameter` and implement
    :meth:`marginal`, which returns the univariate distribution of every dimension
    from the parameter values.

    Shapes:
        ``z`` is ``(N, D)``; the returned distribution has batch shape ``(N,)`` and
        event shape ``(D,)``.
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        if dim is not None and (int(dim) != dim or dim < 1):
            raise ValueError(
                f"dim must be a positive integer (the latent dimension D) or None, "
                f"got {dim!r}"
            )
        self.dim = None if dim is None else int(dim)
        self._parameter_specs: dict[str, tuple[str, bool]] = {}

    def _add_parameter(
        self, name: str, value: ParameterValue, *, learnable: bool, positive: bool
    ) -> None:
        tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach()
        if tensor.dim() > 1:
            raise ValueError(
                f"{name} must be a scalar or a vector of length D, got shape "
                f"{tuple(tensor.shape)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if positive and not bool((tensor > 0).all()):
            raise ValueError(f"{name} must be > 0 in every dimension, got {value!r}")
        if self.dim is not None:
            if tensor.dim() == 0:
                tensor = tensor.expand(self.dim)
            elif tensor.shape[0] != self.dim:
                raise ValueError(
                    f"{name} has length {tensor.shape[0]} but dim={self.dim}; pass a "
                    "scalar or a vector of length dim"
                )
        raw = tensor.log() if positive else tensor
        stored = f"log_{name}" if positive else name
        if learnable:
            setattr(self, stored, nn.Parameter(raw.clone()))
        else:
            self.register_buffer(stored, raw.clone())
        self._parameter_specs[name] = (stored, positive)

    def parameter_value(self, name: str) -> torch.Tensor:
        """Return the constrained value of parameter ``name`` (scalar or ``(D,)``)."""
        stored, positive = self._parameter_specs[name]
        raw = getattr(self, stored)
        return raw.exp() if positive else raw

    def marginal(self, **parameters: torch.Tensor) -> TorchDistribution:
        """Return the univariate distribution with the given parameter values."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the factorized prior over the rows of ``z``."""
        check_tensor("z", z, ndim=2)
        size = z.shape[-1]
        values = {}
        for name in self._parameter_specs:
            value = self.parameter_value(name).to(dtype=z.dtype, device=z.device)
            if value.dim() == 1 and value.shape[0] != size:
                raise ValueError(
                    f"{type(self).__name__}.{name} has length {value.shape[0]} but z "
                    f"has D={size} dimensions; build the prior with dim={size} or "
                    "scalar parameters"
                )
            values[name] = value.expand(size)
        return self.marginal(**values).expand(z.shape).to_event(1)


class LaplacePrior(FactorizedPrior):
    r"""Factorized Laplace prior, the classic super-Gaussian ICA prior.

    .. math::

        \log P(z) = \sum_d -\frac{|z_d - \mu_d|}{b_d} - \log 2 b_d

    Args:
        loc: location :math:`\mu`, scalar or length ``D``.
        scale: scale :math:`b > 0`, scalar or length ``D``.
        dim: latent dimension ``D``; expands scalar parameters to vectors, so a
            learned parameter is per dimension.
        learn_loc: learn the location.
        learn_scale: learn the scale (stored as its logarithm).
    """

    def __init__(
        self,
        loc: ParameterValue = 0.0,
        scale: ParameterValue = 1.0,
        *,
        dim: int | None = None,
        learn_loc: bool = False,
        learn_scale: bool = False,
    ):
        super().__init__(dim)
        self._add_parameter("loc", loc, learnable=learn_loc, positive=False)
        self._add_parameter("scale", scale, learnable=learn_scale, positive=True)

    def marginal(self, loc, scale):
        """Return ``Laplace(loc, scale)``."""
        return Laplace(loc, scale, validate_args=False)


class LogisticPrior(FactorizedPrior):
    r"""Factorized logistic prior, the smooth super-Gaussian prior of Infomax ICA.

    .. math::

        \log P(z) = \sum_d -u_d - 2 \operatorname{softplus}(-u_d) - \log s_d,
        \qquad u_d = \frac{z_d - \mu_d}{s_d}

    This form stays finite and accurate in both tails (for example at
    ``|u| = 1000``), unlike ``log(sigmoid(u) (1 - sigmoid(u)))``.

    Args:
        loc: location :math:`\mu`, scalar or length ``D``.
        scale: scale :math:`s > 0`, scalar or length ``D``.
        dim: latent dimension ``D``; expands scalar parameters to vectors.
        learn_loc: learn the location.
        learn_scale: learn the scale (stored as its logarithm).
    """

    def __init__(
        self,
        loc: ParameterValue = 0.0,
        scale: ParameterValue = 1.0,
        *,
        dim: int | None = None,
        learn_loc: bool = False,
        learn_scale: bool = False,
    ):
        super().__init__(dim)
        self._add_parameter("loc", loc, learnable=learn_loc, positive=False)
        self._add_parameter("scale", scale, learnable=learn_scale, positive=True)

    def marginal(self, loc, scale):
        """Return ``Logistic(loc, scale)``; Pyro's ``log_prob`` uses the stable form."""
        return Logistic(loc, scale, validate_args=False)


class GeneralizedNormalPrior(FactorizedPrior):
    r"""Factorized generalized normal prior with shape :math:`\beta`.

    .. math::

        \log P(z) = \sum_d -\left|\frac{z_d - \mu_d}{s_d}\right|^{\beta_d}
            + \log \frac{\beta_d}{2 s_d \Gamma(1/\beta_d)}

    ``beta < 2`` is super-Gaussian (``beta = 1`` is Laplace), ``beta = 2`` Gaussian
    and ``beta > 2`` sub-Gaussian, approaching a uniform density as ``beta`` grows.
    The prior :math:`\log P(s) = -20 s^4` used to unmix two photographs is
    ``beta = 4`` with ``scale = 20 ** -0.25``.

    Args:
        beta: shape :math:`\beta > 0`, scalar or length ``D``.
        loc: location :math:`\mu`, scalar or length ``D``.
        scale: scale :math:`s > 0`, scalar or length ``D``.
        dim: latent dimension ``D``; expands scalar parameters to vectors.
        learn_loc: learn the location.
        learn_scale: learn the scale (stored as its logarithm).
        learn_beta: learn the shape (stored as its logarithm).
    """

    def __init__(
        self,
        beta: ParameterValue = 2.0,
        loc: ParameterValue = 0.0,
        scale: ParameterValue = 1.0,
        *,
        dim: int | None = None,
        learn_loc: bool = False,
        learn_scale: bool = False,
        learn_beta: bool = False,
    ):
        super().__init__(dim)
        self._add_parameter("loc", loc, learnable=learn_loc, positive=False)
        self._add_parameter("scale", scale, learnable=learn_scale, positive=True)
        self._add_parameter("beta", beta, learnable=learn_beta, positive=True)

    def marginal(self, loc, scale, beta):
        """Return ``GeneralizedNormal(loc, scale, beta)``."""
        return GeneralizedNormal(loc, scale, beta, validate_args=False)


class StudentTPrior(FactorizedPrior):
    r"""Factorized Student-t prior, super-Gaussian with polynomial tails.

    .. math::

        \log P(z) = \sum_d \log \mathrm{St}(z_d; \nu_d, \mu_d, s_d)

    Args:
        df: degrees of freedom :math:`\nu > 0`, scalar or length ``D``.
        loc: location :math:`\mu`, scalar or length ``D``.
        scale: scale :math:`s > 0`, scalar or length ``D``.
        dim: latent dimension ``D``; expands scalar parameters to vectors.
        learn_loc: learn the location.
        learn_scale: learn the scale (stored as its logarithm).
        learn_df: learn the degrees of freedom (stored as their logarithm).
    """

    def __init__(
        self,
        df: ParameterValue = 3.0,
        loc: ParameterValue = 0.0,
        scale: ParameterValue = 1.0,
        *,
        dim: int | None = None,
        learn_loc: bool = False,
        learn_scale: bool = False,
        learn_df: bool = False,
    ):
        super().__init__(dim)
        self._add_parameter("loc", loc, learnable=learn_loc, positive=False)
        self._add_parameter("scale", scale, learnable=learn_scale, positive=True)
        self._add_parameter("df", df, learnable=learn_df, positive=True)

    def marginal(self, loc, scale, df):
        """Return ``StudentT(df, loc, scale)``."""
        return StudentT(df, loc, scale, validate_args=False)


class GaussianPrior(FactorizedPrior):
    r"""Factorized Gaussian prior with per-dimension variances.

    .. math::

        \log P(z) = \sum_d -\frac{(z_d - \mu_d)^2}{2 s_d^2} - \log s_d
            - \tfrac12 \log 2\pi

    A Gaussian prior cannot unmix Gaussian sources with an unconstrained ``W``:
    every rotation of a solution has the same likelihood. With a volume-preserving
    ``W`` (:class:`~ldm_pyro.entropy.RotationLinear`) and the known source
    variances as ``scale ** 2`` it recovers sources of distinct variances.

    Args:
        loc: mean :math:`\mu`, scalar or length ``D``.
        scale: standard deviation :math:`s > 0`, scalar or length ``D``.
        dim: latent dimension ``D``; expands scalar parameters to vectors.
        learn_loc: learn the mean.
        learn_scale: learn the standard deviation (stored as its logarithm).
    """

    def __init__(
        self,
        loc: ParameterValue = 0.0,
        scale: ParameterValue = 1.0,
        *,
        dim: int | None = None,
        learn_loc: bool = False,
        learn_scale: bool = False,
    ):
        super().__init__(dim)
        self._add_parameter("loc", loc, learnable=learn_loc, positive=False)
        self._add_parameter("scale", scale, learnable=learn_scale, positive=True)

    def marginal(self, loc, scale):
        """Return ``Normal(loc, scale)``."""
        return Normal(loc, scale, validate_args=False)


#: Factorized priors by name, for specs and :func:`make_prior`.
PRIORS: dict[str, type[FactorizedPrior]] = {
    "laplace": LaplacePrior,
    "logistic": LogisticPrior,
    "generalized_normal": GeneralizedNormalPrior,
    "student_t": StudentTPrior,
    "gaussian": GaussianPrior,
}


def make_prior(prior: str | nn.Module, **options) -> nn.Module:
    """Build a factorized prior from its :data:`PRIORS` name, or pass a module through.

    Args:
        prior: a name in :data:`PRIORS` or a prior module.
        **options: keyword arguments of the prior class, for example ``beta=4.0``;
            only allowed with a name.

    Raises:
        ValueError: if the name is unknown, or options come with a module.
        TypeError: if ``prior`` is neither a string nor a module.
    """
    if isinstance(prior, nn.Module):
        if options:
            raise ValueError(
                f"prior options {sorted(options)} apply only to a prior given by "
                "name; configure the module before passing it"
            )
        return prior
    if not isinstance(prior, str):
        raise TypeError(
            f"prior must be a name in {sorted(PRIORS)} or an nn.Module, got "
            f"{type(prior).__name__}"
        )
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; expected one of {sorted(PRIORS)}")
    return PRIORS[prior](**options)
