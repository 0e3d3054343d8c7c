"""Tests of the exact categorical entropy and the categorical LDM objective."""

import math

import torch

from ldm_pyro import LDMObjective
from ldm_pyro.entropy import CategoricalEntropy
from ldm_pyro.latents import (
    CategoricalMatchKernel,
    CategoricalUniformPrior,
    PairedViewModel,
)


def test_categorical_entropy_hand_computation():
    # Hand computation: R = mean rows = (0.5, 0.5) -> H = log 2.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(CategoricalEntropy()(q), torch.tensor(math.log(2)))
    # Joint of q with itself: R(k, k') = diag(0.5, 0.5) -> H = log 2.
    torch.testing.assert_close(CategoricalEntropy()(q, q), torch.tensor(math.log(2)))
    # Independent codes: R(k, k') = 1/4 each -> H = log 4.
    q_prime = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    torch.testing.assert_close(
        CategoricalEntropy()(q, q_prime), torch.tensor(math.log(4))
    )


def test_categorical_ldm_objective_hand_computation():
    # F = beta sum_k <R(k|x) R(k|x')> - log(e^beta + n - 1) - log n + H_R[z, z'].
    n, p = 3, 0.9
    beta = math.log(p * (n - 1) / (1 - p))
    q = torch.softmax(torch.randn(5, n), -1)
    q_prime = torch.softmax(torch.randn(5, n), -1)
    model = PairedViewModel(
        CategoricalUniformPrior(), CategoricalMatchKernel(p, categories=n)
    )
    terms = LDMObjective(model, CategoricalEntropy())(q, q_prime)
    joint = torch.einsum("ik,il->kl", q, q_prime) / 5
    entropy = -(joint * joint.log()).sum()
    alignment = beta * (q * q_prime).sum(-1).mean() - math.log(math.exp(beta) + n - 1)
    alignment = alignment - math.log(n)
    torch.testing.assert_close(terms.alignment, alignment)
    torch.testing.assert_close(terms.entropy, entropy)
    # P(k' = k) under the kernel equals p.
    assert math.isclose(math.exp(beta) / (math.exp(beta) + n - 1), p)


def test_categorical_entropy_gradient_finite_at_empty_category():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    CategoricalEntropy()(q).backward()
    assert torch.isfinite(q.grad).all()
