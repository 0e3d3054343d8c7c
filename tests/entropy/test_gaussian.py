import math

import numpy as np
import pytest
import torch

from ldm_pyro.entropy import ESTIMATORS, GaussianEntropy, GaussianExpansionEntropy

SQUARE = [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]


def gaussian_constant(dim):
    return 0.5 * dim * (1.0 + math.log(2.0 * math.pi))


@pytest.mark.parametrize("method", ["cholesky", "slogdet"])
def test_square_fixed_case(method):
    # Hand computation: the unbiased covariance of the square's corners is (4/3) I,
    # so log|Sigma| = 2 log(4/3).
    z = torch.tensor(SQUARE)
    estimator = GaussianEntropy(method=method, ridge=0.0)
    assert estimator.log_det(z).item() == pytest.approx(0.5753641449035617, abs=1e-14)
    assert estimator(z).item() == pytest.approx(3.125559138861126, abs=1e-14)
    no_constant = GaussianEntropy(method=method, ridge=0.0, include_constant=False)
    assert no_constant(z).item() == pytest.approx(0.5753641449035617 / 2, abs=1e-14)


@pytest.mark.parametrize("method", ["cholesky", "slogdet"])
def test_log_det_matches_numpy(method):
    # Reference: numpy.linalg.slogdet of numpy.cov (divisor N - 1).
    generator = np.random.default_rng(1)
    mixing = generator.normal(size=(5, 5))
    data = generator.normal(size=(40, 5)) @ mixing
    reference_sign, reference = np.linalg.slogdet(np.cov(data, rowvar=False))
    assert reference_sign > 0
    estimator = GaussianEntropy(method=method, ridge=0.0)
    value = estimator(torch.from_numpy(data)).item()
    assert value == pytest.approx(0.5 * reference + gaussian_constant(5), abs=1e-10)


def test_ridge_added_to_diagonal():
    # Reference: numpy slogdet of cov + ridge * I.
    generator = np.random.default_rng(2)
    data = generator.normal(size=(10, 4))
    ridge = 0.3
    _, reference = np.linalg.slogdet(np.cov(data, rowvar=False) + ridge * np.eye(4))
    estimator = GaussianEntropy(ridge=ridge, include_constant=False)
    assert estimator(torch.from_numpy(data)).item() == pytest.approx(
        0.5 * reference, abs=1e-12
    )


def test_joint_is_concatenation():
    z = torch.randn(30, 2)
    z_prime = z @ torch.randn(2, 2) + 0.5 * torch.randn(30, 2)
    estimator = GaussianEntropy()
    assert estimator(z, z_prime).item() == pytest.approx(
        estimator(torch.cat([z, z_prime], dim=1)).item(), abs=1e-14
    )


def test_large_sample_close_to_true_entropy():
    # Reference: closed-form entropy of N(0, Sigma). With N = 20000 in d = 3 the
    # standard error of the log-determinant estimate is about sqrt(2 d / N) / 2.
    covariance = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    samples = torch.distributions.MultivariateNormal(torch.zeros(3), covariance).sample(
        (20000,)
    )
    truth = gaussian_constant(3) + 0.5 * torch.logdet(covariance).item()
    assert GaussianEntropy()(samples).item() == pytest.approx(truth, abs=0.03)


def test_singular_covariance_raises():
    z = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"not positive definite.*larger ridge.*N > 5"):
        GaussianEntropy(ridge=0.0)(z)
    with pytest.raises(ValueError, match=r"not positive definite"):
        GaussianEntropy(method="slogdet", ridge=0.0)(torch.zeros(4, 2))


def test_ridge_makes_singular_covariance_finite():
    z = torch.randn(3, 5)
    assert torch.isfinite(GaussianEntropy(ridge=1e-3)(z))


@pytest.mark.parametrize("method", ["cholesky", "slogdet"])
def test_gradcheck(method):
    z = torch.randn(8, 3, requires_grad=True)
    assert torch.autograd.gradcheck(GaussianEntropy(method=method), (z,))


def test_float32_matches_float64():
    # float32 accumulates rounding in the covariance; 1e-4 covers it for this size.
    z = torch.randn(64, 8)
    reference = GaussianEntropy()(z).item()
    value = GaussianEntropy()(z.float())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference, abs=1e-4)


def test_batch_too_small():
    with pytest.raises(ValueError, match="at least 2 samples, got z with 1"):
        GaussianEntropy()(torch.randn(1, 3))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"method": "qr"},
            r"method must be one of \('cholesky', 'slogdet'\), got 'qr'",
        ),
        ({"ridge": -1.0}, r"ridge must be a finite number >= 0, got -1.0"),
        ({"ridge": float("nan")}, r"ridge must be a finite number >= 0"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianEntropy(**kwargs)


def test_bad_include_constant():
    with pytest.raises(TypeError, match="include_constant must be True or False"):
        GaussianEntropy(include_constant="yes")


def test_expansion_two_by_two_rho_half():
    # Hand computation: for unit variances and correlation 0.5 the exact
    # log-determinant is log(0.75) = -0.2877, the second-order expansion
    # -1/2 * 2 * 0.25 = -0.25 and the published rho^4 form -0.0625.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    z = z @ torch.linalg.cholesky(torch.tensor([[1.0, 0.5], [0.5, 1.0]])).T
    z = z * math.sqrt(3.0 / 4.0)  # unit sample variances
    covariance = np.cov(z.numpy(), rowvar=False)
    assert covariance == pytest.approx(np.array([[1.0, 0.5], [0.5, 1.0]]), abs=1e-14)
    assert math.log(0.75) == pytest.approx(-0.2877, abs=1e-4)
    expansion = GaussianExpansionEntropy(eps=0.0)
    assert expansion.log_det(z).item() == pytest.approx(-0.25, abs=1e-14)
    published = GaussianExpansionEntropy(eps=0.0, published_rho4=True)
    assert published.log_det(z).item() == pytest.approx(-0.0625, abs=1e-14)
    assert expansion(z).item() == pytest.approx(gaussian_constant(2) - 0.125, abs=1e-14)


def test_expansion_close_to_exact_for_weak_correlation():
    # Reference: numpy slogdet. The error of the second-order expansion is
    # O(rho^3); with correlations about 0.05 it is below 1e-3.
    generator = np.random.default_rng(3)
    data = generator.normal(size=(4000, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    _, reference = np.linalg.slogdet(np.cov(data, rowvar=False))
    expansion = GaussianExpansionEntropy(eps=0.0, include_constant=False)
    assert 2 * expansion(torch.from_numpy(data)).item() == pytest.approx(
        reference, abs=1e-3
    )


def test_expansion_gradcheck():
    z = torch.randn(8, 3, requires_grad=True)
    assert torch.autograd.gradcheck(GaussianExpansionEntropy(), (z,))
    assert torch.autograd.gradcheck(GaussianExpansionEntropy(published_rho4=True), (z,))


def test_expansion_defined_when_n_below_d():
    z = torch.randn(4, 10)
    assert torch.isfinite(GaussianExpansionEntropy()(z))


def test_expansion_bad_eps():
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -0.1"):
        GaussianExpansionEntropy(eps=-0.1)


def test_registry_builds_gaussian_estimators():
    assert isinstance(ESTIMATORS["gaussian"](ridge=1e-4), GaussianEntropy)
    assert isinstance(ESTIMATORS["gaussian-expansion"](), GaussianExpansionEntropy)
