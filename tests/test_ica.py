import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy import stats

from ldm_pyro.data.ica import (
    make_image_mixtures,
    make_laplace_mixtures,
    make_ou_mixtures,
    make_uniform_mixtures,
)
from ldm_pyro.evaluation.ica import amari_distance, mean_correlation_coefficient
from ldm_pyro.ica import fit_ica, plot_ica
from ldm_pyro.latents.factorized import GaussianPrior, LaplacePrior

# The bound is several times the Amari distance of a converged fit on these
# sizes (about 0.01), and far below the 0.3 to 0.7 of a failed fit.
RECOVERY_BOUND = 0.05


def test_laplace_prior_recovers_laplace_sources():
    data = make_laplace_mixtures(3, 5000, seed=0)
    result = fit_ica(data.mixtures, "laplace")
    assert result.converged
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND
    assert mean_correlation_coefficient(result.sources, data.sources) > 0.99


def test_gaussian_prior_fails_on_laplace_sources():
    # With whitened inputs the Gaussian likelihood is the same for every rotation,
    # so W stays at its start and the sources remain mixed.
    data = make_laplace_mixtures(3, 5000, seed=0)
    result = fit_ica(data.mixtures, "gaussian")
    assert amari_distance(result.unmixing, data.mixing) > 0.3


def test_subgaussian_prior_recovers_uniform_sources():
    data = make_uniform_mixtures(3, 5000, seed=0)
    result = fit_ica(data.mixtures, "generalized_normal", prior_options={"beta": 8.0})
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND


def test_supergaussian_prior_fails_on_uniform_sources():
    data = make_uniform_mixtures(3, 5000, seed=0)
    result = fit_ica(data.mixtures, "laplace")
    assert amari_distance(result.unmixing, data.mixing) > 0.3


def test_images_recovered_with_shape_four_prior():
    # log p(s) = -20 s^4: generalized normal with beta 4 and scale 20^(-1/4),
    # on centred mixtures without whitening, W starting at the identity.
    data = make_image_mixtures(size=100)
    result = fit_ica(
        data.mixtures,
        "generalized_normal",
        prior_options={"beta": 4.0, "scale": 20**-0.25},
        whiten=False,
    )
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND
    assert mean_correlation_coefficient(result.sources, data.sources) > 0.99


def _ou_fit(linear):
    data = make_ou_mixtures(steps=20_000, seed=0)
    prior = GaussianPrior(scale=data.sources.var(dim=0).sqrt())
    result = fit_ica(data.mixtures, prior, whiten=False, linear=linear)
    return data, result


def test_rotation_with_known_variances_recovers_ou_sources():
    data, result = _ou_fit("rotation")
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND
    assert mean_correlation_coefficient(result.sources, data.sources) > 0.99


def test_plain_unmixing_with_gaussian_prior_fails_on_ou_sources():
    data, result = _ou_fit("unmixing")
    assert amari_distance(result.unmixing, data.mixing) > 0.3


def test_final_objective_matches_scipy_likelihood():
    # Reference: mean scipy Laplace log-density of W_total (x - mean) plus
    # log|det W| from numpy; the whitening log-determinant is not part of F.
    data = make_laplace_mixtures(2, 2000, seed=1)
    result = fit_ica(data.mixtures, "laplace")
    inputs = (data.mixtures - result.mean) @ result.whitening.T
    latents = (inputs @ result.weight.T).numpy()
    expected = stats.laplace.logpdf(latents).sum(axis=1).mean()
    expected += np.linalg.slogdet(result.weight.numpy())[1]
    assert result.history["objective"][-1] == pytest.approx(expected, rel=1e-9)


def test_result_fields_are_consistent():
    data = make_laplace_mixtures(3, 1000, seed=2)
    result = fit_ica(data.mixtures, LaplacePrior(), components=2)
    assert result.unmixing.shape == (2, 3)
    assert result.weight.shape == (2, 2)
    assert result.whitening.shape == (2, 3)
    assert result.sources.shape == (1000, 2)
    torch.testing.assert_close(
        result.sources, (data.mixtures - result.mean) @ result.unmixing.T
    )
    assert set(result.history) == {"objective", "alignment", "entropy"}
    assert result.iterations >= 1


def test_fit_is_reproducible():
    data = make_laplace_mixtures(2, 1000, seed=3)
    first = fit_ica(data.mixtures, linear="rotation", optimizer="adam", max_iter=50)
    second = fit_ica(data.mixtures, linear="rotation", optimizer="adam", max_iter=50)
    torch.testing.assert_close(first.unmixing, second.unmixing)


@pytest.mark.parametrize(
    ("optimizer", "lr", "batch_size"),
    [
        ("adam", 0.05, None),
        ("sgd", 0.5, None),
        # Mini-batch Adam takes about 30 s on two cores.
        pytest.param("adam", 0.02, 1000, marks=pytest.mark.slow),
    ],
)
def test_gradient_optimizers_recover_sources(optimizer, lr, batch_size):
    data = make_laplace_mixtures(2, 4000, seed=4)
    result = fit_ica(
        data.mixtures,
        "laplace",
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size,
        max_iter=150,
    )
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND


def test_float32_fit():
    data = make_laplace_mixtures(2, 2000, seed=5)
    result = fit_ica(data.mixtures, "laplace", dtype="float32")
    assert result.unmixing.dtype == torch.float32
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND


def test_max_iter_reached_logs_warning(caplog):
    data = make_laplace_mixtures(2, 500, seed=6)
    result = fit_ica(data.mixtures, "laplace", max_iter=2)
    assert not result.converged
    assert "without meeting tol" in caplog.text


def test_plot_is_agg_safe():
    assert matplotlib.get_backend()  # any backend; the figure does not use pyplot
    data = make_laplace_mixtures(2, 300, seed=7)
    result = fit_ica(data.mixtures, "laplace")
    figure = plot_ica(data.mixtures, result.sources, data.sources, samples=100)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6
    image = make_image_mixtures(size=10)
    figure = plot_ica(image.mixtures, image.sources, image_shape=(10, 10))
    assert len(figure.axes) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "bfgs"}, "optimizer must be one of"),
        ({"linear": "affine"}, "linear must be one of"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": -1.0}, "tol must be a finite number >= 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"batch_size": 10}, "batch_size applies to optimizer='adam' or 'sgd'"),
        ({"optimizer": "adam", "batch_size": 0}, "batch_size must be a positive"),
        ({"center": False}, "whiten=True needs centred data"),
        ({"components": 4}, "components=4 exceeds the 2 mixtures"),
        ({"components": 0}, "components must be a positive integer"),
        ({"prior": "cauchy"}, "unknown prior 'cauchy'"),
    ],
)
def test_invalid_arguments_rejected(kwargs, message):
    data = make_laplace_mixtures(2, 100, seed=8)
    with pytest.raises(ValueError, match=message):
        fit_ica(data.mixtures, **kwargs)


def test_nonfinite_data_rejected():
    X = torch.randn(50, 2)
    X[4, 0] = math.inf
    with pytest.raises(ValueError, match="X contains 1 non-finite"):
        fit_ica(X)


def test_too_few_samples_rejected():
    with pytest.raises(ValueError, match="2 samples for 3 mixtures"):
        fit_ica(torch.randn(2, 3))


def test_rank_deficient_mixtures_rejected():
    sources = torch.randn(200, 1)
    X = torch.cat([sources, 2 * sources], dim=1)
    with pytest.raises(ValueError, match="mixtures are rank deficient"):
        fit_ica(X)


def test_rotation_needs_square_weight():
    data = make_laplace_mixtures(3, 100, seed=9)
    with pytest.raises(ValueError, match="linear='rotation' needs a square W"):
        fit_ica(data.mixtures, linear="rotation", components=2, whiten=False)


def test_diverging_fit_reports_singular_weight():
    # With the Gaussian prior, SGD with step 1e6 multiplies W by about -1e6 per
    # step until it overflows; the fit names the non-finite values.
    data = make_laplace_mixtures(2, 200, seed=10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_ica(data.mixtures, "gaussian", optimizer="sgd", lr=1e6, max_iter=100)


def test_newton_is_default_and_matches_lbfgs():
    # Reference: L-BFGS run to a tight tolerance on the same objective. Both
    # must reach the same maximum of the LDM objective.
    data = make_laplace_mixtures(3, 4000, seed=11)
    options = {"prior": "generalized_normal", "prior_options": {"beta": 1.5}}
    default = fit_ica(data.mixtures, **options)
    explicit = fit_ica(data.mixtures, optimizer="newton", **options)
    newton = fit_ica(data.mixtures, optimizer="newton", tol=1e-10, **options)
    lbfgs = fit_ica(data.mixtures, optimizer="lbfgs", tol=1e-12, **options)
    torch.testing.assert_close(default.unmixing, explicit.unmixing)
    assert newton.converged
    assert newton.history["objective"][-1] == pytest.approx(
        lbfgs.history["objective"][-1], abs=1e-8
    )
    torch.testing.assert_close(newton.unmixing, lbfgs.unmixing, atol=1e-4, rtol=0)


def test_newton_history_ends_at_returned_weight():
    # Reference: the objective at the returned W written out with scipy's
    # Laplace log-density and numpy's log-determinant.
    data = make_laplace_mixtures(4, 3000, seed=12)
    result = fit_ica(data.mixtures, "laplace", optimizer="newton")
    latents = ((data.mixtures - result.mean) @ result.whitening.T) @ result.weight.T
    expected = stats.laplace.logpdf(latents.numpy()).sum(axis=1).mean()
    expected += np.linalg.slogdet(result.weight.numpy())[1]
    assert result.history["objective"][-1] == pytest.approx(expected, rel=1e-10)
    # Rejected line-search trials are lower; the returned W has the highest value.
    assert max(result.history["objective"]) == result.history["objective"][-1]
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND


def test_newton_without_whitening_recovers_images():
    data = make_image_mixtures(size=60)
    result = fit_ica(
        data.mixtures,
        "generalized_normal",
        prior_options={"beta": 4.0, "scale": 20**-0.25},
        whiten=False,
        optimizer="newton",
    )
    assert result.converged
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND


def test_default_optimizer_falls_back_to_lbfgs():
    # A trainable prior scale is outside Newton's scope; the default picks L-BFGS
    # and still learns the scale.
    data = make_laplace_mixtures(2, 2000, seed=13)
    prior = LaplacePrior(learn_scale=True)
    result = fit_ica(data.mixtures, prior)
    assert amari_distance(result.unmixing, data.mixing) < RECOVERY_BOUND
    assert float(prior.parameter_value("scale").detach()) != pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"linear": "rotation"}, "does not apply to linear='rotation'"),
        ({"whiten": False, "components": 1}, "non-square 1x2 W"),
        ({"prior": LaplacePrior(learn_scale=True)}, "trainable prior parameters"),
        ({"batch_size": 10}, "batch_size applies to optimizer='adam' or 'sgd'"),
    ],
)
def test_newton_rejects_unsupported_fits(kwargs, message):
    data = make_laplace_mixtures(2, 100, seed=14)
    with pytest.raises(ValueError, match=message):
        fit_ica(data.mixtures, optimizer="newton", **kwargs)
