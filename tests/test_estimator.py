import numpy as np
import pytest

from ldm_pyro import LDM

FAST = ["encoder.hidden=[16]", "encoder.projector=[]", "encoder.latent_dim=4"]


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    return LDM(epochs=2, batch_size=32, overrides=FAST).fit(X), X


def test_fit_transform_shapes(fitted):
    model, X = fitted
    features = model.transform(X)
    assert features.shape[0] == 120
    assert features.ndim == 2
    assert model.n_features_in_ == 6
    assert len(model.history_) == 2


def test_latents_output(fitted):
    model, X = fitted
    model.output = "latents"
    assert model.transform(X[:5]).shape == (5, 4)


def test_transform_rejects_empty(fitted):
    model, X = fitted
    with pytest.raises(ValueError, match="at least one sample"):
        model.transform(X[:0])


def test_transform_rejects_other_width(fitted):
    model, X = fitted
    with pytest.raises(ValueError, match=r"sample shape \(6,\)"):
        model.transform(X[:, :5])


def test_fit_rejects_nan():
    X = np.ones((40, 3))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        LDM(epochs=1, batch_size=16, overrides=FAST).fit(X)


def test_transform_before_fit():
    with pytest.raises(ValueError, match="not fitted yet"):
        LDM().transform(np.ones((2, 3)))


def test_batch_larger_than_data():
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match=r"LDM\(batch_size=...\)"):
        LDM(epochs=1, overrides=FAST).fit(X)


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    model = LDM(spec="simclr", epochs=3, overrides=FAST)
    params = model.get_params()
    assert params["spec"] == "simclr"
    assert params["epochs"] == 3
    copy = clone(model)
    assert copy.get_params() == params
