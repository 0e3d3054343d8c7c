"""Von Mises-Fisher distribution on the unit sphere in ``R^D``."""

from __future__ import annotations

import functools
import math
import warnings

import numpy
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.autograd import Function
from torch.autograd.function import once_differentiable
from torch.distributions import kl

from .._validation import LDMWarning
from ..ops.bessel import _LogSeries, _vmf_log_normalizer, bessel_ratio
from .hyperspherical_uniform import HypersphericalUniform

__all__ = ["VonMisesFisher"]


class VonMisesFisher(TorchDistribution):
    r"""Von Mises-Fisher distribution on :math:`S^{D-1} \subset R^D`, ``D >= 2``.

    .. math::

        \log p(x \mid \mu, \kappa) = \log C_D(\kappa) + \kappa \mu^\top x, \qquad
        \log C_D(\kappa) = \nu \log \kappa - \frac{D}{2} \log(2 \pi)
            - \log I_\nu(\kappa), \quad \nu = \frac{D}{2} - 1

    ``D`` is the ambient dimension. The normalizer comes from
    :func:`ldm_pyro.ops.vmf_log_normalizer`, exact in float64 to about ``1e-14``
    for ``2 <= D <= 4096`` and ``0 <= kappa <= 1e6``. ``kappa = 0`` is the uniform
    distribution. The gradient of ``log_prob`` in :math:`\kappa` is
    :math:`\mu^\top x - A_D(\kappa)` with the mean resultant length
    :math:`A_D(\kappa) = I_{D/2}(\kappa) / I_{D/2-1}(\kappa)`.

    Sampling uses the rejection sampler of Wood (1994) for the component
    :math:`w = \mu^\top x`, a uniform direction orthogonal to :math:`e_1`, and a
    Householder reflection that maps :math:`\pm e_1` to :math:`\mu`. The sign is
    chosen so that the reflection vector has norm at least :math:`\sqrt 2`, which
    keeps the reflection stable when :math:`\mu` is at or near :math:`\pm e_1`.
    The rejection loop is vectorized and capped at :attr:`max_rejection_iterations`
    rounds. When the cap is hit, the remaining samples keep their last proposal
    and an :class:`~ldm_pyro.LDMWarning` is emitted.

    On ``S^2`` (``D = 3``) the density of :math:`w` is proportional to
    :math:`e^{\kappa w}`, and :math:`w` is drawn by its closed-form inverse CDF.

    ``rsample`` is reparameterized. The gradient in :math:`\mu` flows through the
    reflection and is exact. The gradient in :math:`\kappa` is the implicit
    reparameterization gradient (Figurnov et al., 2018) of the cosine,

    .. math::

        \frac{dw}{d\kappa} = -\frac{\partial F(w; \kappa) / \partial \kappa}
            {p(w; \kappa)}, \qquad
        p(w; \kappa) = c_D(\kappa) \, e^{\kappa w} (1 - w^2)^{(D-3)/2}
            \text{ on } [-1, 1],

    with :math:`F` the CDF of :math:`w`. It holds for each sample whatever drew
    it, so :math:`E[dw/d\kappa] = A_D'(\kappa)` without bias. For ``D = 3`` it is
    the pathwise derivative of the inverse CDF. For other ``D`` the backward pass
    evaluates it in float64 as one integral over the angle :math:`\arccos w`,
    which needs neither :math:`c_D` nor a separate :math:`\partial F /
    \partial \kappa` (see ``_cosine_derivative``). Against mpmath at points up to
    8 standard deviations from the mean, for ``D`` in {2, 4, 5, 16, 128, 1024,
    4096} and :math:`\kappa \le 10^4`, its relative error is below ``1e-11``. At
    :math:`\kappa = 10^6` it is about ``1e-9``, set by the rounding of
    :math:`1 - A_D(\kappa)`. The backward pass costs a bisection and a 32-node
    Gauss-Legendre rule per sample, and it is differentiable only once in
    :math:`\kappa`.

    Arguments are validated like Pyro's distributions (``validate_args``): ``loc``
    must already have unit norm (within ``10 * eps * sqrt(D)``, the tolerance of
    ``constraints.sphere``); it is rejected, not normalized, so normalize it with
    ``torch.nn.functional.normalize`` first. ``concentration`` must be finite and
    ``>= 0``.

    Args:
        loc: mean direction :math:`\mu`, unit vectors of shape ``(..., D)``.
        concentration: :math:`\kappa \ge 0`, a tensor or number broadcastable with
            ``loc.shape[:-1]``.
        validate_args: check arguments and samples, as in ``torch.distributions``.

    Shapes:
        ``batch_shape = broadcast(loc.shape[:-1], concentration.shape)``,
        ``event_shape = (D,)``.

    References:
        A. T. A. Wood, "Simulation of the von Mises Fisher distribution",
        Communications in Statistics - Simulation and Computation 23(1), 1994.
        T. R. Davidson, L. Falorsi, N. De Cao, T. Kipf, J. M. Tomczak,
        "Hyperspherical Variational Auto-Encoders", UAI 2018, arXiv:1804.00891.
        M. Figurnov, S. Mohamed, A. Mnih, "Implicit Reparameterization
        Gradients", NeurIPS 2018, arXiv:1805.08498.
    """

    arg_constraints = {
        "loc": constraints.sphere,
        "concentration": constraints.nonnegative,
    }
    support = constraints.sphere
    has_rsample = True
    #: Maximum number of rounds of the vectorized rejection loop in ``rsample``.
    max_rejection_iterations = 100

    def __init__(self, loc, concentration, validate_args=None):
        if not isinstance(loc, torch.Tensor):
            raise TypeError(
                f"loc must be a torch.Tensor, got {type(loc).__name__}; "
                "convert it with torch.as_tensor"
            )
        if loc.dim() == 0:
            raise ValueError(
                "loc must have shape (..., D) with D >= 2, got a scalar; the event "
                "dimension is the last one"
            )
        if loc.shape[-1] < 2:
            raise ValueError(
                f"loc must have shape (..., D) with the ambient dimension D >= 2, got "
                f"shape {tuple(loc.shape)}; the sphere in R^1 is two points and has "
                "no von Mises-Fisher distribution"
            )
        if not loc.is_floating_point():
            loc = loc.to(torch.get_default_dtype())
        if not isinstance(concentration, torch.Tensor):
            concentration = torch.as_tensor(
                concentration, dtype=loc.dtype, device=loc.device
            )
        try:
            batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        except RuntimeError:
            raise ValueError(
                f"concentration shape {tuple(concentration.shape)} does not "
                f"broadcast with the batch shape {tuple(loc.shape[:-1])} of loc "
                f"(loc shape {tuple(loc.shape)}); give concentration one value per "
                "batch element or a scalar"
            ) from None
        validate = (
            validate_args
            if validate_args is not None
            else torch.distributions.Distribution._validate_args
        )
        if validate:
            _check_loc(loc)
            _check_concentration(concentration)
        self.loc = loc.expand(batch_shape + loc.shape[-1:])
        self.concentration = concentration.expand(batch_shape)
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    @property
    def dim(self) -> int:
        """Ambient dimension ``D``."""
        return self.event_shape[0]

    def expand(self, batch_shape, _instance=None):
        """Return the distribution with parameters broadcast to ``batch_shape``."""
        new = self._get_checked_instance(VonMisesFisher, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(VonMisesFisher, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _log_normalizer_plus_concentration(self) -> torch.Tensor:
        # log C_D(k) + k is computed in float64 and rounded once, because log C_D(k)
        # alone is about -k and adding two values of size 1e6 in float32 loses digits.
        kappa = self.concentration
        constant = kappa.numel() == 1 or all(stride == 0 for stride in kappa.stride())
        if constant and not kappa.requires_grad:
            # A fixed concentration, as in an alignment kernel, is the common case
            # in training, so the float64 value is reused across calls.
            value = _cached_log_normalizer_plus_kappa(
                self.dim, kappa.reshape(-1)[0].item()
            )
            return torch.full_like(kappa, value)
        return _vmf_log_normalizer(self.dim, kappa, plus_kappa=True)

    def log_prob(self, value):
        r"""Return :math:`\log C_D(\kappa) + \kappa \mu^\top x` for unit vectors ``x``.

        Computed as :math:`(\log C_D(\kappa) + \kappa) + \kappa (\mu^\top x - 1)`,
        which is the same number with less rounding in float32 for large
        :math:`\kappa`.
        """
        if self._validate_args:
            self._validate_sample(value)
        if self.loc.dim() == 1:
            # One mean direction: a matrix-vector product (BLAS gemv).
            cosine = value @ self.loc
        else:
            cosine = torch.linalg.vecdot(self.loc, value)
        return self._log_normalizer_plus_concentration() + self.concentration * (
            cosine - 1.0
        )

    @property
    def mean(self):
        r"""The mean :math:`A_D(\kappa) \mu` (inside the ball, not on the sphere)."""
        ratio = bessel_ratio(self.dim / 2.0 - 1.0, self.concentration)
        return ratio.unsqueeze(-1) * self.loc

    @property
    def mode(self):
        r"""The mode :math:`\mu` (every point is a mode when :math:`\kappa = 0`)."""
        return self.loc

    def entropy(self):
        r"""Return :math:`-\log C_D(\kappa) - \kappa A_D(\kappa)` in nats.

        Evaluated in float64 as :math:`-(\log C_D + \kappa) + \kappa (1 - A_D)`,
        then cast to the dtype of the concentration.
        """
        dtype = self.concentration.dtype
        work = (
            torch.float32 if self.concentration.device.type == "mps" else torch.float64
        )
        kappa = self.concentration.to(work)
        shifted = _vmf_log_normalizer(self.dim, kappa, plus_kappa=True)
        ratio = bessel_ratio(self.dim / 2.0 - 1.0, kappa)
        return (-shifted + kappa * (1.0 - ratio)).to(dtype)

    def rsample(self, sample_shape=()):
        """Draw reparameterized samples by Wood's sampler (inverse CDF for ``D = 3``).

        Returns:
            unit vectors of shape ``sample_shape + batch_shape + (D,)``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        dim = self.dim
        kappa = self.concentration.expand(shape[:-1])
        cosine, one_minus_cosine = _sample_cosine(
            kappa, dim, self.max_rejection_iterations
        )
        dtype = self.loc.dtype
        cosine = cosine.to(dtype)
        one_minus_cosine = one_minus_cosine.to(dtype)
        # A uniform direction orthogonal to e1, scaled by sin(angle).
        tangent = torch.randn(
            shape[:-1] + (dim - 1,), dtype=dtype, device=self.loc.device
        )
        tangent = tangent / tangent.norm(dim=-1, keepdim=True)
        sine = torch.sqrt(
            torch.clamp(one_minus_cosine * (2.0 - one_minus_cosine), min=0)
        )
        loc = self.loc.expand(shape)
        # Householder reflection H = I - 2 u u^T / |u|^2 with u = e1 - sign * mu maps
        # e1 to sign * mu; sign = -sign(mu_1) keeps |u|^2 = 2 + 2 |mu_1| >= 2.
        sign = torch.where(loc[..., :1] >= 0, -1.0, 1.0).to(dtype)
        e1 = torch.zeros_like(loc)
        e1[..., 0] = 1.0
        u = e1 - sign * loc
        # The point sign * (w e1 + sin * tangent) is mapped to w mu + H(sin * tangent).
        point = torch.cat(
            [(sign[..., 0] * cosine).unsqueeze(-1), sine.unsqueeze(-1) * tangent],
            dim=-1,
        )
        projection = (u * point).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True)
        sample = point - 2.0 * projection * u
        # The reflection is orthogonal; renormalizing removes rounding only.
        return sample / sample.norm(dim=-1, keepdim=True)


def _sample_cosine(kappa: torch.Tensor, dim: int, max_iterations: int):
    """Draw ``w = mu^T x`` by Wood's rejection sampler and return ``w, 1 - w``.

    Computation runs in float64 (float32 on MPS). The gradient in ``kappa`` is
    the implicit one of :class:`_ImplicitCosine`, except for ``D = 3``.
    """
    work = torch.float32 if kappa.device.type == "mps" else torch.float64
    kappa_w = kappa.to(work)
    if dim == 3:
        return _sample_cosine_sphere2(kappa_w)
    m1 = dim - 1.0
    k_d = kappa_w.detach()
    # b = (-2k + sqrt(4k^2 + (D-1)^2)) / (D-1), written without cancellation.
    b_d = m1 / (2.0 * k_d + torch.sqrt(4.0 * k_d**2 + m1**2))
    x0_d = (1.0 - b_d) / (1.0 + b_d)
    omx0_d = 2.0 * b_d / (1.0 + b_d)
    beta = torch.distributions.Beta(
        torch.full_like(k_d, m1 / 2.0), torch.full_like(k_d, m1 / 2.0)
    )
    epsilon = torch.full_like(kappa_w, 0.5).detach()
    pending = torch.ones_like(kappa_w, dtype=torch.bool)
    for _ in range(max_iterations):
        proposal = beta.sample()
        # 1 - w for w = (1 - (1 + b) e) / (1 - (1 - b) e), without cancellation.
        omw = 2.0 * b_d * proposal / (1.0 - (1.0 - b_d) * proposal)
        # log acceptance k (w - x0) + (D-1) log((1 - x0 w) / (1 - x0^2)) <= 0,
        # with w - x0 = (1 - x0) - (1 - w) and 1 + x0 = 2 / (1 + b).
        log_accept = k_d * (omx0_d - omw) + m1 * (
            torch.log1p(x0_d * omw / omx0_d) - torch.log(2.0 / (1.0 + b_d))
        )
        uniform = torch.rand_like(kappa_w)
        accept = pending & (torch.log(uniform) <= log_accept)
        epsilon = torch.where(pending, proposal, epsilon)
        pending = pending & ~accept
        if not bool(pending.any()):
            break
    else:
        if bool(pending.any()):
            warnings.warn(
                f"VonMisesFisher.rsample: {int(pending.sum())} of {pending.numel()} "
                f"samples were not accepted within {max_iterations} rejection "
                "rounds and keep their last proposal; raise "
                "VonMisesFisher.max_rejection_iterations",
                LDMWarning,
                stacklevel=3,
            )
    # The accepted draw fixes 1 - w, and _ImplicitCosine supplies its gradient.
    omw = 2.0 * b_d * epsilon / (1.0 - (1.0 - b_d) * epsilon)
    omw = _ImplicitCosine.apply(kappa_w, omw, dim)
    return 1.0 - omw, omw


def _sample_cosine_sphere2(kappa: torch.Tensor):
    """Draw ``w = mu^T x`` on the 2-sphere by inverting its CDF; return ``w, 1 - w``.

    On ``S^2`` the density of ``w`` is proportional to ``exp(k w)`` on ``[-1, 1]``,
    so ``1 - w = -log(1 + (1 - u) expm1(-2 k)) / k`` for ``u ~ U(0, 1)``. The map is
    explicit, so the pathwise gradient in ``k`` is exact, and ``k -> 0`` gives
    ``1 - w = 2 (1 - u)``, the uniform case.
    """
    uniform = torch.rand_like(kappa).detach()
    positive = kappa > 0
    safe = torch.where(positive, kappa, torch.ones_like(kappa))
    omw = -torch.log1p((1.0 - uniform) * torch.expm1(-2.0 * safe)) / safe
    omw = torch.where(positive, omw, 2.0 * (1.0 - uniform))
    return 1.0 - omw, omw


class _ImplicitCosine(Function):
    """Identity on ``1 - w`` whose gradient in ``kappa`` is ``-dw/dk`` (implicit)."""

    @staticmethod
    def forward(ctx, kappa, one_minus_cosine, dim):
        ctx.save_for_backward(kappa, one_minus_cosine)
        ctx.dim = dim
        return one_minus_cosine.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        kappa, one_minus_cosine = ctx.saved_tensors
        derivative = _cosine_derivative(one_minus_cosine, kappa, ctx.dim)
        return -grad * derivative, None, None


def _cosine_derivative(
    one_minus_cosine: torch.Tensor, kappa: torch.Tensor, dim: int
) -> torch.Tensor:
    r"""Compute :math:`dw/d\kappa = -(\partial F / \partial \kappa) / p` at fixed ``w``.

    ``F`` is the CDF of :math:`w = \mu^\top x` and ``p`` its density. Because
    :math:`\partial \log c_D / \partial \kappa = -A`,
    :math:`\partial F / \partial \kappa = \int_{-1}^{w} (t - A) \, p(t) \, dt`.
    With :math:`t = \cos\theta` and :math:`w = \cos\theta_w` the ratio is a
    positive integral that needs no normalizer,

    .. math::

        \frac{dw}{d\kappa} = \sin\theta_w \int_0^{\theta_w}
            (\cos\theta - A) \, e^{f(\theta)} \, d\theta
        = \sin\theta_w \int_{\theta_w}^{\pi} (A - \cos\theta) \,
            e^{f(\theta)} \, d\theta, \qquad
        f(\theta) = \kappa (\cos\theta - \cos\theta_w)
            + (D - 2) \log \frac{\sin\theta}{\sin\theta_w}

    with :math:`A = A_D(\kappa)`. Both forms agree because :math:`E[w - A] = 0`. The
    first is used for :math:`w > A` and the second for :math:`w \le A`, so the
    factor :math:`\pm(\cos\theta - A)` is nonnegative on the whole range and
    nothing cancels. :math:`e^f` is unimodal in :math:`\theta` (its logarithm is
    concave in :math:`\cos\theta`), so the range is cut by bisection to the
    window where :math:`f` is within :data:`_WINDOW_LOG_RATIO` of its maximum,
    which a fixed Gauss-Legendre rule then resolves for any ``D`` and
    :math:`\kappa`. The angle also removes the endpoint singularity of
    :math:`(1 - w^2)^{(D-3)/2}`.

    NOTE: on MPS the sampler works in float32, so this runs in float32 there with
    correspondingly lower accuracy. That path is not tested.

    Shapes:
        ``one_minus_cosine`` and ``kappa`` broadcast, and the result has their
        broadcast shape.
    """
    one_minus_cosine, kappa = torch.broadcast_tensors(one_minus_cosine, kappa)
    shape = one_minus_cosine.shape
    flat_omw = one_minus_cosine.reshape(-1)
    flat_kappa = kappa.reshape(-1)
    one_minus_ratio = 1.0 - bessel_ratio(dim / 2.0 - 1.0, flat_kappa)
    result = torch.empty_like(flat_omw)
    for start in range(0, flat_omw.numel(), _QUADRATURE_CHUNK):
        chunk = slice(start, start + _QUADRATURE_CHUNK)
        result[chunk] = _cosine_derivative_flat(
            flat_omw[chunk], flat_kappa[chunk], one_minus_ratio[chunk], dim
        )
    return result.reshape(shape)


# The integrand is cut where it falls below exp(-60) of its maximum, so the tail
# left out is negligible in float64. On this window 24 nodes already match mpmath
# to the accuracy of A_D(kappa) for D in 2..4096 and kappa in 0..1e6, and 32 leave
# a margin.
_WINDOW_LOG_RATIO = 60.0
_BISECTION_STEPS = 32
_QUADRATURE_NODES = 32
# Samples per block of the quadrature, which holds _QUADRATURE_NODES values each.
_QUADRATURE_CHUNK = 8192


@functools.cache
def _gauss_legendre(nodes: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    points, weights = numpy.polynomial.legendre.leggauss(nodes)
    return tuple(points.tolist()), tuple(weights.tolist())


def _log_integrand(theta, theta_w, log_sin_w, kappa, dim):
    """Return ``f(theta)``, with ``cos t - cos t_w`` as a product of sines."""
    value = (
        -2.0
        * kappa
        * torch.sin(0.5 * (theta + theta_w))
        * torch.sin(0.5 * (theta - theta_w))
    )
    if dim != 2:
        value = value + (dim - 2.0) * (torch.log(torch.sin(theta)) - log_sin_w)
    return value


def _mode_angle(kappa, dim):
    """Return the angle of the mode of ``exp(f)``, where ``k sin^2 = (D - 2) cos``."""
    if dim == 2:
        return torch.zeros_like(kappa)
    m = dim - 2.0
    root = torch.sqrt(m * m + 4.0 * kappa * kappa)
    # 1 - cos of the root of k c^2 + (D - 2) c - k = 0, with no cancellation.
    one_minus_cos = (m * m / (root + 2.0 * kappa) + m) / (m + root)
    return 2.0 * torch.asin(torch.sqrt(0.5 * one_minus_cos))


def _cosine_derivative_flat(omw, kappa, one_minus_ratio, dim):
    sin_w = torch.sqrt(torch.clamp(omw * (2.0 - omw), min=0.0))
    theta_w = torch.atan2(sin_w, 1.0 - omw)
    # The derivative is 0 at w = +-1, where the angle cannot move.
    inside = sin_w > 0
    log_sin_w = torch.log(torch.where(inside, sin_w, torch.ones_like(sin_w)))

    def log_integrand(theta):
        return _log_integrand(theta, theta_w, log_sin_w, kappa, dim)

    upper = omw < one_minus_ratio
    low = torch.where(upper, torch.zeros_like(theta_w), theta_w)
    high = torch.where(upper, theta_w, torch.full_like(theta_w, math.pi))
    peak = torch.minimum(torch.maximum(_mode_angle(kappa, dim), low), high)
    log_peak = log_integrand(peak)
    level = log_peak - _WINDOW_LOG_RATIO
    # Bisection for the ends of the window, on each side of the peak where f is
    # monotone. The outer bracket end is kept, so the window errs on the wide side.
    left_out, left_in = low, peak
    right_in, right_out = peak, high
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (left_out + left_in)
        below = log_integrand(middle) < level
        left_out = torch.where(below, middle, left_out)
        left_in = torch.where(below, left_in, middle)
        middle = 0.5 * (right_in + right_out)
        below = log_integrand(middle) < level
        right_out = torch.where(below, middle, right_out)
        right_in = torch.where(below, right_in, middle)
    start = torch.where(log_integrand(low) >= level, low, left_out)
    end = torch.where(log_integrand(high) >= level, high, right_out)

    points, weights = _gauss_legendre(_QUADRATURE_NODES)
    points = torch.tensor(points, dtype=omw.dtype, device=omw.device)
    weights = torch.tensor(weights, dtype=omw.dtype, device=omw.device)
    half = 0.5 * (end - start)
    theta = (0.5 * (start + end)).unsqueeze(-1) + half.unsqueeze(-1) * points
    log_values = _log_integrand(
        theta,
        theta_w.unsqueeze(-1),
        log_sin_w.unsqueeze(-1),
        kappa.unsqueeze(-1),
        dim,
    )
    # cos(theta) - A = (1 - A) - 2 sin^2(theta / 2), signed to be nonnegative.
    factor = one_minus_ratio.unsqueeze(-1) - 2.0 * torch.sin(0.5 * theta) ** 2
    factor = torch.where(upper.unsqueeze(-1), factor, -factor)
    integrand = factor * torch.exp(log_values - log_peak.unsqueeze(-1))
    integral = half * (integrand * weights).sum(-1)
    derivative = sin_w * torch.exp(log_peak) * integral
    return torch.where(inside, derivative, torch.zeros_like(derivative))


@functools.lru_cache(maxsize=256)
def _cached_log_normalizer_plus_kappa(dim: int, kappa: float) -> float:
    kappa64 = torch.tensor(kappa, dtype=torch.float64)
    return float(_vmf_log_normalizer(dim, kappa64, plus_kappa=True))


def _check_loc(loc: torch.Tensor) -> None:
    norm = torch.linalg.norm(loc.detach(), dim=-1)
    tolerance = 10.0 * torch.finfo(loc.dtype).eps * loc.shape[-1] ** 0.5
    bad = ~((norm - 1.0).abs() < tolerance)
    if bool(bad.any()):
        worst = norm[bad].flatten()[0].item()
        raise ValueError(
            f"loc must have unit norm along the last dimension, got a norm of "
            f"{worst!r} ({int(bad.sum())} of {norm.numel()} vectors off the sphere); "
            "VonMisesFisher rejects non-unit loc, so normalize it first with "
            "torch.nn.functional.normalize(loc, dim=-1) (a zero vector has no "
            "direction)"
        )


def _check_concentration(concentration: torch.Tensor) -> None:
    value = concentration.detach()
    bad = ~(torch.isfinite(value) & (value >= 0))
    if bool(bad.any()):
        raise ValueError(
            f"concentration must be finite and >= 0, got "
            f"{value[bad].flatten()[0].item()!r}; use 0 for the uniform distribution"
        )


@kl.register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(p: VonMisesFisher, q: HypersphericalUniform) -> torch.Tensor:
    r"""Return :math:`KL(p \| q) = \log |S^{D-1}| - H[p]` in nats."""
    if p.dim != q.dim:
        raise ValueError(
            f"KL divergence needs the same dimension, got VonMisesFisher with D = "
            f"{p.dim} and HypersphericalUniform with D = {q.dim}"
        )
    # log C_D(k) = -log |S^(D-1)| - G(k) with the normalized series
    # G(k) = log(Gamma(D/2) (k/2)^(1-D/2) I_(D/2-1)(k)), so the KL divergence
    # log C_D(k) + k A_D(k) + log |S^(D-1)| is k A_D(k) - G(k), without cancellation.
    dtype = p.concentration.dtype
    work = torch.float32 if p.concentration.device.type == "mps" else torch.float64
    kappa = p.concentration.to(work)
    nu = torch.tensor(p.dim / 2.0 - 1.0, dtype=work, device=kappa.device)
    log_series = _LogSeries.apply(kappa, nu, 0.0)
    ratio = bessel_ratio(nu, kappa)
    return (kappa * ratio - log_series).to(dtype)
