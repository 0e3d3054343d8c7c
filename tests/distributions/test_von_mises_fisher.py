"""Tests of the von Mises-Fisher distribution against mpmath, scipy and quadrature."""

import functools
import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch
from torch.nn import functional

from ldm_pyro import LDMWarning
from ldm_pyro.distributions import HypersphericalUniform, VonMisesFisher
from ldm_pyro.distributions.von_mises_fisher import _cosine_derivative
from ldm_pyro.latents import UnnormalizedVonMisesFisher, VonMisesFisherKernel
from ldm_pyro.ops import bessel_ratio, vmf_log_normalizer

GRID_DIMS = [2, 3, 5, 16, 128, 1024, 4096]
GRID_KAPPAS = [0.0, 1e-6, 1e-3, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e6]


@functools.cache
def mp_log_normalizer_and_ratio(dim: int, kappa: float) -> tuple[float, float]:
    """Reference log C_D(kappa) and A_D(kappa) from mpmath at 50 digits."""
    with mpmath.workdps(50):
        nu = mpmath.mpf(dim) / 2 - 1
        if kappa == 0:
            # The uniform density -log |S^(D-1)| and A_D(0) = 0.
            log_area = mpmath.log(2) + dim * mpmath.log(mpmath.pi) / 2
            return float(mpmath.loggamma(mpmath.mpf(dim) / 2) - log_area), 0.0
        k = mpmath.mpf(kappa)
        i_nu = mpmath.besseli(nu, k)
        log_c = nu * mpmath.log(k) - dim * mpmath.log(2 * mpmath.pi) / 2
        return float(log_c - mpmath.log(i_nu)), float(mpmath.besseli(nu + 1, k) / i_nu)


def unit(dim, index=0, dtype=torch.float64):
    vector = torch.zeros(dim, dtype=dtype)
    vector[index] = 1.0
    return vector


@pytest.mark.parametrize("dim", GRID_DIMS)
def test_log_normalizer_grid_matches_mpmath(dim):
    # log_prob at x = mu is log C_D(k) + k; the mean has length A_D(k).
    kappa = torch.tensor(GRID_KAPPAS)
    dist = VonMisesFisher(unit(dim).expand(len(GRID_KAPPAS), dim), kappa)
    log_c = dist.log_prob(unit(dim)) - kappa
    ratio = dist.mean[:, 0]
    for i, k in enumerate(GRID_KAPPAS):
        reference, reference_ratio = mp_log_normalizer_and_ratio(dim, k)
        scale = max(abs(reference), 1.0)
        # log_prob adds k back, so the error is relative to max(|log C|, k).
        assert abs(log_c[i].item() - reference) <= 1e-10 * max(scale, k), (dim, k)
        assert abs(ratio[i].item() - reference_ratio) <= 1e-10 * reference_ratio
        direct = vmf_log_normalizer(dim, torch.tensor(k)).item()
        assert abs(direct - reference) <= 1e-10 * scale, (dim, k)


@pytest.mark.parametrize("dim", GRID_DIMS)
def test_log_normalizer_grid_float32(dim):
    # float32: relative 1e-5 (the rounding of kappa itself is below 1e-7).
    kappa = torch.tensor(GRID_KAPPAS, dtype=torch.float32)
    values = vmf_log_normalizer(dim, kappa)
    ratios = bessel_ratio(dim / 2 - 1, kappa)
    for k, value, ratio in zip(
        kappa.tolist(), values.tolist(), ratios.tolist(), strict=True
    ):
        reference, reference_ratio = mp_log_normalizer_and_ratio(dim, k)
        assert abs(value - reference) <= 1e-5 * max(abs(reference), 1.0), (dim, k)
        assert abs(ratio - reference_ratio) <= 1e-5 * reference_ratio, (dim, k)


# (D, kappa, log C_D(kappa), A_D(kappa)) from mpmath at 50 digits.
REFERENCE_TABLE = [
    (2, 1.0, -2.07379142491652, 0.446389965896535),
    (3, 100.0, -97.2327068804213, 0.99),
    (128, 1.7, 127.042168441967, 0.0132789441293533),
    (128, 800.0, -489.751612269103, 0.923724652994512),
    (2048, 100.0, 4895.94535476385, 0.0487123734746823),
    (2048, 1e-6, 4898.3838626541, 4.8828125e-10),
]


@pytest.mark.parametrize(("dim", "kappa", "log_c", "ratio"), REFERENCE_TABLE)
def test_reference_table(dim, kappa, log_c, ratio):
    mu = functional.normalize(torch.arange(1.0, dim + 1), dim=0)
    k = torch.tensor(kappa, requires_grad=True)
    dist = VonMisesFisher(mu, k)
    x = functional.normalize(torch.cos(torch.arange(dim, dtype=torch.float64)), dim=0)
    log_prob = dist.log_prob(x)
    cosine = (mu * x).sum().item()
    assert log_prob.item() == pytest.approx(
        log_c + kappa * cosine, rel=1e-12, abs=1e-12
    )
    log_prob.backward()
    # d/dk log p = mu^T x - A_D(k)
    assert k.grad.item() == pytest.approx(cosine - ratio, rel=1e-12, abs=1e-14)
    assert torch.allclose(dist.mean, ratio * mu, rtol=1e-13)
    assert torch.equal(dist.mode, mu)


def test_circle_matches_scipy_vonmises():
    # D = 2: x = (cos t, sin t), mu = (cos m, sin m) gives the von Mises density.
    angles = torch.linspace(-math.pi, math.pi, 101)
    points = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    for kappa in (0.0, 0.3, 4.0, 250.0):
        dist = VonMisesFisher(torch.tensor([math.cos(0.7), math.sin(0.7)]), kappa)
        reference = scipy.stats.vonmises(kappa, loc=0.7).logpdf(angles.numpy())
        np.testing.assert_allclose(dist.log_prob(points).numpy(), reference, rtol=1e-12)


def test_sphere_closed_form():
    # log C_3(k) = log k - log(2 pi) - k - log1p(-exp(-2k)).
    kappa = torch.tensor([1e-4, 0.5, 3.0, 80.0, 1e5])
    mu = functional.normalize(torch.tensor([1.0, -2.0, 0.5]), dim=0)
    x = functional.normalize(torch.tensor([0.3, 0.3, -1.0]), dim=0)
    closed = (
        torch.log(kappa)
        - math.log(2 * math.pi)
        - kappa
        - torch.log1p(-torch.exp(-2 * kappa))
        + kappa * (mu * x).sum()
    )
    dist = VonMisesFisher(mu.expand(5, 3), kappa)
    assert torch.allclose(dist.log_prob(x), closed, rtol=1e-13)


@pytest.mark.parametrize("kappa", [0.0, 2.0, 40.0])
def test_density_integrates_to_one_on_sphere(kappa):
    # Gauss-Legendre in cos(theta) times the trapezoid rule in phi (exact for the
    # periodic integrand) on S^2, with a generic mean direction.
    mu = functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    cos_theta = torch.from_numpy(nodes)
    phi = torch.arange(200) * (2 * math.pi / 200)
    sin_theta = torch.sqrt(1 - cos_theta**2)
    points = torch.stack(
        [
            sin_theta[:, None] * torch.cos(phi)[None, :],
            sin_theta[:, None] * torch.sin(phi)[None, :],
            cos_theta[:, None].expand(200, 200),
        ],
        dim=-1,
    )
    density = VonMisesFisher(mu, kappa).log_prob(points).exp()
    total = (torch.from_numpy(weights)[:, None] * density).sum() * (2 * math.pi / 200)
    assert total.item() == pytest.approx(1.0, abs=1e-10)


SAMPLING_CASES = [
    (2, 0.0),
    (2, 1.0),
    (3, 1e-6),
    (3, 5.0),
    (5, 50.0),
    (16, 10.0),
    (128, 1.7),
    (128, 800.0),
    (1024, 100.0),
    (4096, 1e6),
]


@pytest.mark.parametrize(("dim", "kappa"), SAMPLING_CASES)
def test_sample_mean_cosine_matches_ratio(dim, kappa):
    # E[mu^T x] = A_D(k); tolerance 5 standard errors of the sample mean.
    n = 4000 if dim < 1000 else 1000
    mu = functional.normalize(torch.randn(dim), dim=0)
    samples = VonMisesFisher(mu, kappa).rsample((n,))
    assert samples.shape == (n, dim)
    assert torch.allclose(samples.norm(dim=-1), torch.ones(n), atol=1e-14)
    cosine = samples @ mu
    reference = mp_log_normalizer_and_ratio(dim, kappa)[1]
    standard_error = cosine.std().item() / math.sqrt(n)
    assert abs(cosine.mean().item() - reference) <= 5 * standard_error + 1e-12


@pytest.mark.parametrize(
    "loc",
    [
        unit(6),
        -unit(6),
        functional.normalize(unit(6) + 1e-12 * torch.ones(6), dim=0),
        functional.normalize(-unit(6) + 1e-9 * torch.ones(6), dim=0),
        unit(6, index=3),
    ],
)
def test_sampling_stable_near_first_axis(loc):
    # The Householder reflection must not divide by |e1 - mu| ~ 0.
    kappa = 30.0
    loc = loc.detach().requires_grad_(True)
    samples = VonMisesFisher(loc, kappa).rsample((3000,))
    assert torch.isfinite(samples).all()
    assert torch.allclose(samples.norm(dim=-1), torch.ones(3000), atol=1e-14)
    cosine = samples @ loc.detach()
    reference = mp_log_normalizer_and_ratio(6, kappa)[1]
    assert abs(cosine.mean().item() - reference) <= 5 * cosine.std().item() / math.sqrt(
        3000
    )
    samples.sum().backward()
    assert torch.isfinite(loc.grad).all()


def test_sampling_float32():
    # float32: the cosine is drawn in float64 and rounded, so samples stay on the
    # sphere to float32 precision even for huge concentrations.
    for kappa in (1e-6, 3.0, 1e6):
        mu = functional.normalize(torch.randn(64), dim=0).float()
        samples = VonMisesFisher(mu, torch.tensor(kappa, dtype=torch.float32)).rsample(
            (2000,)
        )
        assert samples.dtype == torch.float32
        assert torch.allclose(samples.norm(dim=-1), torch.ones(2000).float(), atol=1e-6)
        cosine = (samples @ mu).double()
        reference = mp_log_normalizer_and_ratio(64, kappa)[1]
        tolerance = 5 * cosine.std().item() / math.sqrt(2000) + 1e-6
        assert abs(cosine.mean().item() - reference) <= tolerance


def test_rsample_gradient_in_loc_matches_finite_differences():
    # With the random state fixed, the sample is a smooth function of loc (the
    # accept decisions do not depend on loc), so central differences are exact up
    # to O(h^2).
    def draw(loc):
        torch.manual_seed(3)
        return VonMisesFisher(loc, 7.0, validate_args=False).rsample((5,))

    loc = functional.normalize(torch.tensor([0.2, -0.4, 0.9, 0.1]), dim=0)
    assert torch.autograd.gradcheck(draw, (loc.requires_grad_(True),))


def test_rsample_gradient_in_concentration_is_pathwise_on_sphere2():
    # D = 3 draws by the inverse CDF with the uniform fixed, so central differences
    # with the same random state agree with the gradient. Other D use the implicit
    # gradient, which is not the derivative of the sampler at a fixed random state.
    def draw(kappa):
        torch.manual_seed(5)
        return VonMisesFisher(unit(3), kappa).rsample((6,))

    kappa = torch.tensor(4.0, requires_grad=True)
    assert torch.autograd.gradcheck(draw, (kappa,), atol=1e-6)


def test_rejection_cap_warns():
    dist = VonMisesFisher(unit(5), 2.0)
    dist.max_rejection_iterations = 1
    with pytest.warns(LDMWarning, match="were not accepted within 1 rejection"):
        samples = dist.rsample((2000,))
    assert torch.allclose(samples.norm(dim=-1), torch.ones(2000), atol=1e-14)


@pytest.mark.parametrize("dim", [3, 16, 1024])
def test_log_prob_gradcheck(dim):
    mu = functional.normalize(torch.randn(2, dim), dim=-1).requires_grad_(True)
    kappa = torch.tensor([0.5, 30.0], requires_grad=True)
    x = functional.normalize(torch.randn(2, dim), dim=-1)

    def log_prob(mu, kappa):
        return VonMisesFisher(mu, kappa, validate_args=False).log_prob(x)

    assert torch.autograd.gradcheck(log_prob, (mu, kappa), fast_mode=True)


@pytest.mark.parametrize(("dim", "kappa"), [(2, 0.4), (5, 12.0), (1024, 300.0)])
def test_concentration_gradient_matches_finite_differences(dim, kappa):
    # d/dk log p(x) = mu^T x - A_D(k): checked against central differences and
    # against the mpmath ratio.
    mu = functional.normalize(torch.randn(dim), dim=0)
    x = functional.normalize(torch.randn(dim), dim=0)
    k = torch.tensor(kappa, requires_grad=True)
    VonMisesFisher(mu, k).log_prob(x).backward()
    h = 1e-5 * kappa
    plus = VonMisesFisher(mu, kappa + h).log_prob(x).item()
    minus = VonMisesFisher(mu, kappa - h).log_prob(x).item()
    assert k.grad.item() == pytest.approx((plus - minus) / (2 * h), rel=1e-6, abs=1e-9)
    reference = (mu @ x).item() - mp_log_normalizer_and_ratio(dim, kappa)[1]
    assert k.grad.item() == pytest.approx(reference, rel=1e-12, abs=1e-14)


def test_concentration_gradient_continuous_at_zero():
    # At k = 0 the gradient is mu^T x - A_D(0) = mu^T x; one-sided differences
    # from k > 0 approach it.
    mu, x = unit(4), functional.normalize(torch.tensor([0.5, 1.0, 0.0, 0.0]), dim=0)
    k = torch.tensor(0.0, requires_grad=True)
    VonMisesFisher(mu, k).log_prob(x).backward()
    assert k.grad.item() == pytest.approx((mu @ x).item(), rel=1e-15)
    h = 1e-7
    forward = (
        VonMisesFisher(mu, h).log_prob(x) - VonMisesFisher(mu, 0.0).log_prob(x)
    ) / h
    assert forward.item() == pytest.approx((mu @ x).item(), abs=1e-6)


def test_zero_concentration_is_uniform():
    dim = 7
    dist = VonMisesFisher(functional.normalize(torch.randn(dim), dim=0), 0.0)
    uniform = HypersphericalUniform(dim)
    x = functional.normalize(torch.randn(10, dim), dim=-1)
    assert torch.allclose(dist.log_prob(x), uniform.log_prob(x), rtol=1e-15)
    assert dist.entropy().item() == pytest.approx(uniform.entropy().item(), rel=1e-15)
    assert torch.distributions.kl_divergence(dist, uniform).item() == 0.0


@pytest.mark.parametrize(("dim", "kappa"), [(2, 1.0), (3, 100.0), (128, 800.0)])
def test_entropy_and_kl_match_mpmath(dim, kappa):
    # H = -log C_D(k) - k A_D(k), KL(vMF || uniform) = log |S^(D-1)| - H.
    log_c, ratio = mp_log_normalizer_and_ratio(dim, kappa)
    entropy = -log_c - kappa * ratio
    log_area = math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)
    dist = VonMisesFisher(unit(dim), kappa)
    assert dist.entropy().item() == pytest.approx(entropy, rel=1e-12)
    kl = torch.distributions.kl_divergence(dist, HypersphericalUniform(dim))
    assert kl.item() == pytest.approx(log_area - entropy, rel=1e-12)


def test_entropy_matches_monte_carlo():
    # -E[log p(x)] over samples, within 5 standard errors.
    dist = VonMisesFisher(functional.normalize(torch.randn(10), dim=0), 6.0)
    log_p = dist.log_prob(dist.sample((20000,)))
    standard_error = log_p.std().item() / math.sqrt(20000)
    assert abs(-log_p.mean().item() - dist.entropy().item()) <= 5 * standard_error


def test_kl_small_concentration_has_no_cancellation():
    # KL = k A_D(k) - G(k) ~ k^2 / (2 D) for small k (series of I_nu).
    dim, kappa = 64, 1e-5
    kl = torch.distributions.kl_divergence(
        VonMisesFisher(unit(dim), kappa), HypersphericalUniform(dim)
    )
    assert kl.item() == pytest.approx(kappa**2 / (2 * dim), rel=1e-6)


def test_kl_dimension_mismatch():
    with pytest.raises(ValueError, match="same dimension"):
        torch.distributions.kl_divergence(
            VonMisesFisher(unit(3), 1.0), HypersphericalUniform(4)
        )


def test_batch_shapes_and_expand():
    loc = functional.normalize(torch.randn(4, 1, 5), dim=-1)
    kappa = torch.tensor([1.0, 2.0, 3.0])
    dist = VonMisesFisher(loc, kappa)
    assert dist.batch_shape == (4, 3)
    assert dist.event_shape == (5,)
    assert dist.sample((2,)).shape == (2, 4, 3, 5)
    x = functional.normalize(torch.randn(4, 3, 5), dim=-1)
    assert dist.log_prob(x).shape == (4, 3)
    assert dist.entropy().shape == (4, 3)
    assert dist.mean.shape == (4, 3, 5)
    expanded = VonMisesFisher(loc[0, 0], 2.0).expand((6, 2))
    assert expanded.batch_shape == (6, 2)
    assert expanded.sample().shape == (6, 2, 5)
    single = VonMisesFisher(loc[0, 0], 2.0)
    assert torch.allclose(expanded.log_prob(x[0, 0]), single.log_prob(x[0, 0]))


def test_validation_errors():
    with pytest.raises(ValueError, match="ambient dimension D >= 2"):
        VonMisesFisher(torch.tensor([1.0]), 1.0)
    with pytest.raises(ValueError, match=r"loc must have unit norm.*norm of 2\.0"):
        VonMisesFisher(torch.tensor([2.0, 0.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match=r"loc must have unit norm.*norm of 0\.0"):
        VonMisesFisher(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="concentration must be finite and >= 0"):
        VonMisesFisher(unit(3), -1.0)
    with pytest.raises(ValueError, match="concentration must be finite and >= 0"):
        VonMisesFisher(unit(3), float("nan"))
    with pytest.raises(ValueError, match="does not broadcast"):
        VonMisesFisher(unit(3).expand(4, 3), torch.ones(5))
    with pytest.raises(TypeError, match="loc must be a torch.Tensor"):
        VonMisesFisher([1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="Expected value argument"):
        VonMisesFisher(unit(3), 1.0).log_prob(torch.tensor([2.0, 0.0, 0.0]))
    # Without validation, a non-unit loc is the caller's responsibility.
    VonMisesFisher(torch.tensor([2.0, 0.0]), 1.0, validate_args=False)


def test_kernel_is_normalized_by_default():
    kernel = VonMisesFisherKernel(concentration=5.0)
    z = functional.normalize(torch.randn(8, 16), dim=-1)
    z_prime = functional.normalize(torch.randn(8, 16), dim=-1)
    dist = kernel(z)
    assert isinstance(dist, VonMisesFisher)
    reference = VonMisesFisher(z, 5.0).log_prob(z_prime)
    assert torch.allclose(dist.log_prob(z_prime), reference, rtol=1e-12)
    unnormalized = VonMisesFisherKernel(concentration=5.0, normalized=False)(z)
    assert isinstance(unnormalized, UnnormalizedVonMisesFisher)


def test_kernel_learnable_concentration_gets_gradient():
    kernel = VonMisesFisherKernel(
        concentration=5.0, learnable=True, max_concentration=50
    )
    z = functional.normalize(torch.randn(8, 16), dim=-1)
    z_prime = functional.normalize(z + 0.1 * torch.randn(8, 16), dim=-1)
    log_prob = kernel(z).log_prob(z_prime).mean()
    log_prob.backward()
    beta = kernel.concentration.item()
    assert 0 < beta < 50
    # d/dbeta mean log p = mean(z^T z') - A_D(beta), times d beta / d raw.
    ratio = mp_log_normalizer_and_ratio(16, beta)[1]
    expected = ((z * z_prime).sum(-1).mean().item() - ratio) * beta * (1 - beta / 50)
    assert kernel.raw_concentration.grad.item() == pytest.approx(expected, rel=1e-10)


def test_sphere2_inverse_cdf_gradient_in_concentration():
    # On S^2, E[mu^T x] = A_3(k) = coth(k) - 1/k, so its derivative in k is
    # 1/k^2 - 1/sinh(k)^2. The inverse-CDF sampler's pathwise gradient is exact.
    kappa = torch.tensor(1.0, requires_grad=True)
    dist = VonMisesFisher(unit(3), kappa)
    mean_cosine = dist.rsample((200_000,))[:, 0].mean()
    (grad,) = torch.autograd.grad(mean_cosine, kappa)
    exact = 1.0 / 1.0**2 - 1.0 / math.sinh(1.0) ** 2
    assert grad.item() == pytest.approx(exact, abs=0.01)


def exact_mean_cosine_derivative(dim: int, kappa: float) -> float:
    """Return d/dk A_D(k) = 1 - A^2 - (D - 1) A / k, with A from mpmath."""
    ratio = mp_log_normalizer_and_ratio(dim, kappa)[1]
    return 1.0 - ratio**2 - (dim - 1) * ratio / kappa


def mp_cosine_derivative(dim: int, kappa: float, one_minus_cosine: float) -> float:
    """Reference dw/dk = -(dF/dk) / p(w) from mpmath quadrature of the CDF of w.

    dF/dk is a central difference with step 1e-6 k, evaluated at 30 digits, so its
    relative truncation error is about 1e-12.
    """
    with mpmath.workdps(30):
        k = mpmath.mpf(kappa)
        w = 1 - mpmath.mpf(one_minus_cosine)
        exponent = (mpmath.mpf(dim) - 3) / 2
        mean = mp_log_normalizer_and_ratio(dim, kappa)[1]
        spread = math.sqrt(exact_mean_cosine_derivative(dim, kappa))
        # Break points around the mass so that tanh-sinh resolves the peak.
        points = sorted(
            {mpmath.mpf(-1), mpmath.mpf(1), w}
            | {mpmath.mpf(mean + j * spread) for j in range(-12, 13)}
        )
        points = [t for t in points if -1 <= t <= 1]

        def unnormalized(t, concentration):
            return mpmath.exp(concentration * (t - 1)) * ((1 - t) * (1 + t)) ** exponent

        def total(concentration):
            return mpmath.quad(lambda t: unnormalized(t, concentration), points)

        def cdf(concentration):
            below = [t for t in points if t < w] + [w]
            part = mpmath.quad(lambda t: unnormalized(t, concentration), below)
            return part / total(concentration)

        step = k * mpmath.mpf("1e-6")
        cdf_derivative = (cdf(k + step) - cdf(k - step)) / (2 * step)
        density = unnormalized(w, k) / total(k)
        return float(-cdf_derivative / density)


@pytest.mark.parametrize(
    ("dim", "kappa", "rel"),
    [
        (2, 3.0, 1e-10),
        (5, 1.0, 1e-10),
        (16, 10.0, 1e-10),
        (128, 50.0, 1e-10),
        (1024, 500.0, 1e-10),
        (4096, 1e4, 1e-10),
        # At k = 1e6 the error is set by the rounding of 1 - A_D(k) ~ 1e-6.
        (4, 1e6, 1e-8),
    ],
)
def test_cosine_derivative_matches_mpmath_cdf(dim, kappa, rel):
    mean = mp_log_normalizer_and_ratio(dim, kappa)[1]
    spread = math.sqrt(exact_mean_cosine_derivative(dim, kappa))
    # Points below the mean, at it and above it (each side of the split at A),
    # kept inside (-1, 1) for skewed distributions.
    cosines = [
        max(mean - 2.5 * spread, (mean - 1.0) / 2),
        mean - 1e-3 * spread,
        min(mean + 1.5 * spread, (mean + 1.0) / 2),
    ]
    one_minus = torch.tensor([1.0 - c for c in cosines])
    derivative = _cosine_derivative(one_minus, torch.tensor(kappa), dim)
    for value, omw in zip(derivative.tolist(), one_minus.tolist(), strict=True):
        reference = mp_cosine_derivative(dim, kappa, omw)
        assert value == pytest.approx(reference, rel=rel), (dim, kappa, omw)


def mp_sphere2_cdf(kappa, cosine):
    """CDF of w on S^2 in closed form, expm1(k (w + 1)) / expm1(2 k)."""
    return mpmath.expm1(kappa * (cosine + 1)) / mpmath.expm1(2 * kappa)


def test_cosine_derivative_matches_sphere2_closed_form():
    # dw/dk = -(dF/dk) / (dF/dw) with the closed-form CDF of S^2, both partial
    # derivatives by mpmath at 40 digits.
    uniform = torch.tensor([1e-6, 0.1, 0.5, 0.9, 0.999999])
    for kappa in (1e-3, 0.7, 25.0, 3e4):
        k = torch.tensor(kappa)
        one_minus = -torch.log1p((1.0 - uniform) * torch.expm1(-2.0 * k)) / k
        derivative = _cosine_derivative(one_minus, k, 3)
        for value, omw in zip(derivative.tolist(), one_minus.tolist(), strict=True):
            with mpmath.workdps(40):
                point = (mpmath.mpf(kappa), 1 - mpmath.mpf(omw))
                in_kappa = mpmath.diff(mp_sphere2_cdf, point, (1, 0))
                in_cosine = mpmath.diff(mp_sphere2_cdf, point, (0, 1))
                reference = float(-in_kappa / in_cosine)
            assert value == pytest.approx(reference, rel=1e-10), (kappa, omw)


def test_cosine_derivative_at_poles():
    # At w = 1 and w = -1 the quantile cannot move, so dw/dk = 0; next to the poles
    # the derivative is finite and nonnegative.
    for dim in (2, 4, 4096):
        for kappa in (0.0, 1e-6, 2.0, 1e6):
            one_minus = torch.tensor([0.0, 1e-300, 1e-12, 1.0, 2.0 - 1e-12, 2.0])
            derivative = _cosine_derivative(one_minus, torch.tensor(kappa), dim)
            assert torch.isfinite(derivative).all(), (dim, kappa)
            assert (derivative >= 0).all(), (dim, kappa)
            assert derivative[0].item() == 0.0
            assert derivative[-1].item() == 0.0


@pytest.mark.parametrize(
    ("dim", "kappa", "n"),
    [(2, 1.0, 5000), (5, 1.0, 5000), (16, 10.0, 5000), (128, 50.0, 8000)]
    + [(1024, 500.0, 2000)],
)
def test_rsample_concentration_gradient_is_unbiased(dim, kappa, n):
    # E[d(mu^T x)/dk] = d/dk E[mu^T x] = A_D'(k), the formula written out with A
    # from mpmath; tolerance 5 standard errors of the mean per-sample gradient.
    # The gradient of Wood's transform at a fixed Beta draw, without the
    # correction term, misses this by 11 to 70 standard errors at these sizes for
    # D = 2, 5, 16 and 128. At D = 1024 its bias is below the noise.
    mu = functional.normalize(torch.randn(dim), dim=0)
    kappa_per_sample = torch.full((n,), kappa, requires_grad=True)
    samples = VonMisesFisher(mu, kappa_per_sample).rsample()
    (samples @ mu).sum().backward()
    gradient = kappa_per_sample.grad
    assert (gradient > 0).all()
    reference = exact_mean_cosine_derivative(dim, kappa)
    standard_error = gradient.std().item() / math.sqrt(n)
    assert abs(gradient.mean().item() - reference) <= 5 * standard_error


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rsample_concentration_gradient_finite_at_extremes(dtype):
    for dim in (4, 4096):
        for kappa in (0.0, 1e-6, 1e6):
            mu = unit(dim, dtype=dtype)
            k = torch.tensor(kappa, dtype=dtype, requires_grad=True)
            samples = VonMisesFisher(mu, k).rsample((200,))
            (samples @ mu).sum().backward()
            assert k.grad.dtype == dtype
            assert torch.isfinite(k.grad), (dim, kappa, dtype)
            assert k.grad.item() > 0, (dim, kappa, dtype)
