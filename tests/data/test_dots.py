"""Tests of the dot-motion generators.

References: the path formulas written out in the test, and the blob rendering
formula (Gaussian of standard deviation 1 pixel, peak 1).
"""

import math

import numpy as np
import pytest
import torch

from ldm_pyro.data import make_dot_motion, make_dot_motion_splits


def test_shapes_and_determinism():
    for task in ("figure8", "square", "circle"):
        data = make_dot_motion(task, 3, 25, seed=4)
        assert data.frames.shape == (3, 25, 100)
        assert data.positions.shape == (3, 25, 2)
        assert data.targets.shape == (3, 25, 2)
        assert data.noise_var.shape == (3, 25)
        again = make_dot_motion(task, 3, 25, seed=4)
        torch.testing.assert_close(again.frames, data.frames, rtol=0, atol=0)
        other = make_dot_motion(task, 3, 25, seed=5)
        assert not torch.equal(other.frames, data.frames)


def test_figure8_published_path():
    data = make_dot_motion("figure8", 2, 30, published=True)
    theta = torch.arange(30) * 0.1 * math.pi
    expected = torch.stack([theta.cos(), theta.sin() * theta.cos()], -1)
    torch.testing.assert_close(data.positions[0], expected)
    # Published setting: every sequence follows the same path.
    torch.testing.assert_close(data.positions[1], data.positions[0])
    assert not torch.equal(data.frames[0], data.frames[1])
    torch.testing.assert_close(data.noise_var, torch.full((2, 30), 0.01))


def test_figure8_random_phase_and_speed():
    data = make_dot_motion("figure8", 4, 10, seed=1)
    assert not torch.allclose(data.positions[0], data.positions[1])
    # Same path up to phase: x = cos(theta), y = sin(theta) cos(theta).
    x, y = data.positions[..., 0], data.positions[..., 1]
    torch.testing.assert_close(y.square(), (1 - x.square()) * x.square())
    fast = make_dot_motion("figure8", 4, 10, seed=1, random_speed=True)
    assert not torch.allclose(fast.positions, data.positions)


def test_square_path_and_surrogate():
    data = make_dot_motion("square", 1, 21, published=True)
    positions = data.positions[0]
    expected_corners = {0: (1.0, 0.0), 5: (0.0, 1.0), 10: (-1.0, 0.0), 15: (0.0, -1.0)}
    for t, point in expected_corners.items():
        torch.testing.assert_close(positions[t], torch.tensor(point))
    torch.testing.assert_close(positions[2], torch.tensor([1.0, 0.8]))
    torch.testing.assert_close(positions[20], positions[0])
    angle = 2 * math.pi * torch.arange(21) * 0.2 / 4.0
    torch.testing.assert_close(
        data.targets[0], torch.stack([angle.cos(), angle.sin()], -1)
    )
    assert bool((positions.abs().amax(-1) == 1).all())


def test_circle_path_noise_levels():
    data = make_dot_motion("circle", 200, 50, seed=2)
    torch.testing.assert_close(data.positions.norm(dim=-1), torch.ones(200, 50))
    published = make_dot_motion("circle", 2, 5, published=True)
    torch.testing.assert_close(
        published.positions[:, 0], torch.tensor([[1.0, 0.0]] * 2)
    )
    # v = max(0, Exp(mean 0.3) - 0.09): P(v = 0) = 1 - exp(-0.3) ~ 0.259 and
    # E[v] = 0.3 exp(-0.3) ~ 0.222; 10 000 draws give standard errors < 0.005.
    zero_fraction = float((data.noise_var == 0).double().mean())
    assert abs(zero_fraction - (1 - math.exp(-0.3))) < 0.02
    assert abs(float(data.noise_var.mean()) - 0.3 * math.exp(-0.3)) < 0.02


def test_frames_render_blob_with_noise():
    data = make_dot_motion("figure8", 1, 3, published=True)
    # Reference: the blob formula at pixel (p + 3) * 10 / 6, clamped to [0, 9].
    p = data.positions[0, 1].numpy()
    column, row = np.clip((p + 3) * 10 / 6, 0, 9)
    grid = np.arange(10)
    blob = np.exp(-0.5 * ((grid[:, None] - row) ** 2 + (grid[None, :] - column) ** 2))
    residual = data.frames[0, 1].numpy() - blob.reshape(-1)
    # Pixel noise of variance 0.01: the residual std is near 0.1.
    assert 0.07 < residual.std() < 0.13
    assert abs(residual.mean()) < 0.04


def test_splits_use_independent_streams():
    splits = make_dot_motion_splits("figure8", 3, 2, 10, seed=0)
    assert splits.train.frames.shape == (3, 10, 100)
    assert splits.test.frames.shape == (2, 10, 100)
    assert not torch.allclose(splits.train.positions[:2], splits.test.positions)


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        make_dot_motion("spiral", 1)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        make_dot_motion("figure8", 1, 0)
    with pytest.raises(ValueError, match="speed_range must satisfy"):
        make_dot_motion("figure8", 1, speed_range=(1.0, 0.5))
