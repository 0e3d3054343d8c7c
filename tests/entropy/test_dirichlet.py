"""Tests of the Dirichlet kernel and the simplex KDE entropy."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from ldm_pyro.entropy import DirichletKDEEntropy
from ldm_pyro.latents import DirichletKernel, SimplexUniformPrior
from ldm_pyro.latents.simplex import dirichlet_log_density


def test_dirichlet_log_density_matches_scipy():
    # Reference: scipy.stats.dirichlet.logpdf.
    z = torch.softmax(torch.randn(5, 4), -1)
    z_prime = torch.softmax(torch.randn(5, 4), -1)
    tau = 7.0
    ours = DirichletKernel(tau)(z).log_prob(z_prime)
    for i in range(5):
        alpha = tau * z[i].numpy() + 1
        expected = stats.dirichlet.logpdf(z_prime[i].numpy(), alpha)
        assert math.isclose(float(ours[i]), expected, rel_tol=1e-10)


def test_simplex_uniform_prior_is_log_gamma_n():
    z = torch.softmax(torch.randn(3, 5), -1)
    log_density = SimplexUniformPrior()(z).log_prob(z)
    torch.testing.assert_close(log_density, torch.full((3,), math.lgamma(5)))


def test_dirichlet_kde_entropy_matches_loop():
    # Reference: -(1/N) sum_i log (1/(N-1)) sum_{j != i} Dir(z_i; tau z_j + 1),
    # each density from scipy.
    z = torch.softmax(torch.randn(6, 3), -1)
    tau = 4.0
    matrix = np.array(
        [
            [
                stats.dirichlet.logpdf(z[i].numpy(), tau * z[j].numpy() + 1)
                for j in range(6)
            ]
            for i in range(6)
        ]
    )
    loo = matrix.copy()
    np.fill_diagonal(loo, -np.inf)
    expected = -np.mean(special.logsumexp(loo, axis=1) - math.log(5))
    estimate = DirichletKDEEntropy(tau)(z)
    assert math.isclose(float(estimate), expected, rel_tol=1e-10)
    with_self = -np.mean(special.logsumexp(matrix, axis=1) - math.log(6))
    estimate = DirichletKDEEntropy(tau, leave_one_out=False)(z)
    assert math.isclose(float(estimate), with_self, rel_tol=1e-10)


def test_dirichlet_kde_joint_is_product_kernel():
    z = torch.softmax(torch.randn(5, 3), -1)
    z_prime = torch.softmax(torch.randn(5, 3), -1)
    tau = 3.0
    log_kernel = torch.stack(
        [
            dirichlet_log_density(z[i], tau * z + 1)
            + dirichlet_log_density(z_prime[i], tau * z_prime + 1)
            for i in range(5)
        ]
    )
    log_kernel.fill_diagonal_(-math.inf)
    expected = -(torch.logsumexp(log_kernel, 1) - math.log(4)).mean()
    torch.testing.assert_close(DirichletKDEEntropy(tau)(z, z_prime), expected)


def test_dirichlet_kde_gradcheck():
    estimator = DirichletKDEEntropy(2.0)

    def entropy(logits):
        return estimator(torch.softmax(logits, -1))

    assert torch.autograd.gradcheck(entropy, (torch.randn(5, 3).requires_grad_(),))


def test_dirichlet_kernel_finite_at_zero_coordinate():
    z = torch.tensor([[1.0, 0.0, 0.0]])
    value = torch.tensor([[0.0, 0.5, 0.5]], requires_grad=True)
    log_density = DirichletKernel(5.0)(z).log_prob(value)
    log_density.sum().backward()
    assert torch.isfinite(log_density).all()
    assert torch.isfinite(value.grad).all()


def test_dirichlet_kernel_rejects_bad_concentration():
    with pytest.raises(ValueError, match="concentration"):
        DirichletKernel(0.0)
