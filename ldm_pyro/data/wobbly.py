r"""The wobbly swirl system: a noisy 2-D orbit rendered as swirled 10x10 blob frames.

Dynamics (Mikulasch and Zenke, Eq. 16), with :math:`r, \theta` the polar
coordinates of the position, ``k = 4``, ``a = 0.5``, :math:`\theta_0 = -3\pi/8`:

.. math::

    \dot x = a k \cos\theta \cos(k(\theta - \theta_0)) - r \sin\theta,
    \qquad
    \dot y = a k \sin\theta \cos(k(\theta - \theta_0)) + r \cos\theta

In polar form :math:`\dot\theta = 1` and :math:`\dot r = a k \cos(k(\theta -
\theta_0))`: a circle with four radial lobes. Each step integrates with RK4
(``dt = 0.3``) and adds :math:`N(0, 0.1 I)`; the start is uniform on the unit
circle.

The radius has no restoring force, so with ``published=True`` the position
diffuses: the mean radius grows from 1 to about 4 over 100 steps and many frames
put the blob outside the visible range ``[-3, 2.4]``, where the renderer pins it
to the border (:func:`clamped_fraction` measures how often). The default
generator (``published=False``) adds a restoring drift towards the noise-free
orbit :math:`r^*(\theta) = 1 + a \sin(k(\theta - \theta_0))`,

.. math::

    \dot r \mathrel{+}= -c\,(r - r^*(\theta)),

with ``c = restoring = 1`` by default, which keeps trajectories in view and
leaves the noise-free orbit unchanged.

Rendering: a Gaussian blob (standard deviation 1 pixel, peak 1) at pixel position
``(p + 3) * 10 / 6`` of each coordinate, clamped to ``[0, 9]``; ``x`` is the
column and ``y`` the row. Then the swirl of ``skimage.transform.swirl`` with
strength 10, radius 200, rotation 0 (scikit-image 0.2x, ``_swirl_mapping``):
output pixel ``(col, row)`` reads the input at

.. math::

    \rho = \lVert (col, row) - c \rVert, \quad
    \phi = s\, e^{-\rho / (R \log 2 / 5)} + \operatorname{atan2}(row - c_y, col - c_x),
    \quad (c_x + \rho \cos\phi,\ c_y + \rho \sin\phi)

with centre ``c = (W/2, H/2) = (5, 5)``, bilinear interpolation and
``mode="reflect"`` (SciPy's ``"mirror"``). This module reimplements that formula
with :func:`scipy.ndimage.map_coordinates`; scikit-image is not a dependency.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

logger = logging.getLogger(__name__)

FRAME_SIZE = 10
K_LOBES = 4
AMPLITUDE = 0.5
THETA_0 = -3.0 * math.pi / 8.0
DT = 0.3
NOISE_VARIANCE = 0.1
#: Positions outside this range are pinned to the frame border by the renderer.
VISIBLE_RANGE = (-3.0, -3.0 + 6.0 * (FRAME_SIZE - 1) / FRAME_SIZE)


class WobblyData(NamedTuple):
    """Frames and true positions of the wobbly swirl system.

    Shapes:
        ``frames``: ``(B, T, 100)`` in the default torch dtype (10x10 frames,
        flattened);
        ``positions``: ``(B, T, 2)`` float64, the true ``(x, y)``.
    """

    frames: torch.Tensor
    positions: torch.Tensor


def _drift(state: np.ndarray, restoring: float) -> np.ndarray:
    x, y = state[..., 0], state[..., 1]
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    radial = AMPLITUDE * K_LOBES * np.cos(K_LOBES * (theta - THETA_0))
    if restoring:
        target = 1.0 + AMPLITUDE * np.sin(K_LOBES * (theta - THETA_0))
        radial = radial - restoring * (r - target)
    dx = radial * np.cos(theta) - r * np.sin(theta)
    dy = radial * np.sin(theta) + r * np.cos(theta)
    return np.stack([dx, dy], axis=-1)


def simulate_wobbly(
    sequences: int,
    length: int,
    *,
    seed: int = 0,
    published: bool = False,
    restoring: float = 1.0,
    dt: float = DT,
    noise_variance: float = NOISE_VARIANCE,
) -> np.ndarray:
    """Simulate trajectories of the wobbly system.

    Args:
        sequences: number of trajectories ``B``.
        length: steps per trajectory ``T`` (the start counts as step 1).
        seed: seed of the start angles and the noise.
        published: use the published dynamics without restoring force.
        restoring: restoring rate ``c >= 0`` of the default generator; ignored
            when ``published=True``.
        dt: RK4 step.
        noise_variance: variance of the Gaussian noise added after each step.

    Returns:
        Positions of shape ``(B, T, 2)``, float64.
    """
    _check_count("sequences", sequences)
    _check_count("length", length)
    if not restoring >= 0:
        raise ValueError(f"restoring must be a number >= 0, got {restoring!r}")
    rate = 0.0 if published else float(restoring)
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=sequences)
    state = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    out = np.empty((sequences, length, 2))
    out[:, 0] = state
    noise_scale = math.sqrt(noise_variance)
    for t in range(1, length):
        k1 = _drift(state, rate)
        k2 = _drift(state + 0.5 * dt * k1, rate)
        k3 = _drift(state + 0.5 * dt * k2, rate)
        k4 = _drift(state + dt * k3, rate)
        state = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        state = state + noise_scale * rng.standard_normal(state.shape)
        out[:, t] = state
    return out


def clamped_fraction(positions: np.ndarray) -> float:
    """Return the fraction of frames whose blob the renderer pins to the border.

    A frame is pinned when either coordinate lies outside :data:`VISIBLE_RANGE`.
    """
    positions = np.asarray(positions)
    low, high = VISIBLE_RANGE
    outside = ((positions < low) | (positions > high)).any(axis=-1)
    return float(outside.mean())


def render_blobs(positions: np.ndarray) -> np.ndarray:
    """Render Gaussian blobs (standard deviation 1 pixel, peak 1) on 10x10 frames.

    Shapes:
        ``positions``: ``(..., 2)``; result ``(..., 10, 10)`` (row, column).
    """
    pixels = np.clip(
        (np.asarray(positions) + 3.0) * FRAME_SIZE / 6.0, 0, FRAME_SIZE - 1
    )
    grid = np.arange(FRAME_SIZE)
    column = np.exp(-0.5 * (grid - pixels[..., 0:1]) ** 2)
    row = np.exp(-0.5 * (grid - pixels[..., 1:2]) ** 2)
    return row[..., :, None] * column[..., None, :]


def swirl_coordinates(
    shape: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE),
    strength: float = 10.0,
    radius: float = 200.0,
    rotation: float = 0.0,
) -> np.ndarray:
    """Return the input (row, column) that each output pixel of the swirl reads.

    The formula of ``skimage.transform.swirl`` with the default centre
    ``(cols / 2, rows / 2)``; see the module docstring.

    Shapes:
        result ``(2, rows, cols)``.
    """
    rows, cols = shape
    centre_x, centre_y = cols / 2.0, rows / 2.0
    y, x = np.mgrid[:rows, :cols].astype(np.float64)
    rho = np.hypot(x - centre_x, y - centre_y)
    decay = radius / 5.0 * math.log(2.0)
    theta = (
        rotation
        + strength * np.exp(-rho / decay)
        + np.arctan2(y - centre_y, x - centre_x)
    )
    source_x = centre_x + rho * np.cos(theta)
    source_y = centre_y + rho * np.sin(theta)
    return np.stack([source_y, source_x])


@functools.lru_cache(maxsize=8)
def swirl_matrix(
    size: int = FRAME_SIZE,
    strength: float = 10.0,
    radius: float = 200.0,
    rotation: float = 0.0,
) -> np.ndarray:
    """Return the swirl of ``size x size`` frames as a linear map of flat pixels.

    Bilinear interpolation is linear in the image, so the swirl is a fixed
    ``(size^2, size^2)`` matrix, built by swirling each basis image.
    """
    coordinates = swirl_coordinates((size, size), strength, radius, rotation)
    matrix = np.empty((size * size, size * size))
    for index in range(size * size):
        basis = np.zeros(size * size)
        basis[index] = 1.0
        swirled = ndimage.map_coordinates(
            basis.reshape(size, size), coordinates, order=1, mode="mirror"
        )
        matrix[:, index] = swirled.ravel()
    matrix.setflags(write=False)
    return matrix


def swirl_frames(frames: np.ndarray, strength: float = 10.0, radius: float = 200.0):
    """Apply the swirl to frames of shape ``(..., H, W)`` with ``H == W``.

    The output is clipped to the input's range, as ``skimage.transform.swirl``
    does with ``clip=True``.
    """
    frames = np.asarray(frames, dtype=np.float64)
    size = frames.shape[-1]
    if frames.shape[-2] != size:
        raise ValueError(f"frames must be square, got shape {frames.shape}")
    matrix = swirl_matrix(size, float(strength), float(radius))
    flat = frames.reshape(-1, size * size) @ matrix.T
    flat = np.clip(flat, frames.min(), frames.max())
    return flat.reshape(frames.shape)


def make_wobbly(
    sequences: int,
    length: int = 100,
    *,
    seed: int = 0,
    published: bool = False,
    restoring: float = 1.0,
    swirl: bool = True,
) -> WobblyData:
    """Simulate, render and swirl wobbly trajectories.

    Args:
        sequences: number of sequences ``B``.
        length: steps per sequence ``T`` (100 in Mikulasch and Zenke, 2026).
        seed: seed of the simulation.
        published: the published generator without restoring force.
        restoring: restoring rate of the default generator.
        swirl: apply the swirl (``False`` gives plain blob frames).

    Returns:
        :class:`WobblyData` with frames ``(B, T, 100)`` and positions
        ``(B, T, 2)``.
    """
    positions = simulate_wobbly(
        sequences, length, seed=seed, published=published, restoring=restoring
    )
    frames = render_blobs(positions)
    if swirl:
        frames = swirl_frames(frames)
    logger.debug(
        "wobbly data: %d sequences of %d steps, %.1f%% of frames pinned",
        sequences,
        length,
        100 * clamped_fraction(positions),
    )
    flat = frames.reshape(sequences, length, FRAME_SIZE * FRAME_SIZE)
    return WobblyData(
        torch.as_tensor(flat, dtype=torch.get_default_dtype()),
        torch.as_tensor(positions),
    )


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
