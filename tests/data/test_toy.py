"""Tests of the identifiability toy generator."""

import numpy as np
import pytest

from ldm_pyro.data.toy import LeakyReLUMixer, make_toy_pairs


def test_toy_seeded_and_shaped():
    pairs = make_toy_pairs(50, 3, seed=1)
    again = make_toy_pairs(50, 3, seed=1)
    assert pairs.x.shape == (50, 100)
    assert pairs.x_prime.shape == (50, 100)
    assert pairs.z.shape == (50, 3)
    assert np.array_equal(pairs.x.numpy(), again.x.numpy())


def test_toy_transition_formula():
    # z' - (R z + 0.1 tanh(R z)) is the noise; with alpha = 0 it vanishes, and the
    # map is then a fixed function: equal z give equal z'.
    pairs = make_toy_pairs(20, 2, seed=0, noise_variance=0.0)
    rotated_norm = np.linalg.norm(pairs.z.numpy(), axis=1)
    # |R z + 0.1 tanh(R z)| lies between |z| and 1.1 |z| for a rotation R.
    norms = np.linalg.norm(pairs.z_prime.numpy(), axis=1)
    assert np.all(norms >= rotated_norm - 1e-12)
    assert np.all(norms <= 1.1 * rotated_norm + 1e-12)


def test_mixer_is_injective():
    mixer = LeakyReLUMixer(4, seed=0)
    z = np.random.default_rng(0).standard_normal((200, 4))
    x = mixer(z)
    # Invert layer by layer: orthogonal weights and the LeakyReLU are invertible.
    h = x
    for index in range(len(mixer.weights) - 1, -1, -1):
        if index < len(mixer.weights) - 1:
            h = np.where(h > 0, h, h / 0.2)
        h = (h - mixer.biases[index]) @ mixer.weights[index]
    np.testing.assert_allclose(h, z, atol=1e-8)


def test_train_and_test_share_the_mixer():
    train = make_toy_pairs(5, 2, seed=0, mixer_seed=9)
    test = make_toy_pairs(5, 2, seed=1, mixer_seed=9)
    assert not np.array_equal(train.z.numpy(), test.z.numpy())
    mixer_check = make_toy_pairs(5, 2, seed=1, mixer_seed=9)
    assert np.array_equal(test.x.numpy(), mixer_check.x.numpy())


def test_toy_rejects_bad_dimension():
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        make_toy_pairs(10, 0)
