import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from ldm_pyro.cli import main
from ldm_pyro.comparison import (
    INFERENCE_DATA_FILE,
    compare_models,
    compare_runs,
    linear_log_jacobian,
    load_inference_data,
    plot_comparison,
    pointwise_log_likelihood,
    sample_posterior,
    to_inference_data,
    write_inference_data,
)
from ldm_pyro.comparison.export import import_arviz
from ldm_pyro.data.ica import make_laplace_mixtures
from ldm_pyro.ica import fit_ica
from ldm_pyro.latents import EmpiricalPrior
from ldm_pyro.ops.kalman import kalman_filter

az = import_arviz()

# Conjugate normal model: y_i ~ N(mu, SIGMA^2), mu ~ N(PRIOR_MEAN, PRIOR_SD^2).
SIGMA = 1.3
PRIOR_MEAN = 0.5
PRIOR_SD = 2.0


def conjugate_model(y):
    mu = pyro.sample("mu", dist.Normal(PRIOR_MEAN, PRIOR_SD))
    with pyro.plate("obs", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, SIGMA).expand([y.shape[1]]).to_event(1), obs=y)


def conjugate_posterior(y):
    """Closed-form posterior mean and standard deviation of mu given all of y."""
    precision = 1 / PRIOR_SD**2 + y.numel() / SIGMA**2
    mean = (PRIOR_MEAN / PRIOR_SD**2 + float(y.sum()) / SIGMA**2) / precision
    return mean, 1 / math.sqrt(precision)


def exact_loo_elpd(y):
    """Sum of the exact leave-one-out predictive log-densities of the rows of y."""
    values = y[:, 0].numpy()
    total = values.sum()
    elpd = 0.0
    for value in values:
        precision = 1 / PRIOR_SD**2 + (len(values) - 1) / SIGMA**2
        mean = (PRIOR_MEAN / PRIOR_SD**2 + (total - value) / SIGMA**2) / precision
        elpd += stats.norm.logpdf(value, mean, math.sqrt(SIGMA**2 + 1 / precision))
    return elpd


def conjugate_draws(y, draws=2000, chains=1, seed=0):
    mean, sd = conjugate_posterior(y)
    generator = torch.Generator().manual_seed(seed)
    return {"mu": mean + sd * torch.randn(chains, draws, generator=generator)}


@pytest.fixture
def normal_data():
    return 1.0 + SIGMA * torch.randn(40, 1)


def make_prior_model(kind):
    def model(z):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        if kind == "laplace":
            marginal = dist.Laplace(0.0, scale)
        else:
            marginal = dist.Normal(0.0, scale)
        with pyro.plate("obs", z.shape[0]):
            pyro.sample("z", marginal.expand([z.shape[1]]).to_event(1), obs=z)

    return model


def make_kalman_model(states, filter_function=kalman_filter, noise=None):
    """Bayesian Kalman latent model with S states observed through D = [I | 0].

    ``noise=(q, r)`` fixes the transition and observation noise variances;
    otherwise both get log-normal priors.
    """

    def model(z):
        dim = z.shape[-1]
        A = pyro.sample("A", dist.Normal(torch.zeros(states, states), 0.7).to_event(2))
        if noise is None:
            q = pyro.sample("q", dist.LogNormal(math.log(0.1), 1.0))
            r = pyro.sample("r", dist.LogNormal(math.log(0.1), 1.0))
        else:
            q, r = noise
        result = filter_function(
            z,
            A,
            torch.zeros(states),
            torch.eye(dim, states),
            q * torch.eye(states),
            r * torch.eye(dim),
            torch.zeros(states),
            torch.eye(states),
        )
        predictive = dist.MultivariateNormal(
            result.predictive_mean,
            scale_tril=torch.linalg.cholesky(result.innovation_cov),
        )
        with pyro.plate("sequence", z.shape[0]):
            pyro.sample("z", predictive.to_event(1), obs=z)

    return model


def simulate_oscillator(sequences, steps, seed=0):
    """Damped 2-D rotation observed in its first coordinate, with noise 0.3."""
    generator = torch.Generator().manual_seed(seed)
    angle = 0.5
    A = 0.95 * torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    state = torch.randn(sequences, 2, generator=generator)
    observations = []
    for _ in range(steps):
        state = state @ A.T + 0.3 * torch.randn(sequences, 2, generator=generator)
        noise = 0.3 * torch.randn(sequences, 1, generator=generator)
        observations.append(state[:, :1] + noise)
    return torch.stack(observations, dim=1)


# --- Jacobian term and pointwise log-likelihood --------------------------------


def test_linear_log_jacobian_square():
    W = torch.tensor([[2.0, 0.3], [-0.4, 0.7]])
    expected = np.log(abs(np.linalg.det(W.numpy())))  # reference: numpy determinant
    assert float(linear_log_jacobian(W)) == pytest.approx(expected, rel=1e-12)


def test_linear_log_jacobian_wide():
    W = torch.randn(2, 5)
    gram = (W @ W.T).numpy()
    expected = 0.5 * np.log(np.linalg.det(gram))  # hand formula 1/2 log|W W^T|
    assert float(linear_log_jacobian(W)) == pytest.approx(expected, rel=1e-12)


def test_linear_log_jacobian_rejects_tall_and_singular():
    with pytest.raises(ValueError, match="D <= n"):
        linear_log_jacobian(torch.randn(3, 2))
    with pytest.raises(ValueError, match="singular"):
        linear_log_jacobian(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))


def test_pointwise_data_scale_matches_scipy():
    # x = A s with s ~ N(0, I), so x ~ N(0, A A^T); with W = A^{-1} the latent
    # density plus log|det W| is the density of x (reference: scipy).
    A = torch.tensor([[1.0, 0.7], [0.2, 1.5]])
    x = torch.randn(30, 2) @ A.T
    W = torch.linalg.inv(A)

    def model(z):
        with pyro.plate("obs", z.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=z)

    values = pointwise_log_likelihood(model, x @ W.T, jacobian=W)
    expected = stats.multivariate_normal(np.zeros(2), (A @ A.T).numpy()).logpdf(x)
    assert values.shape == (30,)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


def test_pointwise_paired_views_sum_sites():
    z, z_prime = torch.randn(8, 3), torch.randn(8, 3)

    def model(a, b):
        with pyro.plate("batch", a.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=a)
            pyro.sample("z_prime", dist.Normal(a, 0.5).to_event(1), obs=b)

    values = pointwise_log_likelihood(model, z, z_prime)
    expected = stats.norm.logpdf(z.numpy()).sum(1) + stats.norm.logpdf(
        z_prime.numpy(), z.numpy(), 0.5
    ).sum(1)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


def test_pointwise_per_step_matches_filter():
    z = simulate_oscillator(4, 6)
    model = make_kalman_model(2)
    values = {"A": 0.9 * torch.eye(2), "q": torch.tensor(0.2), "r": torch.tensor(0.1)}
    steps = pointwise_log_likelihood(model, z, per_step=True, parameters=values)
    sequences = pointwise_log_likelihood(model, z, parameters=values)
    # Reference: the dense joint Gaussian of each stacked sequence z_{1:T}.
    A, q, r = values["A"], 0.2, 0.1
    T = z.shape[1]
    covariances, state_cov = [], torch.eye(2)
    powers = [torch.linalg.matrix_power(A, t) for t in range(T + 1)]
    for _ in range(T):
        state_cov = A @ state_cov @ A.T + q * torch.eye(2)
        covariances.append(state_cov)
    joint = torch.zeros(T, T)
    for s in range(T):
        for t in range(s, T):
            joint[t, s] = (powers[t - s] @ covariances[s])[0, 0]
            joint[s, t] = joint[t, s]
    joint += r * torch.eye(T)
    dense = stats.multivariate_normal(np.zeros(T), joint.numpy()).logpdf(z[..., 0])
    assert steps.shape == (4, 6)
    np.testing.assert_allclose(sequences.numpy(), dense, rtol=1e-10)
    np.testing.assert_allclose(steps.sum(1).numpy(), dense, rtol=1e-10)


def test_pointwise_rejects_bad_programs():
    z = torch.randn(5, 2)

    def unobserved(latent):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    def scalar(latent):
        pyro.sample("z", dist.Normal(0.0, 1.0).expand([5, 2]).to_event(2), obs=latent)

    def empirical(latent):
        with pyro.plate("obs", 5):
            pyro.sample("z", EmpiricalPrior()(latent), obs=latent)

    with pytest.raises(ValueError, match="observed no pyro.sample sites"):
        pointwise_log_likelihood(unobserved, z)
    with pytest.raises(ValueError, match="leading dimension of 5 observations"):
        pointwise_log_likelihood(scalar, z)
    with pytest.raises(ValueError, match="empirical prior"):
        pointwise_log_likelihood(empirical, z)
    with pytest.raises(ValueError, match="per_step=True needs sequences"):
        pointwise_log_likelihood(make_prior_model("laplace"), z, per_step=True)


# --- posterior inference -----------------------------------------------------


def test_nuts_matches_conjugate_posterior(normal_data):
    posterior = sample_posterior(
        conjugate_model, normal_data, num_samples=300, warmup_steps=150, seed=1
    )
    draws = posterior.samples["mu"]
    mean, sd = conjugate_posterior(normal_data)  # reference: closed form
    ess = float(az.ess(draws.numpy()))
    assert draws.shape == (1, 300)
    assert posterior.divergences == 0
    assert abs(float(draws.mean()) - mean) < 4 * sd / math.sqrt(ess)
    assert float(draws.std()) == pytest.approx(sd, rel=0.2)


def test_svi_matches_conjugate_posterior(normal_data):
    posterior = sample_posterior(
        conjugate_model,
        normal_data,
        method="svi",
        num_samples=500,
        svi_steps=500,
        lr=0.1,
    )
    draws = posterior.samples["mu"]
    mean, sd = conjugate_posterior(normal_data)  # reference: closed form
    assert draws.shape == (1, 500)
    assert abs(float(draws.mean()) - mean) < 0.3 * sd
    assert float(draws.std()) == pytest.approx(sd, rel=0.3)
    assert len(pyro.get_param_store()) == 0


def test_sample_posterior_rejects_bad_input(normal_data):
    def no_parameters(y):
        with pyro.plate("obs", y.shape[0]):
            pyro.sample("y", dist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=y)

    with pytest.raises(ValueError, match="no parameter sites"):
        sample_posterior(no_parameters, normal_data, num_samples=5)
    with pytest.raises(ValueError, match="method must be one of"):
        sample_posterior(conjugate_model, normal_data, method="hmc")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        sample_posterior(conjugate_model, normal_data, num_samples=0)


# --- ArviZ export and LOO ----------------------------------------------------


def test_loo_matches_exact_conjugate(normal_data):
    draws = conjugate_draws(normal_data, draws=4000)
    idata = to_inference_data(conjugate_model, draws, normal_data, var_name="y")
    loo = az.loo(idata, pointwise=True)
    exact = exact_loo_elpd(normal_data)  # reference: analytic LOO predictive
    # Monte Carlo error of the importance-sampling estimate of each
    # log p(y_i | y_-i) = -log mean_s 1/p(y_i | mu_s), by the delta method.
    log_lik = idata.log_likelihood["y"].values.reshape(-1, normal_data.shape[0])
    inverse = np.exp(-log_lik)
    per_point_sd = inverse.std(0) / (np.sqrt(inverse.shape[0]) * inverse.mean(0))
    tolerance = 4 * np.sqrt((per_point_sd**2).sum())
    assert float(loo.pareto_k.max()) < 0.7
    assert abs(loo.elpd_loo - exact) < tolerance


def test_inference_data_groups_and_dims(normal_data):
    idata = to_inference_data(
        conjugate_model, conjugate_draws(normal_data, 50, 2), normal_data
    )
    assert {"posterior", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert idata.log_likelihood["z"].dims == ("chain", "draw", "obs")
    assert idata.log_likelihood["z"].shape == (2, 50, 40)
    assert idata.observed_data["y"].dims == ("obs", "latent")
    assert idata.posterior["mu"].dims == ("chain", "draw")
    assert idata.log_likelihood.attrs["jacobian"] == 0


def test_inference_data_sequences_per_step():
    z = simulate_oscillator(5, 7)
    draws = {
        "A": 0.9 * torch.eye(2).expand(1, 3, 2, 2),
        "q": torch.full((1, 3), 0.2),
        "r": torch.full((1, 3), 0.1),
    }
    model = make_kalman_model(2)
    per_sequence = to_inference_data(model, draws, z)
    per_step = to_inference_data(model, draws, z, per_step=True)
    assert per_sequence.log_likelihood["z"].dims == ("chain", "draw", "sequence")
    assert per_step.log_likelihood["z"].dims == ("chain", "draw", "sequence", "time")
    assert per_step.observed_data["z"].dims == ("sequence", "time", "latent")
    np.testing.assert_allclose(
        per_step.log_likelihood["z"].sum("time").values,
        per_sequence.log_likelihood["z"].values,
        rtol=1e-12,
    )


def test_inference_data_rejects_nonfinite(normal_data):
    draws = {"mu": torch.tensor([[0.0, math.inf]])}
    with pytest.raises(ValueError, match="non-finite"):
        to_inference_data(conjugate_model, draws, normal_data)


# --- known-answer comparisons ------------------------------------------------


def test_laplace_prior_beats_gaussian():
    data = make_laplace_mixtures(2, 1000, seed=0)
    train, test = data.mixtures[:500], data.mixtures[500:]
    models = {}
    for kind in ("laplace", "gaussian"):
        result = fit_ica(train, kind)
        z = (test - result.mean) @ result.unmixing.T
        model = make_prior_model(kind)
        posterior = sample_posterior(model, z, num_samples=200, warmup_steps=150)
        models[kind] = to_inference_data(model, posterior, z, jacobian=result.unmixing)
    table = compare_models(models)
    assert table.index[0] == "laplace"
    assert table.loc["gaussian", "elpd_diff"] > 2 * table.loc["gaussian", "dse"]


@pytest.mark.slow
def test_kalman_two_states_beat_one():
    # Many short sequences keep each one's influence on the posterior small, so
    # the Pareto k of PSIS stays below ArviZ's warning threshold.
    z = simulate_oscillator(150, 6)
    models = {}
    for states in (1, 2):
        model = make_kalman_model(states, noise=(0.09, 0.09))
        posterior = sample_posterior(
            model, z, method="laplace", num_samples=500, svi_steps=300, lr=0.1
        )
        models[f"S={states}"] = to_inference_data(model, posterior, z)
    table = compare_models(models)
    assert table.index[0] == "S=2"
    assert table.loc["S=1", "elpd_diff"] > 2 * table.loc["S=1", "dse"]


# --- comparison errors, files, plots and the command line --------------------


@pytest.fixture
def two_runs(tmp_path, normal_data):
    shifted = normal_data
    good = to_inference_data(conjugate_model, conjugate_draws(shifted, 300), shifted)
    mean, sd = conjugate_posterior(shifted)
    wrong = {"mu": (mean + 3.0) + sd * torch.randn(1, 300)}
    bad = to_inference_data(conjugate_model, wrong, shifted)
    write_inference_data(good, tmp_path / "good")
    write_inference_data(bad, tmp_path / "bad")
    return tmp_path / "good", tmp_path / "bad"


def test_compare_models_rejects_mismatch(normal_data):
    first = to_inference_data(
        conjugate_model, conjugate_draws(normal_data, 20), normal_data
    )
    fewer = normal_data[:30]
    second = to_inference_data(conjugate_model, conjugate_draws(fewer, 20), fewer)
    with pytest.raises(ValueError, match="different observations"):
        compare_models({"a": first, "b": second})
    with pytest.raises(ValueError, match="at least two models"):
        compare_models({"a": first})
    missing = az.from_dict(posterior={"mu": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="no log_likelihood group"):
        compare_models({"a": first, "b": missing})


def test_write_and_load_round_trip(two_runs):
    good, _ = two_runs
    loaded = load_inference_data(good)
    assert (good / INFERENCE_DATA_FILE).is_file()
    assert loaded.log_likelihood["z"].shape == (1, 300, 40)


def test_load_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_inference_data"):
        load_inference_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_inference_data(tmp_path / "absent")


def test_write_rejects_missing_log_likelihood(tmp_path):
    idata = az.from_dict(posterior={"mu": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="no log_likelihood group"):
        write_inference_data(idata, tmp_path)


def test_compare_runs_and_plot(two_runs, tmp_path):
    table = compare_runs(two_runs)
    figure = plot_comparison(table, tmp_path / "plot.png")
    assert table.index[0] == "good"
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert figure.axes


def test_cli_compare_prints_table(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    status = main(["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "elpd_loo" in printed
    assert "good" in printed
    assert out.is_file()


def test_cli_compare_reports_missing_file(two_runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    status = main(
        ["compare", str(two_runs[0]), str(empty), "--out", str(tmp_path / "x.png")]
    )
    assert status == 2
    assert "inference_data.nc not found" in capsys.readouterr().err
