"""Tests of KalmanDynamics, the noise networks and PlugInEntropy.

References: LinearGaussianStateSpace.log_prob (itself checked against a dense
Gaussian), the parameterization written out in the test, and the spectral
radius from torch.linalg.eigvals.
"""

import pyro
import pytest
import torch

from ldm_pyro.distributions import LinearGaussianStateSpace
from ldm_pyro.entropy import ESTIMATORS, PlugInEntropy
from ldm_pyro.latents import KalmanDynamics, NoiseDetector, NoiseMLP
from ldm_pyro.objective import LDMObjective


def radius(A):
    return torch.linalg.eigvals(A.detach()).abs().max()


def test_initial_transition_radius():
    model = KalmanDynamics(5, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(radius(model.A), torch.tensor(1 / 1.1))
    torch.testing.assert_close(model.D, torch.eye(5, 10))


def test_alignment_equals_state_space_log_prob():
    model = KalmanDynamics(3, 5, detach_targets=False)
    z = torch.randn(4, 7, 3)
    objective = LDMObjective(model, PlugInEntropy(), form="single")
    terms = objective(z)
    # Reference: the parameterization written out.
    scale = torch.e
    reference = LinearGaussianStateSpace(
        model.A.detach(),
        torch.zeros(5),
        torch.eye(3, 5),
        scale * torch.eye(5),
        scale * torch.eye(3),
        torch.zeros(5),
        torch.eye(5),
        num_steps=7,
    ).log_prob(z)
    torch.testing.assert_close(terms.alignment, reference.mean())
    assert terms.entropy == 0


def test_spectral_radius_rescaled_before_forward():
    model = KalmanDynamics(2, 3, spectral_radius_cap=1.02)
    with torch.no_grad():
        model.A.copy_(torch.diag(torch.tensor([1.5, 0.5, 0.2])))
    model(torch.randn(2, 4, 2))
    torch.testing.assert_close(radius(model.A), torch.tensor(1.02))
    assert model.A.grad is None


def test_stop_gradient_form_gradients():
    model = KalmanDynamics(2, 4, detach_targets=True)
    objective = LDMObjective(model, PlugInEntropy(), form="single")
    z = torch.randn(3, 5, 2, requires_grad=True)
    objective(z).loss.backward()
    assert z.grad[:, -1].abs().max() == 0
    assert z.grad[:, 0].abs().max() > 0
    for name in ("A", "b", "log_scale", "log_transition_var"):
        assert getattr(model, name).grad.abs().max() > 0, name


def test_learned_and_input_noise():
    learned = KalmanDynamics(2, 3, noise="learned")
    names = {name for name, _ in learned.named_parameters()}
    assert "log_observation_var" in names
    fixed = KalmanDynamics(2, 3)
    assert "log_observation_var" not in {n for n, _ in fixed.named_parameters()}

    model = KalmanDynamics(2, 3, noise="input", detach_targets=False)
    z = torch.randn(2, 4, 2)
    noise_var = torch.rand(2, 4, 2, requires_grad=True)
    trace = pyro.poutine.trace(model).get_trace(z, noise_var=noise_var)
    value = trace.nodes["z"]["fn"].log_prob(z)
    # Reference: Sigma_D,t = e^s (diag(g_t) + 1e-5 I) written out.
    scale = model.log_scale.exp().detach()
    reference = LinearGaussianStateSpace(
        model.A.detach(),
        torch.zeros(3),
        torch.eye(2, 3),
        scale * torch.eye(3),
        scale * torch.diag_embed(noise_var.detach() + 1e-5),
        torch.zeros(3),
        torch.eye(3),
        per_step_noise=True,
    ).log_prob(z)
    torch.testing.assert_close(value.detach(), reference)
    value.sum().backward()
    assert noise_var.grad.abs().max() > 0


def test_dynamics_errors():
    with pytest.raises(ValueError, match="state_dim must be an integer >= latent_dim"):
        KalmanDynamics(5, 3)
    with pytest.raises(ValueError, match="noise must be one of"):
        KalmanDynamics(2, 3, noise="mlp")
    model = KalmanDynamics(2, 3, noise="input")
    with pytest.raises(ValueError, match="noise='input' needs the per-step variances"):
        model(torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="noise_var must be >= 0"):
        model(torch.randn(2, 4, 2), noise_var=-torch.ones(2, 4, 2))
    with pytest.raises(ValueError, match="noise_var is only used with noise='input'"):
        KalmanDynamics(2, 3)(torch.randn(2, 4, 2), noise_var=torch.ones(2, 4, 2))
    with pytest.raises(ValueError, match="z must have last dimension 2"):
        KalmanDynamics(2, 3)(torch.randn(2, 4, 3))


def test_noise_networks_shapes_and_sign():
    frames = torch.randn(3, 6, 100)
    for network in (NoiseDetector(100, 2), NoiseMLP(100, 2)):
        variances = network(frames)
        assert variances.shape == (3, 6, 2)
        assert bool((variances >= 0).all())
    # The detector responds only to deviations from the frame mean: a constant shift
    # of all pixels leaves its output unchanged.
    detector = NoiseDetector(100, 2)
    torch.testing.assert_close(detector(frames + 3.0), detector(frames))


def test_plugin_entropy_is_zero_and_registered():
    estimator = PlugInEntropy()
    z = torch.randn(1, 4, requires_grad=True)
    value = estimator(z)
    assert value == 0
    assert not value.requires_grad
    assert ESTIMATORS["plugin"] is PlugInEntropy
