"""Tests of the linear probe and the coverage of readout bands.

References: scikit-learn's LinearRegression and r2_score, the Gaussian quantile
from scipy, and nominal coverage on data drawn from the stated distribution.
"""

import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from ldm_pyro.evaluation import (
    empirical_coverage,
    fit_linear_probe,
    linear_readout_bands,
    sampled_readout_bands,
)


def test_probe_matches_sklearn():
    states = torch.randn(4, 50, 3)
    weight = torch.randn(2, 3)
    targets = states @ weight.T + 0.3 * torch.randn(4, 50, 2)
    probe = fit_linear_probe(states[:3], targets[:3], states[3:], targets[3:])
    reference = LinearRegression().fit(
        states[:3].reshape(-1, 3).numpy(), targets[:3].reshape(-1, 2).numpy()
    )
    torch.testing.assert_close(probe.weight, torch.as_tensor(reference.coef_))
    torch.testing.assert_close(probe.bias, torch.as_tensor(reference.intercept_))
    expected = r2_score(
        targets[3:].reshape(-1, 2).numpy(),
        reference.predict(states[3:].reshape(-1, 3).numpy()),
    )
    assert probe.r2 == pytest.approx(expected, rel=1e-10)
    assert probe.r2_per_output.shape == (2,)


def test_linear_bands_have_nominal_coverage():
    # Targets drawn from the predictive distribution N(W m + c, W P W^T): the
    # coverage of 20 000 coordinates has standard error below 0.004.
    num, state_dim = 10_000, 3
    mean = torch.randn(num, state_dim)
    x = torch.randn(num, state_dim, state_dim)
    cov = x @ x.transpose(-1, -2) / 3 + 0.1 * torch.eye(state_dim)
    weight, bias = torch.randn(2, state_dim), torch.randn(2)
    states = (
        mean + (torch.linalg.cholesky(cov) @ torch.randn(num, state_dim, 1))[..., 0]
    )
    targets = states @ weight.T + bias
    bands = linear_readout_bands(mean, cov, weight, bias)
    coverage = empirical_coverage(bands, targets)
    for level, value in coverage.items():
        assert abs(value - level) < 0.02, level


def test_sampled_bands_match_analytic_for_linear_readout():
    mean = torch.randn(20, 3)
    cov = 0.2 * torch.eye(3).expand(20, 3, 3)
    weight, bias = torch.randn(2, 3), torch.randn(2)
    analytic = linear_readout_bands(mean, cov, weight, bias)
    sampled = sampled_readout_bands(
        mean,
        cov,
        lambda h: h @ weight.T + bias,
        num_samples=20_000,
        generator=torch.Generator().manual_seed(0),
    )
    # Monte Carlo quantiles of 20 000 draws: relative error of a few percent.
    width = analytic.upper - analytic.lower
    torch.testing.assert_close(
        sampled.lower, analytic.lower, atol=0.05 * width.max(), rtol=0
    )
    torch.testing.assert_close(
        sampled.upper, analytic.upper, atol=0.05 * width.max(), rtol=0
    )


def test_errors():
    with pytest.raises(ValueError, match="at least S \\+ 1 = 4 training samples"):
        fit_linear_probe(
            torch.randn(3, 3), torch.randn(3, 1), torch.randn(5, 3), torch.randn(5, 1)
        )
    with pytest.raises(ValueError, match="same number of samples"):
        fit_linear_probe(
            torch.randn(9, 3), torch.randn(8, 1), torch.randn(5, 3), torch.randn(5, 1)
        )
    with pytest.raises(ValueError, match="levels must be numbers in"):
        linear_readout_bands(
            torch.zeros(2), torch.eye(2), torch.eye(2), torch.zeros(2), levels=(1.5,)
        )
    bands = linear_readout_bands(
        torch.zeros(2), torch.eye(2), torch.eye(2), torch.zeros(2)
    )
    with pytest.raises(ValueError, match="targets must have the shape"):
        empirical_coverage(bands, torch.zeros(3))
