"""Tests of LinearGaussianStateSpace.

References: pyro.distributions.GaussianHMM (with b folded in by a shift of the
state) and a dense MultivariateNormal of the stacked sequence built from the
model's means and covariances.
"""

import pyro.distributions as dist
import pytest
import torch

from ldm_pyro.distributions import LinearGaussianStateSpace

METHODS = ["parallel", "sequential"]


def random_spd(n, floor=0.1):
    x = torch.randn(n, n)
    return x @ x.T / n + floor * torch.eye(n)


def random_parameters(state_dim=4, obs_dim=3):
    A = torch.randn(state_dim, state_dim)
    A = 0.9 * A / torch.linalg.eigvals(A).abs().max()
    return dict(
        A=A,
        b=torch.randn(state_dim),
        D=torch.randn(obs_dim, state_dim),
        Sigma_A=random_spd(state_dim),
        Sigma_D=random_spd(obs_dim),
        init_mean=torch.randn(state_dim),
        init_cov=random_spd(state_dim, floor=0.5),
    )


def make(params, num_steps, **kwargs):
    return LinearGaussianStateSpace(**params, num_steps=num_steps, **kwargs)


def gaussian_hmm(params, num_steps):
    """GaussianHMM of the shifted state g_t = h_t - b.

    g_t = A g_{t-1} + eps_t and z_t - D b = D g_t + eta_t. GaussianHMM multiplies
    from the right (g_t = g_{t-1} @ M), so it gets A^T and D^T, and its initial
    distribution is that of g_0 = h_0 - b, before the first transition.
    """
    S = params["A"].shape[-1]
    L = params["D"].shape[-2]
    hmm = dist.GaussianHMM(
        dist.MultivariateNormal(params["init_mean"] - params["b"], params["init_cov"]),
        params["A"].T,
        dist.MultivariateNormal(torch.zeros(S), params["Sigma_A"]),
        params["D"].T,
        dist.MultivariateNormal(torch.zeros(L), params["Sigma_D"]),
        duration=num_steps,
    )
    return hmm, params["D"] @ params["b"]


def dense_mvn(params, num_steps):
    """MultivariateNormal of the stacked (T * L) vector, derived from the model."""
    A, b, D = params["A"], params["b"], params["D"]
    S = A.shape[-1]
    mu, V = params["init_mean"], params["init_cov"]
    means, variances = [], []
    for _ in range(num_steps):
        mu = A @ (mu - b) + b
        V = A @ V @ A.T + params["Sigma_A"]
        means.append(D @ mu)
        variances.append(V)
    cov_h = torch.zeros(num_steps * S, num_steps * S)
    for s in range(num_steps):
        block = variances[s]
        for t in range(s, num_steps):
            cov_h[t * S : (t + 1) * S, s * S : (s + 1) * S] = block
            cov_h[s * S : (s + 1) * S, t * S : (t + 1) * S] = block.T
            block = A @ block
    emission = torch.block_diag(*([D] * num_steps))
    cov = emission @ cov_h @ emission.T + torch.block_diag(
        *([params["Sigma_D"]] * num_steps)
    )
    return torch.distributions.MultivariateNormal(torch.cat(means), cov)


@pytest.mark.parametrize("method", METHODS)
def test_log_prob_matches_gaussian_hmm_and_dense(method):
    params = random_parameters()
    num_steps = 8
    z = torch.randn(6, num_steps, 3)
    value = make(params, num_steps, method=method).log_prob(z)
    hmm, shift = gaussian_hmm(params, num_steps)
    torch.testing.assert_close(value, hmm.log_prob(z - shift), rtol=1e-10, atol=0)
    dense = dense_mvn(params, num_steps).log_prob(z.reshape(6, -1))
    torch.testing.assert_close(value, dense, rtol=1e-10, atol=0)


def test_shapes_and_batched_parameters():
    params = random_parameters()
    batched = dict(params, A=torch.stack([params["A"], 0.5 * params["A"]]))
    d = make(batched, 5)
    assert d.batch_shape == (2,)
    assert d.event_shape == (5, 3)
    z = torch.randn(7, 2, 5, 3)
    value = d.log_prob(z)
    assert value.shape == (7, 2)
    # Reference: each parameter set on its own.
    single = make(dict(params, A=0.5 * params["A"]), 5).log_prob(z[:, 1])
    torch.testing.assert_close(value[:, 1], single)
    expanded = make(params, 5).expand((4,))
    assert expanded.batch_shape == (4,)
    assert expanded.log_prob(torch.randn(4, 5, 3)).shape == (4,)


def test_per_step_noise_matches_dense():
    params = random_parameters()
    noise = torch.diag_embed(torch.rand(2, 5, 3) + 0.1)
    d = make(dict(params, Sigma_D=noise), None, per_step_noise=True)
    assert d.batch_shape == (2,)
    assert d.event_shape == (5, 3)
    z = torch.randn(2, 5, 3)
    value = d.log_prob(z)
    for i in range(2):
        # Reference: the dense joint with the per-step noise blocks of sequence i.
        reference_params = dict(params, Sigma_D=torch.zeros(3, 3))
        mvn = dense_mvn(reference_params, 5)
        cov = mvn.covariance_matrix + torch.block_diag(*noise[i])
        reference = torch.distributions.MultivariateNormal(mvn.loc, cov)
        torch.testing.assert_close(
            value[i], reference.log_prob(z[i].reshape(-1)), rtol=1e-10, atol=0
        )


@pytest.mark.parametrize("method", METHODS)
def test_detach_targets_same_value_other_gradient(method):
    params = random_parameters()
    z = torch.randn(3, 6, 3, requires_grad=True)
    plain = make(params, 6, method=method).log_prob(z)
    detached = make(params, 6, method=method, detach_targets=True).log_prob(z)
    torch.testing.assert_close(detached, plain)
    (grad_detached,) = torch.autograd.grad(detached.sum(), z)
    assert grad_detached[:, -1].abs().max() == 0
    assert grad_detached[:, 0].abs().max() > 0


def test_sample_moments_match_dense():
    # Reference: the dense mean of the stacked sequence; 4000 draws give a
    # standard error of about sqrt(var / 4000) < 0.05 per coordinate.
    params = random_parameters(state_dim=3, obs_dim=2)
    d = make(params, 4)
    samples = d.sample((4000,))
    assert samples.shape == (4000, 4, 2)
    mvn = dense_mvn(params, 4)
    error = (samples.reshape(4000, -1).mean(0) - mvn.loc).abs()
    standard_error = (mvn.covariance_matrix.diagonal() / 4000).sqrt()
    assert bool((error < 5 * standard_error).all())


def test_float32_close_to_float64():
    # float32 round-off: about 1e-5 relative on a log-density of order 1e2.
    params = random_parameters()
    z = torch.randn(4, 30, 3)
    reference = make(params, 30).log_prob(z)
    single = {key: value.float() for key, value in params.items()}
    value = make(single, 30).log_prob(z.float())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), reference, rtol=1e-4, atol=1e-3)


def test_bad_values_raise():
    params = random_parameters()
    d = make(params, 5)
    z = torch.randn(2, 5, 3)
    z[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="value contains 1 NaN or Inf"):
        d.log_prob(z)
    with pytest.raises(ValueError, match="latent dimension L must match"):
        d.log_prob(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., T, L\)"):
        d.log_prob(torch.randn(2, 6, 3))


def test_bad_parameters_raise():
    params = random_parameters()
    with pytest.raises(ValueError, match="T must be an integer >= 2"):
        make(params, 1)
    with pytest.raises(ValueError, match="num_steps is missing"):
        make(params, None)
    with pytest.raises(ValueError, match="Sigma_A must be positive definite"):
        make(dict(params, Sigma_A=-torch.eye(4)), 5)
    with pytest.raises(ValueError, match="Sigma_D must be positive definite"):
        make(dict(params, Sigma_D=torch.diag(torch.tensor([1.0, 0.0, 1.0]))), 5)
    with pytest.raises(ValueError, match="Sigma_D must be symmetric"):
        make(dict(params, Sigma_D=torch.eye(3) + torch.triu(torch.ones(3, 3), 1)), 5)
    with pytest.raises(ValueError, match="spectral radius 1.5"):
        make(dict(params, A=1.5 * torch.eye(4)), 5)
    # The cap can be raised or disabled.
    make(dict(params, A=1.5 * torch.eye(4)), 5, max_spectral_radius=None)
    with pytest.raises(ValueError, match="A contains NaN or Inf"):
        make(dict(params, A=torch.full((4, 4), float("nan"))), 5)
    with pytest.raises(ValueError, match=r"Sigma_D must end in shape \(3, 3\)"):
        make(dict(params, Sigma_D=torch.eye(2)), 5)
    with pytest.raises(ValueError, match="b must have last dimension S = 4"):
        make(dict(params, b=torch.zeros(3)), 5)
    with pytest.raises(ValueError, match="method must be one of"):
        make(params, 5, method="fast")
    with pytest.raises(ValueError, match="num_steps=4 does not match"):
        make(
            dict(params, Sigma_D=torch.eye(3).expand(5, 3, 3)),
            4,
            per_step_noise=True,
        )
