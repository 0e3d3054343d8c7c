"""Tests of the uniform distribution on the sphere."""

import math

import pytest
import torch

from ldm_pyro.distributions import HypersphericalUniform


@pytest.mark.parametrize("dim", [2, 3, 10, 2048])
def test_log_prob_is_minus_log_area(dim):
    # |S^(D-1)| = 2 pi^(D/2) / Gamma(D/2), written out.
    log_area = math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)
    dist = HypersphericalUniform(dim, batch_shape=(3,))
    x = dist.sample((5,))
    assert dist.log_prob(x).shape == (5, 3)
    assert torch.allclose(dist.log_prob(x), torch.full((5, 3), -log_area))
    assert torch.allclose(dist.entropy(), torch.full((3,), log_area))


def test_known_areas():
    # Circle: 2 pi; sphere S^2: 4 pi.
    assert HypersphericalUniform(2).entropy().item() == pytest.approx(
        math.log(2 * math.pi)
    )
    assert HypersphericalUniform(3).entropy().item() == pytest.approx(
        math.log(4 * math.pi)
    )


def test_samples_are_unit_and_centred():
    # E[x] = 0 and E[x x^T] = I / D; tolerance 5 standard errors (1 / sqrt(D N)).
    n, dim = 20000, 5
    x = HypersphericalUniform(dim).sample((n,))
    assert torch.allclose(x.norm(dim=-1), torch.ones(n), atol=1e-14)
    assert x.mean(0).abs().max().item() < 5 / math.sqrt(dim * n)
    second = (x.T @ x / n).diagonal()
    assert torch.allclose(
        second, torch.full((dim,), 1 / dim), atol=5 * 0.5 / math.sqrt(n)
    )


def test_expand_dtype_and_errors():
    dist = HypersphericalUniform(4, dtype=torch.float32).expand((2, 3))
    assert dist.batch_shape == (2, 3)
    assert dist.sample().dtype == torch.float32
    assert dist.sample().shape == (2, 3, 4)
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        HypersphericalUniform(1)
    with pytest.raises(ValueError, match="Expected value argument"):
        HypersphericalUniform(3).log_prob(torch.tensor([1.0, 1.0, 0.0]))
