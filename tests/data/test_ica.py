import math

import numpy as np
import pytest
import torch

from ldm_pyro.data.ica import (
    PUBLISHED_IMAGE_MIXING,
    make_image_mixtures,
    make_laplace_mixtures,
    make_ou_mixtures,
    make_uniform_mixtures,
    mix_sources,
    random_mixing_matrix,
    rotation_matrix,
    simulate_ornstein_uhlenbeck,
)


@pytest.mark.parametrize("make", [make_laplace_mixtures, make_uniform_mixtures])
def test_mixtures_are_sources_times_mixing(make):
    data = make(4, 2000, seed=3)
    assert data.sources.shape == (2000, 4)
    assert data.mixing.shape == (4, 4)
    torch.testing.assert_close(data.mixtures, data.sources @ data.mixing.T)


@pytest.mark.parametrize("make", [make_laplace_mixtures, make_uniform_mixtures])
def test_generators_are_seeded(make):
    first = make(3, 100, seed=5)
    second = make(3, 100, seed=5)
    other = make(3, 100, seed=6)
    torch.testing.assert_close(first.mixtures, second.mixtures)
    assert not torch.allclose(first.sources, other.sources)


def test_laplace_sources_have_unit_variance_and_excess_kurtosis():
    # A Laplace variable has variance 2 b^2 = 1 here and excess kurtosis 3.
    sources = make_laplace_mixtures(2, 200_000, seed=0).sources
    variance = sources.var(dim=0)
    kurtosis = (sources**4).mean(dim=0) / variance**2 - 3
    torch.testing.assert_close(variance, torch.ones(2), atol=0.02, rtol=0)
    torch.testing.assert_close(kurtosis, torch.full((2,), 3.0), atol=0.2, rtol=0)


def test_uniform_sources_bounded():
    sources = make_uniform_mixtures(2, 5000, seed=0).sources
    assert float(sources.abs().max()) <= math.sqrt(3.0)


def test_published_mixing_used_for_images():
    data = make_image_mixtures(size=50)
    torch.testing.assert_close(data.mixing, torch.tensor(PUBLISHED_IMAGE_MIXING))
    assert data.sources.shape == (2500, 2)
    torch.testing.assert_close(data.sources.mean(dim=0), torch.zeros(2))
    span = data.sources.max(dim=0).values - data.sources.min(dim=0).values
    assert bool((span <= 1.0).all())
    assert bool((span > 0.3).all())


def test_image_size_checked():
    with pytest.raises(ValueError, match="size must be an integer in"):
        make_image_mixtures(size=1000)


def test_ou_variances_match_stationary_values():
    # Stationary variance of the Euler-Maruyama recursion:
    # sigma^2 dt / (1 - (1 - theta dt)^2), 0.025 and 0.2273 for theta 2 and 0.2.
    path = simulate_ornstein_uhlenbeck((2.0, 0.2), sigma=0.3, dt=0.1, steps=50_000)
    expected = [0.09 * 0.1 / (1 - (1 - theta * 0.1) ** 2) for theta in (2.0, 0.2)]
    # The slow process has a correlation time of 1 / (theta dt) = 50 steps, so
    # 50 000 steps give about 1000 effective samples: a 10% tolerance.
    np.testing.assert_allclose(path.var(axis=0), expected, rtol=0.1)


def test_ou_recursion_matches_hand_loop():
    thetas = (2.0, 0.2)
    path = simulate_ornstein_uhlenbeck(thetas, steps=20, seed=4)
    noise = 0.3 * math.sqrt(0.1) * np.random.default_rng(4).standard_normal((20, 2))
    state = np.zeros(2)
    for step in range(20):
        state = state - np.array(thetas) * state * 0.1 + noise[step]
        np.testing.assert_allclose(path[step], state, rtol=1e-12)


def test_ou_mixtures_use_rotation():
    data = make_ou_mixtures(steps=1000, seed=1)
    half = math.sqrt(0.5)
    torch.testing.assert_close(data.mixing, torch.tensor([[half, -half], [half, half]]))
    assert data.mixtures.shape == (1000, 2)


def test_rotation_matrix_is_orthogonal():
    rotation = rotation_matrix(30.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(2), atol=1e-15)


def test_random_mixing_well_conditioned():
    mixing = random_mixing_matrix(20, seed=2)
    assert np.linalg.cond(mixing) < 200


def test_rank_deficient_mixing_rejected():
    sources = np.random.default_rng(0).laplace(size=(100, 2))
    with pytest.raises(ValueError, match="has rank 1 < 2"):
        mix_sources(sources, [[1.0, 2.0], [2.0, 4.0]])


def test_nonfinite_sources_rejected():
    sources = np.ones((10, 2))
    sources[3, 1] = np.nan
    with pytest.raises(ValueError, match="sources contains 1 non-finite"):
        mix_sources(sources, np.eye(2))


def test_fewer_samples_than_sources_rejected():
    with pytest.raises(ValueError, match="1 samples but 3 components"):
        mix_sources(np.ones((1, 3)), np.eye(3))


def test_mixing_shape_checked():
    with pytest.raises(ValueError, match=r"mixing must have shape \(n, 2\)"):
        mix_sources(np.ones((5, 2)), np.eye(3))


def test_ou_needs_two_rates():
    with pytest.raises(ValueError, match="thetas must hold 2 rates"):
        make_ou_mixtures((1.0, 2.0, 3.0))


def test_unstable_ou_step_rejected():
    with pytest.raises(ValueError, match="theta \\* dt must lie in"):
        simulate_ornstein_uhlenbeck((30.0,), dt=0.1)


def test_invalid_counts_rejected():
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        make_laplace_mixtures(2, 0)
