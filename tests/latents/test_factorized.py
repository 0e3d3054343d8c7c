import math

import numpy as np
import pytest
import torch
from scipy import stats

from ldm_pyro import LDMObjective
from ldm_pyro.entropy import LinearJacobianEntropy, UnmixingLinear
from ldm_pyro.latents import SingleViewModel
from ldm_pyro.latents.factorized import (
    PRIORS,
    GaussianPrior,
    GeneralizedNormalPrior,
    LaplacePrior,
    LogisticPrior,
    StudentTPrior,
    make_prior,
)

LOC = [0.3, -0.5, 0.0]
SCALE = [0.7, 1.2, 2.0]


# Each case: prior, and the scipy.stats distribution it must match per dimension.
# Built inside the tests, after the fixture has set float64 as the default dtype.
def _cases():
    return {
        "laplace": (
            LaplacePrior(LOC, SCALE),
            [stats.laplace(loc=m, scale=s) for m, s in zip(LOC, SCALE, strict=True)],
        ),
        "logistic": (
            LogisticPrior(LOC, SCALE),
            [stats.logistic(loc=m, scale=s) for m, s in zip(LOC, SCALE, strict=True)],
        ),
        "generalized_normal": (
            GeneralizedNormalPrior([0.8, 2.0, 4.0], LOC, SCALE),
            [
                stats.gennorm(b, loc=m, scale=s)
                for b, m, s in zip([0.8, 2.0, 4.0], LOC, SCALE, strict=True)
            ],
        ),
        "student_t": (
            StudentTPrior([1.5, 3.0, 10.0], LOC, SCALE),
            [
                stats.t(df, loc=m, scale=s)
                for df, m, s in zip([1.5, 3.0, 10.0], LOC, SCALE, strict=True)
            ],
        ),
        "gaussian": (
            GaussianPrior(LOC, SCALE),
            [stats.norm(loc=m, scale=s) for m, s in zip(LOC, SCALE, strict=True)],
        ),
    }


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_prior_log_density_matches_scipy(name):
    prior, references = _cases()[name]
    z = torch.randn(50, 3) * 3.0
    dist = prior(z)
    expected = sum(
        reference.logpdf(z[:, d].numpy()) for d, reference in enumerate(references)
    )
    assert dist.batch_shape == (50,)
    assert dist.event_shape == (3,)
    np.testing.assert_allclose(dist.log_prob(z).numpy(), expected, rtol=1e-10)


def test_registry_lists_every_prior():
    assert set(PRIORS) == set(_cases())
    for name, cls in PRIORS.items():
        assert isinstance(make_prior(name), cls)


def test_logistic_stable_in_both_tails():
    # Reference: the symmetric closed form -|u| - 2 log1p(exp(-|u|)) - log s.
    scale = 1.5
    z = torch.tensor([[-1000.0], [1000.0], [-1500.0 * scale]])
    log_density = LogisticPrior(0.0, scale)(z).log_prob(z)
    u = z.squeeze(1).abs() / scale
    expected = -u - 2 * torch.log1p(torch.exp(-u)) - math.log(scale)
    assert torch.isfinite(log_density).all()
    torch.testing.assert_close(log_density, expected, rtol=1e-14, atol=0.0)


def test_logistic_gradient_finite_in_tails():
    z = torch.tensor([[-1000.0, 1000.0]], requires_grad=True)
    LogisticPrior()(z).log_prob(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[1.0, -1.0]]))


def test_scalar_parameters_broadcast_to_dimension():
    z = torch.randn(4, 5)
    dist = LaplacePrior(0.0, 2.0)(z)
    expected = stats.laplace(scale=2.0).logpdf(z.numpy()).sum(axis=1)
    np.testing.assert_allclose(dist.log_prob(z).numpy(), expected, rtol=1e-12)


def test_learned_scale_is_parameter_and_stays_positive():
    prior = GeneralizedNormalPrior(4.0, scale=1.0, dim=3, learn_scale=True)
    names = {name for name, _ in prior.named_parameters()}
    assert names == {"log_scale"}
    assert prior.log_scale.shape == (3,)
    z = torch.randn(20, 3)
    prior(z).log_prob(z).sum().backward()
    assert torch.isfinite(prior.log_scale.grad).all()
    with torch.no_grad():
        prior.log_scale -= 100.0
    assert bool((prior.parameter_value("scale") > 0).all())


def test_learned_beta_and_df_receive_gradients():
    z = torch.randn(20, 2)
    for prior, name in (
        (GeneralizedNormalPrior(3.0, learn_beta=True), "log_beta"),
        (StudentTPrior(4.0, learn_df=True), "log_df"),
    ):
        prior(z).log_prob(z).sum().backward()
        assert torch.isfinite(getattr(prior, name).grad)


def test_fixed_parameters_are_buffers():
    prior = LaplacePrior([0.0, 1.0], [1.0, 2.0])
    assert list(prior.parameters()) == []
    assert {name for name, _ in prior.named_buffers()} == {"loc", "log_scale"}


def test_prior_in_objective_matches_scipy():
    # The alignment of a single-view objective is the mean log-density per sample.
    z = torch.randn(30, 2)
    linear = UnmixingLinear(2)
    objective = LDMObjective(
        SingleViewModel(LaplacePrior(scale=0.5)),
        LinearJacobianEntropy(linear),
        form="single",
    )
    terms = objective(z)
    expected = stats.laplace(scale=0.5).logpdf(z.numpy()).sum(axis=1).mean()
    assert float(terms.alignment.detach()) == pytest.approx(expected, rel=1e-12)
    assert float(terms.entropy.detach()) == pytest.approx(0.0, abs=1e-14)


def test_dimension_mismatch_rejected():
    prior = LaplacePrior([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="has length 2 but z has D=3"):
        prior(torch.zeros(4, 3))


def test_dim_and_vector_length_mismatch_rejected():
    with pytest.raises(ValueError, match="has length 2 but dim=3"):
        LaplacePrior([0.0, 1.0], dim=3)


def test_nonpositive_scale_rejected():
    with pytest.raises(ValueError, match="scale must be > 0"):
        GaussianPrior(scale=[1.0, 0.0])


def test_matrix_parameter_rejected():
    with pytest.raises(ValueError, match="scalar or a vector"):
        LaplacePrior(loc=torch.zeros(2, 2))


def test_nonfinite_parameter_rejected():
    with pytest.raises(ValueError, match="must be finite"):
        StudentTPrior(df=float("nan"))


def test_invalid_dim_rejected():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        LaplacePrior(dim=0)


def test_make_prior_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown prior 'cauchy'"):
        make_prior("cauchy")


def test_make_prior_rejects_options_with_module():
    with pytest.raises(ValueError, match="apply only to a prior given by name"):
        make_prior(LaplacePrior(), scale=2.0)


def test_make_prior_rejects_other_types():
    with pytest.raises(TypeError, match="prior must be a name"):
        make_prior(3)


def test_z_must_be_matrix():
    with pytest.raises(ValueError, match="z must have 2 dimensions"):
        LaplacePrior()(torch.zeros(3))
