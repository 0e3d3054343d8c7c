import numpy as np
import pytest
import torch

from ldm_pyro.evaluation.ica import amari_distance, mean_correlation_coefficient


def test_amari_zero_for_scaled_permutation():
    mixing = np.random.default_rng(0).standard_normal((3, 3))
    permutation = np.array([[0, 2.0, 0], [0, 0, -0.5], [3.0, 0, 0]])
    unmixing = permutation @ np.linalg.inv(mixing)
    assert amari_distance(unmixing, mixing) == pytest.approx(0.0, abs=1e-12)


def test_amari_one_for_equal_magnitudes():
    assert amari_distance(np.ones((4, 4)), np.eye(4)) == pytest.approx(1.0)


def test_amari_hand_computed():
    # P = [[1, 0.5], [0.25, 1]]: rows give 0.5 + 0.25, columns 0.25 + 0.5;
    # normalized by 2 D (D - 1) = 4.
    product = np.array([[1.0, 0.5], [0.25, 1.0]])
    assert amari_distance(product, np.eye(2)) == pytest.approx(1.5 / 4)


def test_amari_accepts_tensors_and_nonsquare_factors():
    unmixing = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mixing = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, 7.0]])
    assert amari_distance(unmixing, mixing) == pytest.approx(0.0)


def test_amari_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="must compose to a square matrix"):
        amari_distance(np.eye(2), np.eye(3))


def test_amari_zero_row_rejected():
    with pytest.raises(ValueError, match="all-zero row or column"):
        amari_distance(np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2))


def test_amari_single_source_rejected():
    with pytest.raises(ValueError, match="needs D >= 2"):
        amari_distance(np.eye(1), np.eye(1))


def test_amari_nonfinite_rejected():
    with pytest.raises(ValueError, match="unmixing contains NaN"):
        amari_distance(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.eye(2))


def test_mcc_one_for_permuted_scaled_sources():
    sources = np.random.default_rng(1).laplace(size=(500, 3))
    recovered = np.stack(
        [-2 * sources[:, 2], sources[:, 0] + 4, 0.1 * sources[:, 1]], 1
    )
    assert mean_correlation_coefficient(recovered, sources) == pytest.approx(1.0)


def test_mcc_matches_hand_matching():
    # Reference: numpy.corrcoef and an exhaustive search over the 2 matchings.
    rng = np.random.default_rng(2)
    true = rng.standard_normal((1000, 2))
    recovered = true @ np.array([[0.9, 0.4], [0.3, 0.8]]) + 0.1 * rng.standard_normal(
        (1000, 2)
    )
    correlation = np.abs(np.corrcoef(recovered.T, true.T)[:2, 2:])
    best = max(
        (correlation[0, 0] + correlation[1, 1]) / 2,
        (correlation[0, 1] + correlation[1, 0]) / 2,
    )
    assert mean_correlation_coefficient(recovered, true) == pytest.approx(best)


def test_mcc_low_for_independent_signals():
    rng = np.random.default_rng(3)
    value = mean_correlation_coefficient(
        rng.standard_normal((5000, 3)), rng.standard_normal((5000, 3))
    )
    assert value < 0.05


def test_mcc_sample_mismatch_rejected():
    with pytest.raises(ValueError, match="same number of samples"):
        mean_correlation_coefficient(np.ones((5, 2)), np.ones((6, 2)))


def test_mcc_constant_source_rejected():
    recovered = np.random.default_rng(0).standard_normal((10, 2))
    recovered[:, 1] = 3.0
    with pytest.raises(ValueError, match="recovered has a constant column 1"):
        mean_correlation_coefficient(
            recovered, np.random.default_rng(1).random((10, 2))
        )
