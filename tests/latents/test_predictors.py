"""Tests of the predictor kernels and the predictive sequence model."""

import math

import pytest
import torch
from scipy import special
from torch.nn import functional

from ldm_pyro import LDMObjective
from ldm_pyro.entropy import KNNEntropy
from ldm_pyro.latents import (
    EmpiricalPrior,
    GaussianKernel,
    PairedViewModel,
    PredictorKernel,
    RNNPredictor,
    SequencePredictiveModel,
)


def _unit(n, d):
    return functional.normalize(torch.randn(n, d), dim=-1)


def test_byol_alignment_matches_normalized_mse():
    # Reference: BYOL's loss 2 - 2 cos(p, SG z') = ||p/|p| - z'/|z'|||^2.
    tau = 3.0
    kernel = PredictorKernel(4, hidden=[8], concentration=tau, normalized=False)
    model = PairedViewModel(EmpiricalPrior(), kernel)
    objective = LDMObjective(model, KNNEntropy(), stop_gradient=["z_prime"])
    z, z_prime = _unit(16, 4), _unit(16, 4)
    prediction = kernel.predictor(z)
    byol = (
        (
            functional.normalize(prediction, dim=-1)
            - functional.normalize(z_prime, dim=-1)
        )
        .pow(2)
        .sum(-1)
        .mean()
    )
    alignment = objective.alignment(z, z_prime)
    # -log P = tau/2 * (BYOL loss - 2) without the vMF normalizer.
    torch.testing.assert_close(-alignment, tau / 2 * (byol - 2))
    # The normalized kernel differs by the constant log C_4(tau) (mpmath-free
    # closed form for D = 4: C_4 = tau / (4 pi^2 I_1(tau))).
    kernel.kernel.normalized = True
    log_normalizer = math.log(tau / (4 * math.pi**2 * special.iv(1, tau)))
    torch.testing.assert_close(
        objective.alignment(z, z_prime), alignment + log_normalizer
    )


def test_stop_gradient_target_has_no_gradient():
    kernel = PredictorKernel(3, hidden=[8])
    model = PairedViewModel(EmpiricalPrior(), kernel)
    objective = LDMObjective(model, KNNEntropy(), stop_gradient=["z_prime"])
    z = _unit(10, 3).requires_grad_()
    z_prime = _unit(10, 3).requires_grad_()
    objective.alignment(z, z_prime).backward()
    assert z_prime.grad is None or torch.all(z_prime.grad == 0)
    assert z.grad is not None and z.grad.abs().sum() > 0
    for parameter in kernel.predictor.parameters():
        assert parameter.grad is not None


def test_predictor_kernel_gradcheck():
    kernel = PredictorKernel(3, hidden=[5], conditional="gaussian", scale=0.7)
    z_prime = torch.randn(6, 3)

    def log_density(z):
        return kernel(z).log_prob(z_prime)

    assert torch.autograd.gradcheck(log_density, (torch.randn(6, 3).requires_grad_(),))


def test_predictor_output_shape_mismatch():
    kernel = PredictorKernel(3, predictor=torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="output must have the shape"):
        kernel(torch.randn(4, 3))


def _sequence_model(dim=2, cell="lstm"):
    return SequencePredictiveModel(
        RNNPredictor(dim, hidden_size=5, cell=cell, head=[7]), GaussianKernel(1.0)
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_alignment_matches_gaussian_sum(cell):
    # Reference: sum_{t=2..T} log N(z_t; p_{t-1}, I) written out, averaged over B.
    model = _sequence_model(cell=cell)
    objective = LDMObjective(model, KNNEntropy(), form="single")
    z = torch.randn(4, 6, 2)
    prediction = model.predictor(z[:, :-1])
    error = (z[:, 1:] - prediction).pow(2).sum(-1)
    expected = (-0.5 * error - math.log(2 * math.pi)).sum() / 4
    torch.testing.assert_close(objective.alignment(z), expected)


def test_rnn_ldm_loss_matches_published_formula():
    # Reference: -mean_b sum_t log N(z_t; p_{t-1}, I) - T H_kNN[z].
    model = _sequence_model()
    knn = KNNEntropy()
    objective = LDMObjective(model, knn, form="single")
    z = torch.randn(8, 5, 2)
    terms = objective(z)
    prediction = model.predictor(z[:, :-1])
    log_density = torch.distributions.Normal(prediction, 1.0).log_prob(z[:, 1:])
    expected = -log_density.sum() / 8 - 5 * knn(z.reshape(-1, 2))
    torch.testing.assert_close(terms.loss, expected)


def test_jepa_stop_gradient_target_only_past_gets_gradient():
    model = _sequence_model()
    objective = LDMObjective(
        model, KNNEntropy(), form="single", stop_gradient=["z_next"]
    )
    z = torch.randn(3, 4, 2, requires_grad=True)
    objective.alignment(z).backward()
    # The last step is only a target, so its gradient vanishes; earlier steps
    # feed the predictor.
    assert torch.all(z.grad[:, -1] == 0)
    assert z.grad[:, :-1].abs().sum() > 0


def test_sequence_too_short():
    model = _sequence_model()
    with pytest.raises(ValueError, match="at least 2 steps"):
        model(torch.randn(3, 1, 2))


def test_sequence_predictor_shape_mismatch():
    model = SequencePredictiveModel(lambda past: past[..., :1], GaussianKernel(1.0))
    with pytest.raises(ValueError, match="output must have the shape"):
        model(torch.randn(3, 4, 2))


def test_rnn_predictor_rejects_unknown_cell():
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNPredictor(2, cell="transformer")
