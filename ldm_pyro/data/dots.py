r"""Dot-motion videos: a Gaussian blob moving on a figure-eight, square or circle.

Each frame is 10x10 pixels with a Gaussian blob (standard deviation 1 pixel, peak
1) at pixel position ``(p + 3) * 10 / 6`` of each coordinate ``p``, clamped to
``[0, 9]`` (``x`` is the column, ``y`` the row), plus independent pixel noise of
variance ``v_t``. Paths, with step ``t = 0, 1, ...`` and phase offset
:math:`\phi`:

- ``"figure8"``: :math:`p_t = (\cos\theta_t, \sin\theta_t \cos\theta_t)`,
  :math:`\theta_t = \pi t\,dt / T_p + \phi`, ``dt = 0.1``, ``T_p = 1``
  (20 steps a loop), ``v_t = 0.01``.
- ``"square"``: the square with corners :math:`(\pm 1, \pm 1)`, traversed
  counterclockwise from :math:`p_0 = (1, 0)` at constant speed, ``dt = 0.2``,
  period ``4`` (5 steps a side), ``v_t = 0.1``. The square is not linearly
  decodable, so the probe target is the surrogate
  :math:`(\cos 2\pi s_t, \sin 2\pi s_t)` with phase :math:`s_t = t\,dt / T_p +
  \phi / 2\pi`.
- ``"circle"``: :math:`p_t` is :math:`p_{t-1}` rotated by
  :math:`2\pi\,dt / T_p` plus :math:`N(0, 0.05 I)`, projected to the unit circle,
  ``dt = 0.1``, ``T_p = 2``; the noise variance varies per step,
  :math:`v_t = \max(0, \mathrm{Exp}(\text{mean } 0.3) - 0.09)`. This is the only
  task with process noise.

With ``published=True`` every sequence starts at phase 0 (``p_0 = (1, 0)``) and
moves at the nominal speed, so the sequences differ only in their noise, as in
the authors' public implementation. By default each sequence draws a start phase
uniformly in :math:`[0, 2\pi)`, and ``random_speed`` additionally scales the
angular speed per sequence by a factor uniform in ``speed_range``.

References:
    F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
    Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Fig. 4, A3, A4.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .wobbly import render_blobs

TASKS = ("figure8", "square", "circle")

#: Step ``dt``, period ``T_p`` and pixel-noise variance of each task (the circle's
#: noise variance is drawn per step).
TASK_SETTINGS = {
    "figure8": {"dt": 0.1, "period": 1.0, "noise_var": 0.01},
    "square": {"dt": 0.2, "period": 4.0, "noise_var": 0.1},
    "circle": {"dt": 0.1, "period": 2.0, "noise_var": None},
}


class DotMotion(NamedTuple):
    """A batch of dot-motion videos.

    Shapes:
        ``B`` sequences of ``T`` frames of 100 pixels.
    """

    #: Noisy frames, ``(B, T, 100)``, row-major 10x10.
    frames: torch.Tensor
    #: Blob positions ``p_t`` before clamping, ``(B, T, 2)``.
    positions: torch.Tensor
    #: Probe targets, ``(B, T, 2)``: the positions, or the sinusoidal surrogate
    #: for the square.
    targets: torch.Tensor
    #: Pixel-noise variances ``v_t``, ``(B, T)``.
    noise_var: torch.Tensor


class DotMotionSplits(NamedTuple):
    """Train and test videos drawn from independent random streams."""

    train: DotMotion
    test: DotMotion


def make_dot_motion(
    task: str,
    num_sequences: int,
    num_steps: int = 100,
    *,
    seed: int | np.random.SeedSequence = 0,
    published: bool = False,
    random_speed: bool = False,
    speed_range: tuple[float, float] = (0.8, 1.2),
    dtype: torch.dtype | None = None,
) -> DotMotion:
    """Generate seeded dot-motion videos.

    Args:
        task: ``"figure8"``, ``"square"`` or ``"circle"``.
        num_sequences: number of sequences ``B``.
        num_steps: frames per sequence ``T``.
        seed: integer seed or a ``numpy.random.SeedSequence``; the same seed gives
            the same videos.
        published: every sequence starts at phase 0 with the nominal speed.
        random_speed: draw a speed factor per sequence (ignored when
            ``published``).
        speed_range: lower and upper bound of the speed factor.
        dtype: floating dtype of the tensors; the default dtype when ``None``.

    Returns:
        A :class:`DotMotion`.

    Raises:
        ValueError: for an unknown task, non-positive sizes or an invalid
            ``speed_range``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    for name, value in (("num_sequences", num_sequences), ("num_steps", num_steps)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    low, high = speed_range
    if not 0 < low <= high:
        raise ValueError(
            f"speed_range must satisfy 0 < low <= high, got {tuple(speed_range)}"
        )
    rng = np.random.default_rng(seed)
    settings = TASK_SETTINGS[task]
    shape = (num_sequences, 1)
    if published:
        phase = np.zeros(shape)
        speed = np.ones(shape)
    else:
        phase = rng.uniform(0.0, 2.0 * math.pi, size=shape)
        speed = rng.uniform(low, high, size=shape) if random_speed else np.ones(shape)
    steps = np.arange(num_steps)[None, :]
    # Phase advance per step, in cycles.
    cycles_per_step = speed * settings["dt"] / settings["period"]
    if task == "figure8":
        # theta advances by pi dt / T_p per step; cos(theta) has period 2 pi.
        theta = phase + math.pi * cycles_per_step * steps
        positions = np.stack([np.cos(theta), np.sin(theta) * np.cos(theta)], axis=-1)
        targets = positions
    elif task == "square":
        cycle = phase / (2.0 * math.pi) + cycles_per_step * steps
        positions = _square_path(cycle)
        angle = 2.0 * math.pi * cycle
        targets = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    else:
        positions = _circle_path(rng, phase[:, 0], speed[:, 0], num_steps, settings)
        targets = positions
    if settings["noise_var"] is None:
        noise_var = np.maximum(
            0.0, rng.exponential(0.3, size=positions.shape[:2]) - 0.09
        )
    else:
        noise_var = np.full(positions.shape[:2], settings["noise_var"])
    frames = render_blobs(positions).reshape(num_sequences, num_steps, 100)
    frames = frames + np.sqrt(noise_var)[..., None] * rng.standard_normal(frames.shape)
    dtype = dtype or torch.get_default_dtype()
    return DotMotion(
        torch.as_tensor(frames, dtype=dtype),
        torch.as_tensor(positions, dtype=dtype),
        torch.as_tensor(targets, dtype=dtype),
        torch.as_tensor(noise_var, dtype=dtype),
    )


def make_dot_motion_splits(
    task: str,
    num_train: int,
    num_test: int,
    num_steps: int = 100,
    *,
    seed: int = 0,
    **options,
) -> DotMotionSplits:
    """Generate train and test videos from two independent streams of one seed.

    ``numpy.random.SeedSequence(seed).spawn(2)`` gives the two streams, so the
    test sequences share no random numbers with the training sequences. Keyword
    ``options`` go to :func:`make_dot_motion`.
    """
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    return DotMotionSplits(
        make_dot_motion(task, num_train, num_steps, seed=train_seed, **options),
        make_dot_motion(task, num_test, num_steps, seed=test_seed, **options),
    )


def _square_path(cycle: np.ndarray) -> np.ndarray:
    """Positions on the square for phases ``cycle`` (in cycles; 0 is ``(1, 0)``)."""
    # Shift by 1/8 cycle so that cycle 0 is the middle of the right side.
    shifted = np.mod(cycle + 0.125, 1.0) * 4.0
    side = np.floor(shifted).astype(int) % 4
    u = 2.0 * (shifted - np.floor(shifted)) - 1.0
    corners = [
        np.stack([np.ones_like(u), u], axis=-1),  # right side, upwards
        np.stack([-u, np.ones_like(u)], axis=-1),  # top side, leftwards
        np.stack([-np.ones_like(u), -u], axis=-1),  # left side, downwards
        np.stack([u, -np.ones_like(u)], axis=-1),  # bottom side, rightwards
    ]
    positions = np.zeros(cycle.shape + (2,))
    for index, values in enumerate(corners):
        positions = np.where((side == index)[..., None], values, positions)
    return positions


def _circle_path(rng, phase, speed, num_steps, settings) -> np.ndarray:
    """Noisy rotation on the unit circle, projected back after each step."""
    angle = 2.0 * math.pi * settings["dt"] / settings["period"] * speed
    position = np.stack([np.cos(phase), np.sin(phase)], axis=-1)
    positions = [position]
    for _ in range(num_steps - 1):
        cos, sin = np.cos(angle), np.sin(angle)
        rotated = np.stack(
            [
                cos * position[:, 0] - sin * position[:, 1],
                sin * position[:, 0] + cos * position[:, 1],
            ],
            axis=-1,
        )
        # N(0, 0.05 I) process noise: variance 0.05 per coordinate.
        rotated = rotated + math.sqrt(0.05) * rng.standard_normal(rotated.shape)
        position = rotated / np.linalg.norm(rotated, axis=-1, keepdims=True)
        positions.append(position)
    return np.stack(positions, axis=1)
