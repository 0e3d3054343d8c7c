import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import special, stats
from torch.nn import functional

from ldm_pyro.entropy import ESTIMATORS, KDEEntropy
from ldm_pyro.entropy.kde import _vmf_log_normalizer


def brute_force_gaussian_kde(points, variance, leave_one_out):
    # Reference: scipy.stats.multivariate_normal densities and scipy logsumexp.
    samples, dim = points.shape
    log_densities = []
    for i in range(samples):
        log_kernels = [
            stats.multivariate_normal.logpdf(
                points[i], mean=points[j], cov=variance * np.eye(dim)
            )
            for j in range(samples)
            if not (leave_one_out and j == i)
        ]
        log_densities.append(
            special.logsumexp(log_kernels) - math.log(len(log_kernels))
        )
    return -float(np.mean(log_densities))


def mpmath_vmf_log_normalizer(dim, kappa):
    # Reference: log C_D(kappa) with the Bessel function from mpmath at 50 digits.
    with mpmath.workdps(50):
        order = mpmath.mpf(dim) / 2 - 1
        value = (
            order * mpmath.log(kappa)
            - mpmath.mpf(dim) / 2 * mpmath.log(2 * mpmath.pi)
            - mpmath.log(mpmath.besseli(order, kappa))
        )
        return float(value)


def brute_force_vmf_kde(points, kappa, leave_one_out):
    # Reference: a double loop over vMF log-densities with the mpmath normalizer.
    samples, dim = points.shape
    log_normalizer = mpmath_vmf_log_normalizer(dim, kappa)
    log_densities = []
    for i in range(samples):
        log_kernels = [
            log_normalizer + kappa * float(points[i] @ points[j])
            for j in range(samples)
            if not (leave_one_out and j == i)
        ]
        log_densities.append(
            special.logsumexp(log_kernels) - math.log(len(log_kernels))
        )
    return -float(np.mean(log_densities))


def nt_xent(z, z_prime, temperature):
    # Standard NT-Xent (SimCLR): 2N anchors, cosine similarity, the positive in the
    # denominator, the anchor itself excluded.
    views = functional.normalize(torch.cat([z, z_prime], dim=0), dim=1)
    samples = z.shape[0]
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(2 * samples, dtype=torch.bool), -math.inf)
    positive = torch.cat([torch.arange(samples, 2 * samples), torch.arange(samples)])
    anchors = torch.arange(2 * samples)
    return (torch.logsumexp(logits, dim=1) - logits[anchors, positive]).mean()


def unit_rows(samples, dim, dtype=torch.float64):
    return functional.normalize(torch.randn(samples, dim, dtype=dtype), dim=1)


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_gaussian_matches_scipy_loop(leave_one_out):
    points = np.random.default_rng(4).normal(size=(12, 3))
    bandwidth = 0.7
    estimator = KDEEntropy(bandwidth=bandwidth, leave_one_out=leave_one_out)
    reference = brute_force_gaussian_kde(points, bandwidth**2, leave_one_out)
    assert estimator(torch.from_numpy(points)).item() == pytest.approx(
        reference, abs=1e-10
    )


def test_mean_over_coordinates_kernel():
    # The published kernel exp(-(kappa / d) |z_i - z_j|^2) is the Gaussian with
    # h^2 = d / (2 kappa); reference: scipy loop with that variance, and the
    # published expression -mean_i log(sum_j K_ij + 1e-8) written out.
    points = np.random.default_rng(5).normal(size=(10, 4))
    kappa = 5.0
    dim = points.shape[1]
    estimator = KDEEntropy(
        concentration=kappa, per_coordinate=False, leave_one_out=False
    )
    value = estimator(torch.from_numpy(points)).item()
    variance = dim / (2 * kappa)
    assert value == pytest.approx(
        brute_force_gaussian_kde(points, variance, False), abs=1e-10
    )
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    published = -np.mean(np.log(np.exp(-(kappa / dim) * squared).sum(1) + 1e-8))
    constant = math.log(len(points)) + 0.5 * dim * math.log(2 * math.pi * variance)
    assert value == pytest.approx(published + constant, abs=1e-7)


def test_gaussian_joint_is_product_of_view_kernels():
    # Reference: scipy loop over products of the two per-view Gaussian kernels.
    generator = np.random.default_rng(6)
    z = generator.normal(size=(9, 2))
    z_prime = z + 0.3 * generator.normal(size=(9, 2))
    bandwidth = 0.5
    log_densities = []
    for i in range(9):
        log_kernels = [
            stats.multivariate_normal.logpdf(z[i], z[j], bandwidth**2 * np.eye(2))
            + stats.multivariate_normal.logpdf(
                z_prime[i], z_prime[j], bandwidth**2 * np.eye(2)
            )
            for j in range(9)
            if j != i
        ]
        log_densities.append(special.logsumexp(log_kernels) - math.log(8))
    reference = -float(np.mean(log_densities))
    estimator = KDEEntropy(bandwidth=bandwidth)
    value = estimator(torch.from_numpy(z), torch.from_numpy(z_prime)).item()
    assert value == pytest.approx(reference, abs=1e-10)


@pytest.mark.parametrize(
    ("dim", "kappa"),
    [(2, 0.5), (3, 5.0), (16, 10.0), (256, 5.0), (256, 1000.0), (2048, 5.0)],
)
def test_vmf_log_normalizer_matches_mpmath(dim, kappa):
    # (2048, 5.0) underflows scipy.special.ive and exercises the series fallback.
    reference = mpmath_vmf_log_normalizer(dim, kappa)
    assert _vmf_log_normalizer(dim, kappa) == pytest.approx(
        reference, rel=1e-12, abs=1e-9
    )


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_vmf_matches_brute_force(leave_one_out):
    points = unit_rows(10, 3)
    kappa = 4.0
    estimator = KDEEntropy(
        kernel="vmf", concentration=kappa, leave_one_out=leave_one_out
    )
    reference = brute_force_vmf_kde(points.numpy(), kappa, leave_one_out)
    assert estimator(points).item() == pytest.approx(reference, abs=1e-10)


def test_vmf_joint_is_product_of_view_kernels():
    # Reference: the brute-force loop over the pair of per-view vMF kernels.
    z = unit_rows(8, 3)
    z_prime = functional.normalize(z + 0.2 * torch.randn(8, 3), dim=1)
    kappa = 3.0
    log_normalizer = mpmath_vmf_log_normalizer(3, kappa)
    log_densities = []
    for i in range(8):
        log_kernels = [
            2 * log_normalizer + kappa * float(z[i] @ z[j] + z_prime[i] @ z_prime[j])
            for j in range(8)
            if j != i
        ]
        log_densities.append(special.logsumexp(log_kernels) - math.log(7))
    reference = -float(np.mean(log_densities))
    estimator = KDEEntropy(kernel="vmf", concentration=kappa)
    assert estimator(z, z_prime).item() == pytest.approx(reference, abs=1e-10)


def test_pooled_views_match_brute_force():
    # Reference: the brute-force loop on the 2N stacked rows, times 2.
    z = unit_rows(6, 3)
    z_prime = unit_rows(6, 3)
    kappa = 2.0
    estimator = KDEEntropy(kernel="vmf", concentration=kappa, pool_views=True)
    pooled = torch.cat([z, z_prime]).numpy()
    reference = 2 * brute_force_vmf_kde(pooled, kappa, True)
    assert estimator.marginal_sum(z, z_prime).item() == pytest.approx(
        reference, abs=1e-10
    )
    unpooled = KDEEntropy(kernel="vmf", concentration=kappa)
    assert unpooled.marginal_sum(z, z_prime).item() == pytest.approx(
        unpooled(z).item() + unpooled(z_prime).item(), abs=1e-14
    )


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [(0.5, 0.239544766221885), (1.0, 0.551444713932051)],
)
def test_nt_xent_reference_fixed_values(temperature, expected):
    # Hand computation: each anchor scores its positive (similarity 1) and two
    # orthogonal rows, so the loss is log(1 + 2 exp(-1 / temperature)).
    basis = torch.eye(2)
    value = nt_xent(basis, basis, temperature).item()
    assert value == pytest.approx(expected, abs=1e-14)
    assert value == pytest.approx(math.log1p(2 * math.exp(-1 / temperature)), abs=1e-14)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 0.1, 0.01])
def test_pooled_vmf_is_nt_xent_denominator(temperature):
    z = unit_rows(16, 5)
    z_prime = functional.normalize(z + 0.3 * torch.randn(16, 5), dim=1)
    beta = 1.0 / temperature
    estimator = KDEEntropy(kernel="vmf", concentration=beta, pool_views=True)
    alignment = beta * (z * z_prime).sum(dim=1).mean()
    left = alignment + estimator.marginal_sum(z, z_prime) / 2
    right = (
        -nt_xent(z, z_prime, temperature)
        + math.log(2 * 16 - 1)
        - mpmath_vmf_log_normalizer(5, beta)
    )
    assert left.item() == pytest.approx(right.item(), abs=1e-9)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_pooled_vmf_fixed_case(temperature):
    # The fixed NT-Xent values above, through the estimator.
    basis = torch.eye(2)
    beta = 1.0 / temperature
    estimator = KDEEntropy(kernel="vmf", concentration=beta, pool_views=True)
    left = beta + estimator.marginal_sum(basis, basis) / 2
    right = -nt_xent(basis, basis, temperature) + math.log(3)
    right = right - mpmath_vmf_log_normalizer(2, beta)
    assert left.item() == pytest.approx(right.item(), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kappa", [100.0, 1000.0, 10000.0])
def test_vmf_stable_at_high_concentration(dtype, kappa):
    # A float32 Gram matrix has relative error ~1e-7, times kappa <= 1e4 in the
    # exponent; 5e-2 absolute covers the float32 comparison.
    points = unit_rows(64, 8)
    z_prime = functional.normalize(points + 0.05 * torch.randn(64, 8), dim=1)
    reference = KDEEntropy(kernel="vmf", concentration=kappa)(points).item()
    z = points.to(dtype).requires_grad_(True)
    zp = z_prime.to(dtype).requires_grad_(True)
    estimator = KDEEntropy(kernel="vmf", concentration=kappa)
    value = estimator(z)
    pooled = KDEEntropy(kernel="vmf", concentration=kappa, pool_views=True)
    total = value + estimator(z, zp) + pooled.marginal_sum(z, zp)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(z.grad).all()
    assert torch.isfinite(zp.grad).all()
    tolerance = 5e-2 if dtype == torch.float32 else 1e-9
    assert value.item() == pytest.approx(reference, abs=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_stable_at_small_bandwidth(dtype):
    points = torch.randn(64, 4, dtype=dtype, requires_grad=True)
    value = KDEEntropy(bandwidth=0.01)(points)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(points.grad).all()


def test_duplicate_points_give_finite_gradient():
    points = torch.randn(6, 3)
    points = torch.cat([points, points[:2]]).requires_grad_(True)
    for estimator in [KDEEntropy(), KDEEntropy(leave_one_out=False)]:
        estimator(points).backward()
        assert torch.isfinite(points.grad).all()


@pytest.mark.parametrize(
    "estimator",
    [
        KDEEntropy(bandwidth=0.8),
        KDEEntropy(leave_one_out=False),
        KDEEntropy(per_coordinate=False, concentration=2.0),
        KDEEntropy(kernel="vmf", concentration=3.0),
    ],
    ids=["gaussian", "self-pair", "mean-over-coordinates", "vmf"],
)
def test_gradcheck(estimator):
    z = torch.randn(7, 3, requires_grad=True)
    z_prime = torch.randn(7, 3, requires_grad=True)
    assert torch.autograd.gradcheck(estimator, (z,))
    assert torch.autograd.gradcheck(estimator, (z, z_prime))


def test_pooled_gradcheck():
    estimator = KDEEntropy(kernel="vmf", concentration=3.0, pool_views=True)
    z = torch.randn(5, 3, requires_grad=True)
    z_prime = torch.randn(5, 3, requires_grad=True)
    assert torch.autograd.gradcheck(estimator.marginal_sum, (z, z_prime))


def test_batch_too_small():
    with pytest.raises(ValueError, match="at least 2 samples, got z with 1"):
        KDEEntropy()(torch.randn(1, 3))
    assert torch.isfinite(KDEEntropy(leave_one_out=False)(torch.randn(1, 3)))


def test_vmf_rejects_one_dimensional_latents():
    with pytest.raises(ValueError, match="D >= 2, got D = 1"):
        KDEEntropy(kernel="vmf")(torch.ones(4, 1))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"kernel": "laplace"},
            r"kernel must be one of \('gaussian', 'vmf'\), got 'laplace'",
        ),
        ({"bandwidth": 0.0}, r"bandwidth must be a finite number > 0, got 0.0"),
        ({"bandwidth": -1.0}, r"bandwidth must be a finite number > 0, got -1.0"),
        ({"concentration": -5.0}, r"concentration must be a finite number > 0"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        KDEEntropy(**kwargs)


def test_bad_flag_type():
    with pytest.raises(TypeError, match="pool_views must be True or False, got 1"):
        KDEEntropy(pool_views=1)


def test_mismatched_views():
    with pytest.raises(ValueError, match="same shape"):
        KDEEntropy(pool_views=True).marginal_sum(torch.randn(4, 2), torch.randn(5, 2))


def test_registry_builds_kde():
    estimator = ESTIMATORS["kde"](kernel="vmf", concentration=10.0)
    assert isinstance(estimator, KDEEntropy)
