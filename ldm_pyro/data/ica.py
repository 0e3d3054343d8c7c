r"""Seeded generators of linear mixtures for independent component analysis.

Every generator returns :class:`ICAData`: the sources ``S`` of shape ``(N, D)``, the
mixing matrix ``A`` of shape ``(n, D)`` and the mixtures ``X = S A^T`` of shape
``(N, n)``, so that each row is ``x = A s``. The arrays are torch tensors in the
requested dtype (the default dtype unless given); the generators draw in float64
with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.signal import lfilter

#: Mixing matrix of the two-photograph demonstration.
PUBLISHED_IMAGE_MIXING = ((1.0, 0.7), (0.7, 1.0))


class ICAData(NamedTuple):
    """Sources, mixing matrix and mixtures of a linear ICA problem.

    Shapes:
        ``sources`` ``(N, D)``, ``mixing`` ``(n, D)``, ``mixtures`` ``(N, n)``.
    """

    sources: torch.Tensor
    mixing: torch.Tensor
    mixtures: torch.Tensor


def mix_sources(
    sources: np.ndarray | torch.Tensor,
    mixing: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
    *,
    dtype: torch.dtype | None = None,
) -> ICAData:
    """Mix sources linearly, ``X = S A^T``, after checking both inputs.

    Args:
        sources: ``(N, D)`` array of source signals, one sample per row.
        mixing: ``(n, D)`` mixing matrix with ``n >= D`` and full column rank.
        dtype: torch dtype of the outputs (default: the default dtype).

    Raises:
        ValueError: if a shape does not match, the data contain NaN or Inf, there
            are fewer samples than sources, or ``A`` is rank deficient.
    """
    dtype = dtype or torch.get_default_dtype()
    source_array = _as_float64("sources", sources)
    mixing_array = _as_float64("mixing", mixing)
    if source_array.ndim != 2:
        raise ValueError(
            f"sources must have 2 dimensions (N, D), got shape {source_array.shape}"
        )
    if mixing_array.ndim != 2 or mixing_array.shape[1] != source_array.shape[1]:
        raise ValueError(
            f"mixing must have shape (n, {source_array.shape[1]}) to mix "
            f"{source_array.shape[1]} sources, got shape {mixing_array.shape}"
        )
    samples, components = source_array.shape
    if samples < components:
        raise ValueError(
            f"sources has {samples} samples but {components} components; ICA needs "
            "at least as many samples as components, so draw more samples"
        )
    rank = np.linalg.matrix_rank(mixing_array)
    if rank < components:
        raise ValueError(
            f"mixing matrix of shape {mixing_array.shape} has rank {rank} < "
            f"{components} sources, so the sources cannot be recovered; use a "
            "full-column-rank matrix"
        )
    mixtures = source_array @ mixing_array.T
    return ICAData(
        torch.as_tensor(source_array, dtype=dtype),
        torch.as_tensor(mixing_array, dtype=dtype),
        torch.as_tensor(mixtures, dtype=dtype),
    )


def random_mixing_matrix(components: int, seed: int = 0) -> np.ndarray:
    """Draw a ``(D, D)`` mixing matrix with independent standard normal entries.

    Draws repeat with the next seeds of the same generator until the condition
    number is below ``10 D``, so the matrix is comfortably invertible.
    """
    _check_count("components", components, minimum=1)
    rng = np.random.default_rng(seed)
    while True:
        mixing = rng.standard_normal((components, components))
        if np.linalg.cond(mixing) < 10 * components:
            return mixing


def make_laplace_mixtures(
    components: int = 2,
    samples: int = 10_000,
    *,
    seed: int = 0,
    mixing: np.ndarray | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> ICAData:
    """Mix independent unit-variance Laplace sources (super-Gaussian).

    Args:
        components: number of sources ``D``.
        samples: number of samples ``N``.
        seed: seed of the sources and of the random mixing matrix.
        mixing: ``(n, D)`` mixing matrix; default :func:`random_mixing_matrix`.
        dtype: torch dtype of the outputs.
    """
    _check_count("components", components, minimum=1)
    _check_count("samples", samples, minimum=1)
    rng = np.random.default_rng(seed)
    sources = rng.laplace(0.0, 1.0 / math.sqrt(2.0), size=(samples, components))
    if mixing is None:
        mixing = random_mixing_matrix(components, seed=seed + 1)
    return mix_sources(sources, mixing, dtype=dtype)


def make_uniform_mixtures(
    components: int = 2,
    samples: int = 10_000,
    *,
    seed: int = 0,
    mixing: np.ndarray | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> ICAData:
    """Mix independent unit-variance uniform sources (sub-Gaussian).

    Each source is uniform on ``[-sqrt(3), sqrt(3)]``. Arguments are those of
    :func:`make_laplace_mixtures`.
    """
    _check_count("components", components, minimum=1)
    _check_count("samples", samples, minimum=1)
    rng = np.random.default_rng(seed)
    bound = math.sqrt(3.0)
    sources = rng.uniform(-bound, bound, size=(samples, components))
    if mixing is None:
        mixing = random_mixing_matrix(components, seed=seed + 1)
    return mix_sources(sources, mixing, dtype=dtype)


def make_image_mixtures(
    *,
    size: int = 200,
    mixing: np.ndarray | torch.Tensor | Sequence[Sequence[float]] = (
        PUBLISHED_IMAGE_MIXING
    ),
    dtype: torch.dtype | None = None,
) -> ICAData:
    """Mix the two sample photographs that ship with scikit-learn.

    The photographs (``china.jpg`` and ``flower.jpg`` from
    ``sklearn.datasets.load_sample_images``, 427 x 640 RGB) are converted to
    grayscale with the ITU-R BT.601 weights, centre-cropped to ``size x size``,
    scaled to intensities in ``[0, 1]``, flattened to ``size ** 2`` samples and
    centred, so the mixtures are centred as well. The default mixing matrix is
    ``[[1, 0.7], [0.7, 1]]``. The data need no random state.

    Args:
        size: side of the square crop, at most 427.
        mixing: ``(n, 2)`` mixing matrix.
        dtype: torch dtype of the outputs.

    Shapes:
        ``sources`` ``(size ** 2, 2)``, the images in row-major order.
    """
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    height = min(image.shape[0] for image in images)
    width = min(image.shape[1] for image in images)
    if int(size) != size or not 1 <= size <= min(height, width):
        raise ValueError(
            f"size must be an integer in [1, {min(height, width)}] (the smaller "
            f"side of the sample photographs), got {size!r}"
        )
    columns = []
    for image in images:
        gray = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
        top = (gray.shape[0] - size) // 2
        left = (gray.shape[1] - size) // 2
        crop = gray[top : top + size, left : left + size]
        columns.append(crop.reshape(-1))
    sources = np.stack(columns, axis=1)
    sources = sources - sources.mean(axis=0)
    return mix_sources(sources, mixing, dtype=dtype)


def simulate_ornstein_uhlenbeck(
    thetas: Sequence[float] = (2.0, 0.2),
    *,
    sigma: float = 0.3,
    dt: float = 0.1,
    steps: int = 50_000,
    seed: int = 0,
) -> np.ndarray:
    r"""Simulate independent Ornstein-Uhlenbeck processes by Euler-Maruyama.

    .. math::

        x_t = x_{t-1} - \theta x_{t-1} \Delta t + \sigma \sqrt{\Delta t}\, \xi_t,
        \qquad x_0 = 0, \quad \xi_t \sim N(0, 1)

    The stationary variance of the discretized process is
    :math:`\sigma^2 \Delta t / (1 - (1 - \theta \Delta t)^2)`, which is 0.025 for
    ``theta = 2`` and 0.227 for ``theta = 0.2`` with the defaults.

    Returns:
        ``(steps, len(thetas))`` array; row ``t`` is the state after step ``t``.
    """
    theta_array = _as_float64("thetas", thetas).reshape(-1)
    _check_count("steps", steps, minimum=1)
    for name, value in (("sigma", sigma), ("dt", dt)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    decay = 1.0 - theta_array * dt
    if np.any(np.abs(decay) >= 1):
        raise ValueError(
            f"theta * dt must lie in (0, 2) for a stable Euler-Maruyama scheme, got "
            f"{(theta_array * dt).tolist()}; lower dt"
        )
    rng = np.random.default_rng(seed)
    noise = sigma * math.sqrt(dt) * rng.standard_normal((steps, theta_array.size))
    # The recursion x_t = decay * x_{t-1} + noise_t is a first-order IIR filter.
    columns = [
        lfilter([1.0], [1.0, -decay[i]], noise[:, i]) for i in range(theta_array.size)
    ]
    return np.stack(columns, axis=1)


def rotation_matrix(angle_degrees: float = 45.0) -> np.ndarray:
    """Return the 2 x 2 rotation by ``angle_degrees`` counter-clockwise."""
    angle = math.radians(angle_degrees)
    return np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )


def make_ou_mixtures(
    thetas: Sequence[float] = (2.0, 0.2),
    *,
    sigma: float = 0.3,
    dt: float = 0.1,
    steps: int = 50_000,
    angle_degrees: float = 45.0,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> ICAData:
    """Mix two Ornstein-Uhlenbeck processes by a rotation.

    With the defaults (``theta`` 2.0 and 0.2, ``sigma = 0.3``, ``dt = 0.1``, total
    time 5000 in 50 000 steps, a 45-degree rotation) the sources are Gaussian
    with distinct variances, so only a volume-preserving unmixing with a Gaussian
    prior of the known variances recovers them.

    Args:
        thetas: mean-reversion rates, one per source (two for the rotation).
        sigma: noise amplitude.
        dt: time step.
        steps: number of Euler-Maruyama steps ``N``.
        angle_degrees: rotation angle of the mixing.
        seed: seed of the noise.
        dtype: torch dtype of the outputs.
    """
    if len(thetas) != 2:
        raise ValueError(
            f"thetas must hold 2 rates to be mixed by a 2-D rotation, got {thetas!r}"
        )
    sources = simulate_ornstein_uhlenbeck(
        thetas, sigma=sigma, dt=dt, steps=steps, seed=seed
    )
    return mix_sources(sources, rotation_matrix(angle_degrees), dtype=dtype)


def _as_float64(name: str, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf); clean or drop "
            "those samples"
        )
    return array


def _check_count(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
