"""Tests of the sequential and parallel Kalman filters and the RTS smoother.

References: the dense joint Gaussian of the stacked sequence (built here from the
model's means and covariances), the standard Kalman recursion written out step by
step with explicit inverses, and agreement between the two filters.
"""

import math

import pytest
import torch

from ldm_pyro.ops import kalman_filter, parallel_kalman_filter, rts_smoother
from ldm_pyro.ops.linalg import cholesky, logdet_from_cholesky, mvn_log_prob_cholesky

FILTERS = [kalman_filter, parallel_kalman_filter]
FIELDS = [
    "filtered_mean",
    "filtered_cov",
    "predicted_mean",
    "predicted_cov",
    "predictive_mean",
    "innovation_cov",
    "log_prob",
]


def random_spd(n, batch=(), floor=0.1):
    x = torch.randn(batch + (n, n))
    return x @ x.transpose(-1, -2) / n + floor * torch.eye(n)


def random_model(state_dim=4, obs_dim=3, radius=0.9):
    A = torch.randn(state_dim, state_dim)
    A = A * radius / torch.linalg.eigvals(A).abs().max()
    return dict(
        A=A,
        b=torch.randn(state_dim),
        D=torch.randn(obs_dim, state_dim),
        Sigma_A=random_spd(state_dim),
        Sigma_D=random_spd(obs_dim),
        init_mean=torch.randn(state_dim),
        init_cov=random_spd(state_dim, floor=0.5),
    )


def dense_moments(model, num_steps, Sigma_D_steps=None):
    """Mean and covariance of stacked z_{1:T} derived from the model directly.

    h_0 ~ N(init_mean, init_cov) before the first transition; the state means
    follow mu_t = A (mu_{t-1} - b) + b, the state covariances
    V_t = A V_{t-1} A^T + Sigma_A, and Cov(h_t, h_s) = A^{t-s} V_s for t >= s.
    """
    A, b, D = model["A"], model["b"], model["D"]
    state_dim, obs_dim = A.shape[-1], D.shape[-2]
    means, variances = [], []
    mu, V = model["init_mean"], model["init_cov"]
    for _ in range(num_steps):
        mu = A @ (mu - b) + b
        V = A @ V @ A.T + model["Sigma_A"]
        means.append(mu)
        variances.append(V)
    state_cov = torch.zeros(num_steps * state_dim, num_steps * state_dim)
    for s in range(num_steps):
        block = variances[s]
        for t in range(s, num_steps):
            rows = slice(t * state_dim, (t + 1) * state_dim)
            cols = slice(s * state_dim, (s + 1) * state_dim)
            state_cov[rows, cols] = block
            state_cov[cols, rows] = block.T
            block = A @ block
    emission = torch.block_diag(*([D] * num_steps))
    mean = torch.cat([D @ mu for mu in means])
    cov = emission @ state_cov @ emission.T
    for t in range(num_steps):
        noise = model["Sigma_D"] if Sigma_D_steps is None else Sigma_D_steps[t]
        idx = slice(t * obs_dim, (t + 1) * obs_dim)
        cov[idx, idx] += noise
    return mean, cov, torch.cat(means), state_cov, emission


def call(filter_fn, z, model, **kwargs):
    return filter_fn(
        z,
        model["A"],
        model["b"],
        model["D"],
        model["Sigma_A"],
        model["Sigma_D"],
        model["init_mean"],
        model["init_cov"],
        **kwargs,
    )


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_log_prob_matches_dense_gaussian(filter_fn):
    model = random_model()
    num_steps = 7
    z = torch.randn(5, num_steps, 3)
    mean, cov, _, _, _ = dense_moments(model, num_steps)
    reference = torch.distributions.MultivariateNormal(mean, cov).log_prob(
        z.reshape(5, -1)
    )
    result = call(filter_fn, z, model)
    assert result.log_prob.shape == (5, num_steps)
    torch.testing.assert_close(result.log_prob.sum(-1), reference, rtol=1e-10, atol=0)


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_per_step_noise_matches_dense_gaussian(filter_fn):
    model = random_model()
    num_steps = 6
    noise = torch.diag_embed(torch.rand(2, num_steps, 3) + 0.05)
    z = torch.randn(2, num_steps, 3)
    model = dict(model, Sigma_D=noise)
    result = call(filter_fn, z, model)
    for i in range(2):
        mean, cov, _, _, _ = dense_moments(model, num_steps, noise[i])
        reference = torch.distributions.MultivariateNormal(mean, cov).log_prob(
            z[i].reshape(-1)
        )
        torch.testing.assert_close(
            result.log_prob[i].sum(), reference, rtol=1e-10, atol=0
        )


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_filtered_state_matches_dense_conditional(filter_fn):
    # Reference: Gaussian conditioning of the dense joint of (h_{1:T}, z_{1:T}).
    model = random_model()
    num_steps = 5
    z = torch.randn(num_steps, 3)
    result = call(filter_fn, z, model)
    for t in (1, num_steps):
        mean_z, cov_z, mean_h, cov_h, emission = dense_moments(model, t)
        gain = torch.linalg.solve(cov_z, emission @ cov_h).T
        posterior_mean = mean_h + gain @ (z[:t].reshape(-1) - mean_z)
        posterior_cov = cov_h - gain @ emission @ cov_h
        last = slice((t - 1) * 4, t * 4)
        torch.testing.assert_close(
            result.filtered_mean[t - 1], posterior_mean[last], rtol=1e-9, atol=1e-12
        )
        torch.testing.assert_close(
            result.filtered_cov[t - 1],
            posterior_cov[last, last],
            rtol=1e-9,
            atol=1e-12,
        )


def test_sequential_matches_textbook_recursion():
    # Reference: the recursion written out with explicit inverses and the
    # (I - K D) P covariance update.
    model = random_model()
    z = torch.randn(9, 3)
    A, b, D = model["A"], model["b"], model["D"]
    h, P = model["init_mean"], model["init_cov"]
    expected = []
    for t in range(9):
        h = A @ (h - b) + b
        P = A @ P @ A.T + model["Sigma_A"]
        S = D @ P @ D.T + model["Sigma_D"]
        e = z[t] - D @ h
        expected.append(
            -0.5
            * (e @ torch.inverse(S) @ e + torch.logdet(S) + 3 * math.log(2 * math.pi))
        )
        K = P @ D.T @ torch.inverse(S)
        h = h + K @ e
        P = (torch.eye(4) - K @ D) @ P
    result = call(kalman_filter, z, model)
    torch.testing.assert_close(
        result.log_prob, torch.stack(expected), rtol=1e-10, atol=0
    )


@pytest.mark.parametrize("num_steps", [1, 2, 3, 8, 13, 64])
def test_parallel_matches_sequential(num_steps):
    model = random_model(state_dim=5, obs_dim=2)
    z = torch.randn(3, num_steps, 2)
    sequential = call(kalman_filter, z, model)
    parallel = call(parallel_kalman_filter, z, model)
    for field in FIELDS:
        a, c = getattr(sequential, field), getattr(parallel, field)
        assert a.shape == c.shape, field
        torch.testing.assert_close(c, a, rtol=1e-8, atol=1e-12, msg=field)


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_batched_parameters_broadcast(filter_fn):
    # Reference: the same filter run separately for each parameter set.
    models = [random_model() for _ in range(3)]
    stacked = {key: torch.stack([m[key] for m in models]) for key in models[0]}
    z = torch.randn(3, 6, 3)
    batched = call(filter_fn, z, stacked)
    for i, model in enumerate(models):
        single = call(filter_fn, z[i], model)
        for field in FIELDS:
            torch.testing.assert_close(
                getattr(batched, field)[i], getattr(single, field), msg=field
            )


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_detach_targets_values_and_gradients(filter_fn):
    model = random_model()
    z = torch.randn(2, 6, 3, requires_grad=True)
    plain = call(filter_fn, z, model).log_prob
    detached = call(filter_fn, z, model, detach_targets=True).log_prob
    torch.testing.assert_close(detached, plain)
    # The last step's score depends on z_T only as a target: no gradient.
    (grad_last,) = torch.autograd.grad(detached[:, -1].sum(), z, retain_graph=True)
    assert grad_last[:, -1].abs().max() == 0
    assert grad_last[:, :-1].abs().max() > 0
    # Reference: for the detached form, the gradient equals the full gradient
    # minus the direct gradient of each step's density through its own target.
    (grad_detached,) = torch.autograd.grad(detached.sum(), z)
    (grad_full,) = torch.autograd.grad(plain.sum(), z)
    result = call(filter_fn, z.detach(), model)
    factor = torch.linalg.cholesky(result.innovation_cov)
    residual = z.detach() - result.predictive_mean
    direct = -torch.cholesky_solve(residual.unsqueeze(-1), factor).squeeze(-1)
    torch.testing.assert_close(grad_detached, grad_full - direct, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_gradcheck(filter_fn):
    model = random_model(state_dim=3, obs_dim=2)
    z = torch.randn(1, 4, 2, requires_grad=True)
    A = model["A"].clone().requires_grad_()

    # Without detach_targets: finite differences cannot see a stop-gradient.
    def value(z, A):
        return call(filter_fn, z, dict(model, A=A)).log_prob

    assert torch.autograd.gradcheck(value, (z, A))


@pytest.mark.parametrize(
    "filter_fn",
    [
        # 10 000 Python steps take tens of seconds on 2 cores.
        pytest.param(kalman_filter, marks=pytest.mark.slow),
        parallel_kalman_filter,
    ],
)
def test_long_sequence_near_singular_noise_stays_spd(filter_fn):
    # 10 000 steps with transition and observation variances near 1e-9: without
    # the Joseph form and symmetrization the covariances drift out of the cone.
    state_dim, obs_dim, num_steps = 4, 2, 10_000
    angle = torch.tensor(0.3)
    rotation = torch.tensor([[angle.cos(), -angle.sin()], [angle.sin(), angle.cos()]])
    A = torch.block_diag(rotation, 0.99 * rotation)
    model = dict(
        A=A,
        b=torch.zeros(state_dim),
        D=torch.eye(obs_dim, state_dim),
        Sigma_A=torch.diag(torch.tensor([1e-9, 1e-12, 1e-9, 1e-12])),
        Sigma_D=1e-9 * torch.eye(obs_dim),
        init_mean=torch.zeros(state_dim),
        init_cov=torch.eye(state_dim),
    )
    z = torch.randn(2, num_steps, obs_dim)
    result = call(filter_fn, z, model)
    for field in ("filtered_cov", "predicted_cov", "innovation_cov"):
        cov = getattr(result, field)
        torch.testing.assert_close(cov, cov.transpose(-1, -2), rtol=0, atol=0)
        eigenvalues = torch.linalg.eigvalsh(cov)
        assert bool((eigenvalues > 0).all()), field
    assert bool(torch.isfinite(result.log_prob).all())
    assert bool(torch.isfinite(result.filtered_mean).all())


def test_long_sequence_filters_agree():
    model = random_model(state_dim=4, obs_dim=2, radius=0.999)
    model["Sigma_A"] = 1e-6 * random_spd(4, floor=1e-3)
    z = torch.randn(1, 1000, 2)
    sequential = call(kalman_filter, z, model)
    parallel = call(parallel_kalman_filter, z, model)
    for field in FIELDS:
        torch.testing.assert_close(
            getattr(parallel, field),
            getattr(sequential, field),
            rtol=1e-8,
            atol=1e-12,
            msg=field,
        )


def test_float32_close_to_float64():
    # float32 keeps about 7 digits; over 200 steps the summed log-density of
    # order 1e3 agrees to about 1e-4 relative.
    model = random_model()
    z = torch.randn(4, 200, 3)
    reference = call(kalman_filter, z, model).log_prob.sum(-1)
    single = {key: value.float() for key, value in model.items()}
    for filter_fn in FILTERS:
        value = call(filter_fn, z.float(), single).log_prob.sum(-1)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), reference, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_smoother_matches_dense_posterior(filter_fn):
    # Reference: the posterior of h_{1:T} given all of z_{1:T} from the dense joint.
    model = random_model()
    num_steps = 6
    z = torch.randn(num_steps, 3)
    smoothed = rts_smoother(call(filter_fn, z, model), model["A"])
    mean_z, cov_z, mean_h, cov_h, emission = dense_moments(model, num_steps)
    gain = torch.linalg.solve(cov_z, emission @ cov_h).T
    posterior_mean = mean_h + gain @ (z.reshape(-1) - mean_z)
    posterior_cov = cov_h - gain @ emission @ cov_h
    torch.testing.assert_close(
        smoothed.smoothed_mean.reshape(-1), posterior_mean, rtol=1e-9, atol=1e-12
    )
    for t in range(num_steps):
        block = slice(t * 4, (t + 1) * 4)
        torch.testing.assert_close(
            smoothed.smoothed_cov[t], posterior_cov[block, block], rtol=1e-9, atol=1e-12
        )
    assert smoothed.gain.shape == (num_steps - 1, 4, 4)


def test_smoother_rejects_wrong_transition_shape():
    model = random_model()
    result = call(kalman_filter, torch.randn(4, 3), model)
    with pytest.raises(
        ValueError, match=r"A must have shape \(\.\.\., S, S\) with S = 4"
    ):
        rts_smoother(result, torch.eye(3))


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_shape_errors(filter_fn):
    model = random_model()
    z = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="D must have shape"):
        call(filter_fn, torch.randn(2, 5, 2), model)
    with pytest.raises(ValueError, match="A must have shape"):
        call(filter_fn, z, dict(model, A=torch.eye(3)))
    with pytest.raises(ValueError, match="b must have shape"):
        call(filter_fn, z, dict(model, b=torch.zeros(3)))
    with pytest.raises(ValueError, match="per-step Sigma_D must have shape"):
        call(filter_fn, z, dict(model, Sigma_D=torch.eye(3).expand(2, 4, 3, 3)))
    with pytest.raises(ValueError, match="do not broadcast"):
        call(filter_fn, z, dict(model, init_mean=torch.zeros(3, 4)))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        call(filter_fn, [[0.0, 0.0, 0.0]], model)


@pytest.mark.parametrize("filter_fn", FILTERS)
def test_indefinite_noise_names_step(filter_fn):
    model = random_model()
    noise = torch.eye(3).repeat(6, 1, 1)
    noise[3] = -10 * torch.eye(3)
    z = torch.randn(1, 6, 3)
    with pytest.raises(ValueError, match=r"not positive definite.*step t = 4"):
        call(filter_fn, z, dict(model, Sigma_D=noise.unsqueeze(0)))


def test_linalg_helpers_match_torch():
    # Reference: torch.distributions.MultivariateNormal and torch.logdet.
    cov = random_spd(4, batch=(3,))
    factor = cholesky(cov)
    torch.testing.assert_close(logdet_from_cholesky(factor), torch.logdet(cov))
    x = torch.randn(5, 3, 4)
    expected = torch.distributions.MultivariateNormal(torch.zeros(4), cov).log_prob(x)
    torch.testing.assert_close(mvn_log_prob_cholesky(x, factor), expected)
    with pytest.raises(ValueError, match="not positive definite in 1 of 1"):
        cholesky(-torch.eye(2), "covariance")
