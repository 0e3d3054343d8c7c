import numpy as np
import pytest
import torch
from scipy import stats

from ldm_pyro.distributions import GeneralizedNormal

BETAS = [0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize("beta", BETAS)
def test_log_prob_matches_scipy(beta):
    # Reference: scipy.stats.gennorm(beta, loc, scale).logpdf.
    loc, scale = 0.3, 1.7
    x = torch.linspace(-6.0, 6.0, 41)
    dist = GeneralizedNormal(loc, scale, beta)
    expected = stats.gennorm(beta, loc=loc, scale=scale).logpdf(x.numpy())
    np.testing.assert_allclose(dist.log_prob(x).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("beta", BETAS)
def test_moments_and_entropy_match_scipy(beta):
    reference = stats.gennorm(beta, loc=-0.4, scale=0.8)
    dist = GeneralizedNormal(torch.tensor(-0.4), torch.tensor(0.8), torch.tensor(beta))
    assert float(dist.mean) == pytest.approx(reference.mean(), abs=1e-12)
    assert float(dist.variance) == pytest.approx(reference.var(), rel=1e-10)
    assert float(dist.entropy()) == pytest.approx(reference.entropy(), rel=1e-10)


@pytest.mark.parametrize("beta", [0.7, 2.0, 4.0])
def test_cdf_matches_scipy(beta):
    x = torch.linspace(-3.0, 3.0, 13)
    dist = GeneralizedNormal(0.0, 1.2, beta)
    expected = stats.gennorm(beta, scale=1.2).cdf(x.numpy())
    np.testing.assert_allclose(dist.cdf(x).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.0, 4.0])
def test_samples_follow_scipy_cdf(beta):
    # Kolmogorov-Smirnov test against scipy's gennorm CDF; the seeded draw gives
    # a fixed p-value, and 1e-3 is the suite-wide false-alarm rate.
    samples = GeneralizedNormal(0.5, 2.0, beta).sample((5000,))
    result = stats.kstest(samples.numpy(), stats.gennorm(beta, loc=0.5, scale=2.0).cdf)
    assert result.pvalue > 1e-3


def test_sample_shape_broadcasts_parameters():
    dist = GeneralizedNormal(torch.zeros(3), torch.ones(2, 1), 4.0)
    assert dist.batch_shape == (2, 3)
    assert dist.sample((5,)).shape == (5, 2, 3)
    assert dist.expand((4, 2, 3)).sample().shape == (4, 2, 3)


def test_rsample_gradient_is_finite():
    loc = torch.tensor(0.2, requires_grad=True)
    scale = torch.tensor(1.5, requires_grad=True)
    beta = torch.tensor(3.0, requires_grad=True)
    sample = GeneralizedNormal(loc, scale, beta).rsample((200,))
    sample.pow(2).mean().backward()
    for parameter in (loc, scale, beta):
        assert torch.isfinite(parameter.grad)


def test_log_prob_gradcheck():
    # torch.autograd.gradcheck: analytic against finite-difference derivatives.
    x = torch.tensor([-1.3, 0.4, 2.2])
    loc = torch.tensor(0.1, requires_grad=True)
    scale = torch.tensor(0.9, requires_grad=True)
    beta = torch.tensor(1.7, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m, s, b: GeneralizedNormal(m, s, b).log_prob(x), (loc, scale, beta)
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_log_prob_gradient_finite_at_location(beta):
    x = torch.tensor([0.0], requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    GeneralizedNormal(0.0, 1.0, b).log_prob(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(b.grad)


def test_invalid_scale_rejected():
    with pytest.raises(ValueError, match="scale"):
        GeneralizedNormal(0.0, -1.0, 2.0, validate_args=True)


def test_invalid_beta_rejected():
    with pytest.raises(ValueError, match="beta"):
        GeneralizedNormal(0.0, 1.0, 0.0, validate_args=True)
