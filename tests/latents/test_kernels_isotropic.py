import math

import torch

from ldm_pyro.latents.kernels import GaussianKernel, IsotropicNormal


def test_isotropic_normal_matches_torch_normal():
    loc, value = torch.randn(7, 5), torch.randn(7, 5)
    expected = torch.distributions.Normal(loc, 0.3).log_prob(value).sum(-1)
    actual = IsotropicNormal(loc, torch.tensor(0.3)).log_prob(value)
    assert torch.allclose(actual, expected, rtol=1e-12)


def test_isotropic_normal_expand_and_sample():
    dist = IsotropicNormal(torch.zeros(5), torch.tensor(2.0)).expand((4000,))
    samples = dist.sample()
    assert samples.shape == (4000, 5)
    # The sample variance of 20 000 draws is within a few standard errors of 4.
    assert abs(samples.var().item() - 4.0) < 5 * 4.0 * math.sqrt(2 / 20000)


def test_gaussian_kernel_scale_gradient():
    kernel = GaussianKernel(0.5, learnable=True)
    z, z_prime = torch.randn(6, 3), torch.randn(6, 3)
    kernel(z).log_prob(z_prime).sum().backward()
    # d/d log(sigma) of sum(-|x - mu|^2 / (2 sigma^2) - D log sigma).
    expected = ((z_prime - z).pow(2).sum() / 0.25 - 6 * 3).item()
    assert math.isclose(kernel.log_scale.grad.item(), expected, rel_tol=1e-10)
