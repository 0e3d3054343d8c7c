"""Tests of the affine R^2 and the matched category accuracy."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from ldm_pyro.evaluation import affine_r2, matched_category_accuracy


def test_affine_r2_of_affine_image_is_one():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((300, 2))
    learned = truth @ rng.standard_normal((2, 3)) + 4.0
    fit = affine_r2(learned[:200], truth[:200], learned[200:], truth[200:])
    assert fit.r2 == pytest.approx(1.0)


def test_affine_r2_matches_sklearn():
    # Reference: sklearn LinearRegression + r2_score with variance weighting.
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((400, 2))
    learned = np.tanh(truth @ rng.standard_normal((2, 2))) + 0.3 * rng.standard_normal(
        (400, 2)
    )
    regression = LinearRegression().fit(learned[:300], truth[:300])
    expected = r2_score(
        truth[300:], regression.predict(learned[300:]), multioutput="variance_weighted"
    )
    fit = affine_r2(learned[:300], truth[:300], learned[300:], truth[300:])
    assert fit.r2 == pytest.approx(expected)


def test_affine_r2_accepts_sequences():
    rng = np.random.default_rng(2)
    truth = rng.standard_normal((10, 8, 2))
    fit = affine_r2(2 * truth, truth, 2 * truth, truth)
    assert fit.r2 == pytest.approx(1.0)


def test_affine_r2_rejects_mismatch():
    with pytest.raises(ValueError, match="same number of samples"):
        affine_r2(
            np.zeros((5, 2)), np.zeros((4, 2)), np.zeros((3, 2)), np.zeros((3, 2))
        )


def test_matched_accuracy_hand_computation():
    # Categories 2, 0, 1 stand for labels 0, 1, 2; one sample is wrong.
    categories = [2, 2, 0, 0, 1, 1, 0]
    labels = [0, 0, 1, 1, 2, 2, 2]
    assert matched_category_accuracy(categories, labels) == pytest.approx(6 / 7)
