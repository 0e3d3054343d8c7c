"""The objective against standard formulations of each special case."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.nn import functional

from ldm_pyro import LDMObjective
from ldm_pyro.builders import build_objective
from ldm_pyro.entropy import EntropyEstimator
from ldm_pyro.latents import (
    EmpiricalPrior,
    FlatPrior,
    GaussianKernel,
    PairedViewModel,
    SphereUniformPrior,
    VonMisesFisherKernel,
)
from ldm_pyro.specs import load_spec


class SumEntropy(EntropyEstimator):
    """A toy estimator with a simple closed form, to check how forms combine."""

    def estimate(self, z):
        return z.pow(2).sum() / z.shape[0]


def nt_xent(z, z_prime, temperature):
    """Standard NT-Xent (SimCLR): 2N anchors, positive in the denominator."""
    u = functional.normalize(torch.cat([z, z_prime]), dim=1)
    n = z.shape[0]
    similarity = u @ u.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return functional.cross_entropy(similarity, positives)


def vicreg_loss(z, z_prime, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """Standard VICReg loss as in the VICReg paper's pseudocode."""
    n, d = z.shape
    invariance = functional.mse_loss(z, z_prime)

    def variance(x):
        std = torch.sqrt(x.var(dim=0) + eps)
        return torch.relu(1 - std).mean()

    def covariance(x):
        x = x - x.mean(dim=0)
        cov = x.T @ x / (n - 1)
        off = cov - torch.diag(torch.diag(cov))
        return off.pow(2).sum() / d

    return (
        lam * invariance
        + mu * (variance(z) + variance(z_prime))
        + nu * (covariance(z) + covariance(z_prime))
    )


def test_alignment_equals_gaussian_log_density():
    z, z_prime = torch.randn(6, 3), torch.randn(6, 3)
    model = PairedViewModel(FlatPrior(), GaussianKernel(0.7))
    objective = LDMObjective(model, SumEntropy(), form="ldm")
    reference = torch.distributions.Normal(z, 0.7).log_prob(z_prime).sum() / 6
    assert torch.allclose(objective.alignment(z, z_prime), reference, rtol=1e-12)


def test_alignment_matches_pyro_trace_log_prob_sum():
    z, z_prime = torch.randn(5, 4), torch.randn(5, 4)
    model = PairedViewModel(FlatPrior(), GaussianKernel(1.3))
    trace = pyro.poutine.trace(model).get_trace(z, z_prime)
    objective = LDMObjective(model, SumEntropy())
    assert torch.allclose(objective.alignment(z, z_prime), trace.log_prob_sum() / 5)


def test_forms_combine_entropies():
    z, z_prime = torch.randn(8, 2), torch.randn(8, 2)
    model = PairedViewModel(FlatPrior(), GaussianKernel(1.0))
    estimator = SumEntropy()
    ldm = LDMObjective(model, estimator, form="ldm")(z, z_prime)
    mi = LDMObjective(model, estimator, form="mi")(z, z_prime)
    joint = (z.pow(2).sum() + z_prime.pow(2).sum()) / 8
    assert torch.allclose(ldm.entropy, joint)
    assert torch.allclose(mi.entropy, estimator(z) + estimator(z_prime))
    assert torch.allclose(ldm.objective, ldm.alignment + ldm.entropy)


def test_empirical_prior_removes_one_marginal_entropy():
    z, z_prime = torch.randn(8, 2), torch.randn(8, 2)
    estimator = SumEntropy()
    model = PairedViewModel(EmpiricalPrior(), GaussianKernel(1.0))
    mi = LDMObjective(model, estimator, form="mi")(z, z_prime)
    ldm = LDMObjective(model, estimator, form="ldm")(z, z_prime)
    marginals = estimator(z) + estimator(z_prime)
    assert torch.allclose(mi.entropy, 0.5 * marginals)
    assert torch.allclose(ldm.entropy, estimator(z, z_prime) - 0.5 * marginals)
    # The empirical prior adds nothing to the alignment.
    reference = torch.distributions.Normal(z, 1.0).log_prob(z_prime).sum() / 8
    assert torch.allclose(mi.alignment, reference)


def test_stop_gradient_detaches_named_site_only():
    z = torch.randn(4, 3, requires_grad=True)
    z_prime = torch.randn(4, 3, requires_grad=True)
    model = PairedViewModel(FlatPrior(), GaussianKernel(1.0))
    objective = LDMObjective(model, SumEntropy(), stop_gradient=["z_prime"])
    objective.alignment(z, z_prime).backward()
    assert z_prime.grad is None
    # d/dz of -||z' - z||^2 / 2 averaged over N is (z' - z) / N.
    assert torch.allclose(z.grad, (z_prime - z).detach() / 4)


def test_stop_gradient_unknown_site_rejected():
    model = PairedViewModel(FlatPrior(), GaussianKernel(1.0))
    objective = LDMObjective(model, SumEntropy(), stop_gradient=["target"])
    with pytest.raises(ValueError, match=r"stop_gradient names sites \['target'\]"):
        objective(torch.randn(4, 2), torch.randn(4, 2))


def test_learnable_scale_is_a_module_parameter():
    kernel = GaussianKernel(0.5, learnable=True)
    objective = LDMObjective(PairedViewModel(FlatPrior(), kernel), SumEntropy())
    names = [name for name, _ in objective.named_parameters()]
    assert names == ["model.kernel.log_scale"]


def user_program(z, z_prime):
    """A user's latent model with a Laplace kernel."""
    with pyro.plate("batch", z.shape[0]):
        pyro.sample(
            "z",
            dist.ImproperUniform(
                dist.constraints.real_vector, z.shape[:1], z.shape[1:]
            ),
            obs=z,
        )
        pyro.sample("z_prime", dist.Laplace(z, 0.5).to_event(1), obs=z_prime)


def test_user_program_from_module_reference():
    spec = load_spec("vicreg-ldm", ['model.program="test_objective:user_program"'])
    import sys

    sys.modules.setdefault("test_objective", sys.modules[__name__])
    objective = build_objective(spec)
    z, z_prime = torch.randn(70, 32), torch.randn(70, 32)
    reference = torch.distributions.Laplace(z, 0.5).log_prob(z_prime).sum() / 70
    assert torch.allclose(objective.alignment(z, z_prime), reference)


def test_program_without_observed_sites_rejected():
    def empty(z, z_prime):
        pass

    objective = LDMObjective(empty, SumEntropy())
    with pytest.raises(ValueError, match="observed no pyro.sample sites"):
        objective(torch.randn(4, 2), torch.randn(4, 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_latents_name_term_and_step(bad):
    objective = LDMObjective(
        PairedViewModel(FlatPrior(), GaussianKernel(1.0)), SumEntropy()
    )
    objective.step = 12
    z = torch.randn(4, 2)
    z[1, 0] = bad
    with pytest.raises(
        ValueError, match=r"latents 'z' contains 1 non-finite.*at step 12"
    ):
        objective(z, torch.randn(4, 2))


def test_shape_mismatch_between_views_rejected():
    objective = LDMObjective(
        PairedViewModel(FlatPrior(), GaussianKernel(1.0)), SumEntropy()
    )
    with pytest.raises(ValueError, match=r"z and z_prime must have the same shape"):
        objective(torch.randn(4, 2), torch.randn(4, 3))


def test_unknown_form_rejected():
    with pytest.raises(ValueError, match="form must be one of"):
        LDMObjective(user_program, SumEntropy(), form="joint")


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_nt_xent_fixed_case(temperature):
    # Two pairs of identical views z = z' = [e1, e2]; values computed by hand:
    # with a = exp(1/t), b = exp(0) the loss is log(1 + 2 b / a) for each anchor.
    z = torch.eye(2)
    expected = {0.5: 0.239544766221885, 1.0: 0.551444713932051}[temperature]
    assert nt_xent(z, z, temperature).item() == pytest.approx(expected, rel=1e-12)
    assert math.log(1 + 2 * math.exp(-1 / temperature)) == pytest.approx(expected)


def test_simclr_spec_equals_nt_xent():
    spec = load_spec("simclr")
    objective = build_objective(spec)
    beta = spec["model"]["kernel_params"]["concentration"]
    n, d = 16, 8
    z = functional.normalize(torch.randn(n, d), dim=1)
    z_prime = functional.normalize(z + 0.3 * torch.randn(n, d), dim=1)
    terms = objective(z, z_prime)
    # The spec documents -F = NT-Xent - log(2N - 1) with temperature 1 / beta.
    expected = nt_xent(z, z_prime, 1 / beta) - math.log(2 * n - 1)
    assert torch.allclose(terms.loss, expected, rtol=1e-10)


def test_simclr_spec_gradient_equals_nt_xent_gradient():
    objective = build_objective(load_spec("simclr"))
    raw = torch.randn(10, 4, requires_grad=True)
    raw_prime = torch.randn(10, 4, requires_grad=True)
    z, z_prime = (
        functional.normalize(raw, dim=1),
        functional.normalize(raw_prime, dim=1),
    )
    loss = objective(z, z_prime).loss
    grads = torch.autograd.grad(loss, (raw, raw_prime), retain_graph=True)
    reference = torch.autograd.grad(nt_xent(z, z_prime, 0.2), (raw, raw_prime))
    for grad, expected in zip(grads, reference, strict=True):
        assert torch.allclose(grad, expected, atol=1e-12)


def test_vicreg_spec_equals_standard_vicreg():
    spec = load_spec("vicreg")
    objective = build_objective(spec)
    d = spec["encoder"]["latent_dim"]
    z = 0.5 * torch.randn(64, d)
    z_prime = z + 0.2 * torch.randn(64, d)
    terms = objective(z, z_prime)
    sigma = spec["model"]["kernel_params"]["scale"]
    # The Gaussian kernel's normalizer is the constant the spec drops from VICReg.
    constant = 0.5 * d * math.log(2 * math.pi * sigma**2)
    assert torch.allclose(terms.loss - constant, vicreg_loss(z, z_prime), rtol=1e-10)


def test_vicreg_ldm_spec_is_equation_nine():
    spec = load_spec("vicreg-ldm", ["entropy.ridge=0.0"])
    objective = build_objective(spec)
    n, d = 200, 4
    spec_d = spec["encoder"]["latent_dim"]
    assert spec_d >= d
    z = torch.randn(n, d)
    z_prime = z + 0.5 * torch.randn(n, d)
    terms = objective(z, z_prime)
    joint = torch.cat([z, z_prime], dim=1).T.cov()
    sigma = spec["model"]["kernel_params"]["scale"]
    alignment = -(z - z_prime).pow(2).sum(1).mean() / (
        2 * sigma**2
    ) - 0.5 * d * math.log(2 * math.pi * sigma**2)
    entropy = 0.5 * 2 * d * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(joint)
    assert torch.allclose(terms.alignment, alignment, rtol=1e-10)
    assert torch.allclose(terms.entropy, entropy, rtol=1e-10)


def test_simclr_ldm_uniform_prior_adds_constant():
    d = 5
    model = PairedViewModel(
        SphereUniformPrior(), VonMisesFisherKernel(2.0, normalized=False)
    )
    z = functional.normalize(torch.randn(6, d), dim=1)
    z_prime = functional.normalize(torch.randn(6, d), dim=1)
    value = LDMObjective(model, SumEntropy()).alignment(z, z_prime)
    area = math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)
    expected = 2.0 * (z * z_prime).sum(1).mean() - area
    assert torch.allclose(value, expected)
