r"""Higher-dimensional identifiability toy: paired Gaussian latents seen through an MLP.

.. math::

    \tilde z \sim N(0, I_N), \qquad
    \tilde z' = R \tilde z + 0.1 \tanh(R \tilde z) + \sqrt{\alpha}\, \epsilon,
    \quad \epsilon \sim N(0, I_N),

with a random rotation ``R`` (Haar distributed). Both latents are observed in
``R^100`` through the same random invertible 3-layer LeakyReLU MLP ``g``:
``x = g(z)``. The first layer maps ``R^N`` into ``R^100`` with a matrix of full
column rank, the later layers are square and invertible, and LeakyReLU (slope
0.2) is a bijection, so ``g`` is injective.

Mikulasch and Zenke (arXiv 2605.03517, Fig. A7) do not give :math:`\alpha`, so the
default 0.1 is this module's choice.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import stats

OBSERVED_DIM = 100
LEAKY_SLOPE = 0.2


class ToyPairs(NamedTuple):
    """Observations and true latents of the toy task.

    Shapes:
        ``x``, ``x_prime``: ``(M, 100)`` in the default torch dtype;
        ``z``, ``z_prime``: ``(M, N)`` float64, the true latents.
    """

    x: torch.Tensor
    x_prime: torch.Tensor
    z: torch.Tensor
    z_prime: torch.Tensor


class LeakyReLUMixer:
    """Random injective MLP ``R^N -> R^L`` with LeakyReLU hidden activations.

    The weights are random orthogonal matrices (Haar), the first one truncated to
    ``N`` columns, so every layer is well conditioned and injective.

    Args:
        latent_dim: input dimension ``N``.
        observed_dim: output dimension ``L >= N``.
        layers: number of linear layers (3 in Mikulasch and Zenke, 2026).
        seed: seed of the weights.
    """

    def __init__(
        self,
        latent_dim: int,
        observed_dim: int = OBSERVED_DIM,
        layers: int = 3,
        seed: int = 0,
    ):
        if observed_dim < latent_dim:
            raise ValueError(
                f"observed_dim must be >= latent_dim for an injective mixer, got "
                f"{observed_dim} < {latent_dim}"
            )
        rng = np.random.default_rng(seed)
        first = stats.ortho_group.rvs(observed_dim, random_state=rng)[:, :latent_dim]
        self.weights = [first]
        for _ in range(layers - 1):
            self.weights.append(stats.ortho_group.rvs(observed_dim, random_state=rng))
        self.biases = [0.1 * rng.standard_normal(observed_dim) for _ in self.weights]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Map latents ``(M, N)`` to observations ``(M, L)``."""
        h = np.asarray(z, dtype=np.float64)
        for index, (weight, bias) in enumerate(
            zip(self.weights, self.biases, strict=True)
        ):
            h = h @ weight.T + bias
            if index < len(self.weights) - 1:
                h = np.where(h > 0, h, LEAKY_SLOPE * h)
        return h


def make_toy_pairs(
    samples: int,
    latent_dim: int,
    *,
    noise_variance: float = 0.1,
    seed: int = 0,
    mixer_seed: int | None = None,
) -> ToyPairs:
    r"""Draw toy pairs ``(x, x')`` with their true latents.

    Args:
        samples: number of pairs ``M``.
        latent_dim: true latent dimension ``N`` (2 to 10 in Mikulasch and Zenke, 2026).
        noise_variance: :math:`\alpha`, the variance of the transition noise.
        seed: seed of the latents and the noise.
        mixer_seed: seed of the rotation and the MLP (default: ``seed``), so
            that train and test sets can share one generator.

    Returns:
        :class:`ToyPairs`.
    """
    for name, value in (("samples", samples), ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if latent_dim > OBSERVED_DIM:
        raise ValueError(f"latent_dim must be <= {OBSERVED_DIM}, got {latent_dim}")
    if not noise_variance >= 0:
        raise ValueError(f"noise_variance must be >= 0, got {noise_variance!r}")
    structure_seed = seed if mixer_seed is None else mixer_seed
    structure = np.random.default_rng(structure_seed)
    if latent_dim > 1:
        rotation = stats.ortho_group.rvs(latent_dim, random_state=structure)
    else:
        rotation = np.ones((1, 1))
    mixer = LeakyReLUMixer(latent_dim, seed=int(structure.integers(2**31)))
    rng = np.random.default_rng([seed, 1])
    z = rng.standard_normal((samples, latent_dim))
    rotated = z @ rotation.T
    z_prime = rotated + 0.1 * np.tanh(rotated)
    z_prime += np.sqrt(noise_variance) * rng.standard_normal(z_prime.shape)
    return ToyPairs(
        torch.as_tensor(mixer(z), dtype=torch.get_default_dtype()),
        torch.as_tensor(mixer(z_prime), dtype=torch.get_default_dtype()),
        torch.as_tensor(z),
        torch.as_tensor(z_prime),
    )
