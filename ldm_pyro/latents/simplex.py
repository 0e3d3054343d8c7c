r"""Latent models on the probability simplex: Dirichlet kernel and categorical codes.

Two readings of an encoder with a softmax output :math:`z \in \Delta^{n-1}`:

* a point on the simplex (DINO-like methods): uniform prior
  :math:`\mathrm{Dir}(z; 1)` and the Dirichlet kernel
  :math:`P_\theta(z' | z) = \mathrm{Dir}(z'; \tau z + 1)`
  (:class:`SimplexUniformPrior`, :class:`DirichletKernel`);
* the probabilities of a categorical code :math:`R(k | x) = z_k`: uniform prior
  ``1/n`` and the kernel :math:`P_\theta(k' | k) = e^{\beta [k' = k]} / Z`,
  scored in expectation over both codes (:class:`CategoricalUniformPrior`,
  :class:`CategoricalMatchKernel`).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import Dirichlet, TorchDistribution, constraints
from pyro.nn import PyroModule

from .._validation import check_positive, check_tensor

# Simplex coordinates are floored here before the logarithm, so that a softmax
# output that underflows to 0 gives a finite log-density and gradient.
SIMPLEX_FLOOR = 1e-30


def dirichlet_log_density(
    value: torch.Tensor, concentration: torch.Tensor, floor: float = SIMPLEX_FLOOR
) -> torch.Tensor:
    r"""Return :math:`\log \mathrm{Dir}(x; \alpha)` with ``x`` floored at ``floor``.

    .. math::

        \log \mathrm{Dir}(x; \alpha) = \sum_k (\alpha_k - 1) \log x_k
            + \log \Gamma\Bigl(\sum_k \alpha_k\Bigr) - \sum_k \log \Gamma(\alpha_k)

    The density is with respect to the Lebesgue measure on the first ``n - 1``
    coordinates of the simplex.

    Shapes:
        ``value`` and ``concentration`` broadcast to ``(..., n)``; result
        ``(...)``.
    """
    log_value = value.clamp_min(floor).log()
    return (
        ((concentration - 1.0) * log_value).sum(-1)
        + torch.lgamma(concentration.sum(-1))
        - torch.lgamma(concentration).sum(-1)
    )


class FlooredDirichlet(Dirichlet):
    """Pyro's ``Dirichlet`` whose ``log_prob`` floors the value at ``1e-30``."""

    def log_prob(self, value):
        """Return :func:`dirichlet_log_density` of ``value``."""
        return dirichlet_log_density(value, self.concentration)

    def expand(self, batch_shape, _instance=None):
        """Return the distribution with a larger batch shape."""
        shape = torch.Size(batch_shape) + self.event_shape
        return FlooredDirichlet(self.concentration.expand(shape), validate_args=False)


def _check_simplex_input(name: str, z: torch.Tensor) -> torch.Tensor:
    check_tensor(name, z, ndim=2)
    if z.shape[-1] < 2:
        raise ValueError(
            f"{name} must have n >= 2 categories in its last dimension, got shape "
            f"{tuple(z.shape)}"
        )
    return z


class SimplexUniformPrior(PyroModule):
    r"""Uniform prior on the simplex, :math:`\mathrm{Dir}(z; 1)`.

    Its log-density is the constant :math:`\log \Gamma(n) = \log (n - 1)!`.
    """

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the flat Dirichlet over the rows of ``z``."""
        _check_simplex_input("z", z)
        return FlooredDirichlet(torch.ones_like(z), validate_args=False)


class DirichletKernel(PyroModule):
    r"""Dirichlet conditional :math:`P_\theta(z' | z) = \mathrm{Dir}(z'; \tau z + 1)`.

    .. math::

        \log P_\theta(z' | z) = \tau \sum_k z_k \log z'_k + \log \Gamma(\tau + n)
            - \sum_k \log \Gamma(\tau z_k + 1)

    for ``z`` on the simplex. The first term is DINO's cross-entropy between the
    teacher ``z`` and the student ``z'``, scaled by ``tau``; the last term
    rewards confident ``z``.

    Args:
        concentration: :math:`\tau > 0`.

    Shapes:
        ``z``: ``(N, n)``; the distribution has batch shape ``(N,)`` and event
        shape ``(n,)``.
    """

    def __init__(self, concentration: float = 10.0):
        super().__init__()
        self.concentration = check_positive("concentration", concentration)

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        r"""Return :math:`\mathrm{Dir}(\tau z + 1)`."""
        _check_simplex_input("z", z)
        return FlooredDirichlet(self.concentration * z + 1.0, validate_args=False)


def match_log_normalizer(beta: float | torch.Tensor, categories: int):
    r"""Return :math:`\log Z = \log(e^\beta + n - 1)` of the match kernel."""
    beta = torch.as_tensor(beta)
    return torch.logaddexp(beta, torch.log(torch.tensor(categories - 1.0)))


def beta_from_probability(probability: float, categories: int) -> float:
    r"""Return :math:`\beta = \log(p (n - 1) / (1 - p))`, so that ``P(k' = k) = p``."""
    if not 0.0 < probability < 1.0:
        raise ValueError(
            f"equal_probability must be in (0, 1), got {probability!r}; the "
            "categorical experiments use 0.8 to 0.99"
        )
    return math.log(probability * (categories - 1) / (1.0 - probability))


class ExpectedCategoricalUniform(TorchDistribution):
    """Uniform categorical prior scored in expectation: ``log_prob(q) = -log n``."""

    arg_constraints = {}
    support = constraints.simplex

    def __init__(self, batch_shape, categories: int, validate_args=None):
        self.categories = categories
        super().__init__(
            torch.Size(batch_shape), torch.Size([categories]), validate_args=False
        )

    def log_prob(self, value):
        """Return ``-log n`` for every row of probabilities."""
        return value.new_full(value.shape[:-1], -math.log(self.categories))

    def expand(self, batch_shape, _instance=None):
        """Return the prior with a larger batch shape."""
        return ExpectedCategoricalUniform(batch_shape, self.categories)


class ExpectedCategoricalMatch(TorchDistribution):
    r"""Match kernel :math:`e^{\beta [k' = k]} / Z` scored in expectation.

    .. math::

        \sum_{k, k'} q_k q'_{k'} \log P(k' | k) = \beta\, q^\top q' - \log Z
    """

    arg_constraints = {}
    support = constraints.simplex

    def __init__(self, probs: torch.Tensor, beta: torch.Tensor, validate_args=None):
        self.probs = probs
        self.beta = beta
        super().__init__(probs.shape[:-1], probs.shape[-1:], validate_args=False)

    def log_prob(self, value):
        """Return the expected log-density of the code ``value`` given ``probs``."""
        categories = self.probs.shape[-1]
        log_normalizer = match_log_normalizer(self.beta, categories).to(value)
        return self.beta * (self.probs * value).sum(-1) - log_normalizer

    def expand(self, batch_shape, _instance=None):
        """Return the kernel with its probabilities broadcast to ``batch_shape``."""
        shape = torch.Size(batch_shape) + self.event_shape
        return ExpectedCategoricalMatch(self.probs.expand(shape), self.beta)


class CategoricalUniformPrior(PyroModule):
    """Uniform prior ``1/n`` over the categories of a probabilistic encoder."""

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the expected-log-density prior over the rows of ``z``."""
        _check_simplex_input("z", z)
        return ExpectedCategoricalUniform(z.shape[:-1], z.shape[-1])


class CategoricalMatchKernel(PyroModule):
    r"""Categorical conditional :math:`P(k' | k) = e^{\beta [k' = k]} / Z`.

    With a probabilistic encoder :math:`R(k | x) = q_k(x)` the alignment is the
    expectation over both codes,
    :math:`\beta \langle q^\top q' \rangle - \log(e^\beta + n - 1)`. With the
    uniform prior and the exact categorical entropy of
    :class:`~ldm_pyro.entropy.CategoricalEntropy` the LDM objective is
    :math:`\beta \sum_k \langle R(k|x) R(k|x') \rangle + H_R[z, z']` up to
    constants.

    Args:
        equal_probability: :math:`p_\theta = P(k' = k)`; sets
            :math:`\beta = \log(p_\theta (n - 1) / (1 - p_\theta))` once ``n`` is
            known.
        categories: number of categories ``n``.

    The buffer ``beta`` can be changed during training (annealing
    :math:`p_\theta`) with :meth:`set_probability`.
    """

    def __init__(self, equal_probability: float = 0.99, categories: int = 10):
        super().__init__()
        if isinstance(categories, bool) or not isinstance(categories, int):
            raise TypeError(f"categories must be an integer >= 2, got {categories!r}")
        if categories < 2:
            raise ValueError(f"categories must be an integer >= 2, got {categories}")
        self.categories = categories
        self.register_buffer(
            "beta", torch.tensor(beta_from_probability(equal_probability, categories))
        )

    def set_probability(self, equal_probability: float) -> None:
        r"""Set :math:`\beta` from a new :math:`p_\theta`."""
        self.beta.fill_(beta_from_probability(equal_probability, self.categories))

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the match kernel given the code probabilities ``z``."""
        _check_simplex_input("z", z)
        if z.shape[-1] != self.categories:
            raise ValueError(
                f"z must have {self.categories} categories in its last dimension, "
                f"got shape {tuple(z.shape)}; set categories={z.shape[-1]}"
            )
        return ExpectedCategoricalMatch(z, self.beta.to(z.dtype))
