"""Tests of the wobbly swirl generator."""

import math

import numpy as np
import pytest

from ldm_pyro.data.wobbly import (
    _drift,
    clamped_fraction,
    make_wobbly,
    render_blobs,
    simulate_wobbly,
    swirl_coordinates,
    swirl_frames,
)


def test_wobbly_seeded_and_shaped():
    first = make_wobbly(3, 7, seed=4)
    second = make_wobbly(3, 7, seed=4)
    assert first.frames.shape == (3, 7, 100)
    assert first.positions.shape == (3, 7, 2)
    assert np.array_equal(first.frames.numpy(), second.frames.numpy())
    assert not np.array_equal(
        first.frames.numpy(), make_wobbly(3, 7, seed=5).frames.numpy()
    )


def test_wobbly_starts_on_unit_circle():
    positions = simulate_wobbly(50, 2, seed=0)
    np.testing.assert_allclose(np.hypot(*positions[:, 0].T), 1.0)


def test_drift_polar_form():
    # Reference: Eq. 16 in polar form, d theta/dt = 1 and
    # dr/dt = a k cos(k (theta - theta_0)) with a = 0.5, k = 4, theta_0 = -3 pi / 8.
    rng = np.random.default_rng(0)
    state = rng.standard_normal((20, 2))
    velocity = _drift(state, restoring=0.0)
    r = np.hypot(*state.T)
    theta = np.arctan2(state[:, 1], state[:, 0])
    radial = (velocity * state).sum(-1) / r
    angular = (state[:, 0] * velocity[:, 1] - state[:, 1] * velocity[:, 0]) / r**2
    np.testing.assert_allclose(angular, 1.0)
    np.testing.assert_allclose(radial, 2.0 * np.cos(4 * (theta + 3 * math.pi / 8)))


def test_restoring_drift_pulls_to_orbit():
    state = np.array([[3.0, 0.0]])
    extra = _drift(state, restoring=1.0) - _drift(state, restoring=0.0)
    target = 1 + 0.5 * math.sin(4 * (0 + 3 * math.pi / 8))
    np.testing.assert_allclose(extra, [[-(3.0 - target), 0.0]], atol=1e-12)


def test_published_generator_pins_more_frames():
    published = clamped_fraction(simulate_wobbly(500, 100, published=True))
    default = clamped_fraction(simulate_wobbly(500, 100))
    assert published > 0.3
    assert default < 0.01


def test_blob_peak_and_clamp():
    frame = render_blobs(np.array([0.0, 0.0]))
    assert frame.shape == (10, 10)
    row, col = np.unravel_index(frame.argmax(), frame.shape)
    assert (row, col) == (5, 5)
    pinned = render_blobs(np.array([10.0, -10.0]))
    # x = 10 clamps to column 9 and y = -10 to row 0.
    assert pinned[0, 9] == 1.0


def test_swirl_formula_written_out():
    # Reference: skimage.transform.swirl's mapping with centre (5, 5), strength 10,
    # radius 200: theta = 10 exp(-rho / (40 log 2)) + atan2(y - 5, x - 5).
    coordinates = swirl_coordinates()
    y, x = 2, 7
    rho = math.hypot(x - 5, y - 5)
    theta = 10 * math.exp(-rho / (200 / 5 * math.log(2))) + math.atan2(y - 5, x - 5)
    assert math.isclose(coordinates[1, y, x], 5 + rho * math.cos(theta))
    assert math.isclose(coordinates[0, y, x], 5 + rho * math.sin(theta))


def test_swirl_keeps_constant_image():
    frames = np.full((2, 10, 10), 0.3)
    np.testing.assert_allclose(swirl_frames(frames), frames)


def test_wobbly_rejects_bad_length():
    with pytest.raises(ValueError, match="length must be a positive integer"):
        simulate_wobbly(2, 0)
