import math

import pytest
import torch
from torch.nn import functional

from ldm_pyro.entropy import (
    ESTIMATORS,
    VICRegEntropy,
    vicreg_covariance,
    vicreg_invariance,
    vicreg_variance,
)
from ldm_pyro.latents.kernels import GaussianKernel


def off_diagonal(x):
    # As in the VICReg reference implementation: the off-diagonal entries, flattened.
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def reference_terms(x):
    # VICReg's pseudocode (Bardes et al. 2022, Algorithm 1) for one view.
    n, d = x.shape
    std_x = torch.sqrt(x.var(dim=0) + 1e-4)
    std_loss = torch.mean(functional.relu(1 - std_x))
    x = x - x.mean(dim=0)
    cov_x = (x.T @ x) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum() / d
    return std_loss, cov_loss


def reference_vicreg_loss(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    # The full VICReg loss of the pseudocode, both views.
    repr_loss = functional.mse_loss(x, y)
    std_x, cov_x = reference_terms(x)
    std_y, cov_y = reference_terms(y)
    return (
        sim_coeff * repr_loss
        + std_coeff * (std_x + std_y)
        + cov_coeff * (cov_x + cov_y)
    )


def views(samples=32, dim=6):
    z = 0.5 * torch.randn(samples, dim) @ torch.randn(dim, dim)
    return z, z + 0.3 * torch.randn(samples, dim)


def test_terms_match_pseudocode():
    z, z_prime = views()
    std_loss, cov_loss = reference_terms(z)
    assert vicreg_variance(z).item() == pytest.approx(std_loss.item(), abs=1e-14)
    assert vicreg_covariance(z).item() == pytest.approx(cov_loss.item(), abs=1e-12)
    assert vicreg_invariance(z, z_prime).item() == pytest.approx(
        ((z - z_prime) ** 2).mean().item(), abs=1e-14
    )


def test_variance_target_and_eps():
    # Hand computation: unit-variance columns against target 2 and eps 0 give
    # relu(2 - 1) = 1 for every column.
    z = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / math.sqrt(2.0)
    assert vicreg_variance(z, eps=0.0, target_std=2.0).item() == pytest.approx(1.0)
    assert vicreg_variance(z, eps=0.0, target_std=1.0).item() == pytest.approx(0.0)


def test_estimate_is_negative_weighted_terms():
    z, _ = views()
    std_loss, cov_loss = reference_terms(z)
    estimator = VICRegEntropy(variance_weight=3.0, covariance_weight=0.5)
    expected = -(3.0 * std_loss + 0.5 * cov_loss)
    assert estimator(z).item() == pytest.approx(expected.item(), abs=1e-12)


def test_mi_form_is_minus_vicreg_loss():
    z, z_prime = views()
    estimator = VICRegEntropy()
    reference = reference_vicreg_loss(z, z_prime).item()
    assert estimator.vicreg_loss(z, z_prime).item() == pytest.approx(
        reference, abs=1e-10
    )
    objective = -25.0 * vicreg_invariance(z, z_prime) + estimator.marginal_sum(
        z, z_prime
    )
    assert objective.item() == pytest.approx(-reference, abs=1e-10)


def test_gaussian_kernel_alignment_is_invariance_term():
    # With sigma^2 = D / (2 lambda) the Gaussian kernel's mean log-density is
    # -lambda * s(z, z') minus the constant (D / 2) log(2 pi sigma^2).
    z, z_prime = views(dim=6)
    weight = 25.0
    variance = 6 / (2 * weight)
    kernel = GaussianKernel(scale=math.sqrt(variance))
    alignment = kernel(z).log_prob(z_prime).mean()
    constant = 0.5 * 6 * math.log(2 * math.pi * variance)
    expected = -weight * vicreg_invariance(z, z_prime) - constant
    assert alignment.item() == pytest.approx(expected.item(), abs=1e-10)


def test_joint_is_published_reweighted_variant():
    # Reference: the public implementation's reweighted loss (vicreg2) written out:
    # the variance hinge of each view and one covariance penalty on the 2N x D
    # stacked rows.
    z, z_prime = views()
    std_z, _ = reference_terms(z)
    std_z_prime, _ = reference_terms(z_prime)
    stacked = torch.cat([z, z_prime], dim=0)
    centered = stacked - stacked.mean(dim=0)
    cov = centered.T @ centered / (stacked.shape[0] - 1)
    cov_loss = off_diagonal(cov).pow(2).sum() / z.shape[1]
    estimator = VICRegEntropy(variance_weight=17.5, covariance_weight=0.75)
    expected = -(17.5 * (std_z + std_z_prime) + 0.75 * cov_loss)
    assert estimator(z, z_prime).item() == pytest.approx(expected.item(), abs=1e-12)


def test_gradcheck():
    z = torch.randn(8, 3, requires_grad=True)
    z_prime = torch.randn(8, 3, requires_grad=True)
    # A target above every column's standard deviation keeps the hinge active,
    # away from the kink of relu, where finite differences are not defined.
    estimator = VICRegEntropy(target_std=10.0)
    assert torch.autograd.gradcheck(estimator, (z,))
    assert torch.autograd.gradcheck(estimator, (z, z_prime))
    assert torch.autograd.gradcheck(estimator.marginal_sum, (z, z_prime))


def test_batch_too_small():
    with pytest.raises(ValueError, match="at least 2 samples, got z with 1"):
        VICRegEntropy()(torch.randn(1, 4))


@pytest.mark.parametrize(
    "name",
    ["variance_weight", "covariance_weight", "invariance_weight", "eps", "target_std"],
)
def test_bad_arguments(name):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number > 0, got 0"):
        VICRegEntropy(**{name: 0})
    with pytest.raises(
        ValueError, match=rf"{name} must be a finite number > 0, got -1"
    ):
        VICRegEntropy(**{name: -1.0})


def test_invariance_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        vicreg_invariance(torch.randn(4, 3), torch.randn(4, 2))


def test_registry_builds_vicreg():
    assert isinstance(ESTIMATORS["vicreg"](variance_weight=17.5), VICRegEntropy)
