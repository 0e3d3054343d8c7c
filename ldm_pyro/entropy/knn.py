r"""Kozachenko-Leonenko k-nearest-neighbour entropy estimate.

.. math::

    \hat H[z] = \psi(N) - \psi(k) + \log V_d
        + \frac{d}{N} \sum_{i=1}^N \log \epsilon_{i,k}

with :math:`\epsilon_{i,k}` the distance from :math:`z_i` to its k-th nearest
neighbour among the other points, :math:`\psi` the digamma function and
:math:`V_d` the volume of the unit ball of the p-norm in ``d`` dimensions.
"""

from __future__ import annotations

import math

import torch
from scipy import special

from ._checks import check_bool
from .base import EntropyEstimator

DIMENSION_MODES = ("ambient", "sphere")

# Distances are floored here so that the logarithm stays finite when points
# coincide; the gradient of a floored distance is zero.
_MIN_DISTANCE = 1e-12
# The public implementation clamps distances to [0, 1e6] and adds 1e-8 inside the
# logarithm.
_PUBLISHED_MAX_DISTANCE = 1e6
_PUBLISHED_LOG_OFFSET = 1e-8


def log_unit_ball_volume(dim: int, p: float) -> float:
    r"""Return :math:`\log V_d` of the unit ball of the p-norm in ``R^d``.

    .. math::

        V_d = \frac{(2 \Gamma(1/p + 1))^d}{\Gamma(d/p + 1)},

    which is :math:`\pi^{d/2} / \Gamma(d/2 + 1)` for ``p = 2`` and :math:`2^d` for
    ``p = inf``.
    """
    if math.isinf(p):
        return dim * math.log(2.0)
    return dim * math.log(2.0 * math.gamma(1.0 / p + 1.0)) - math.lgamma(dim / p + 1.0)


class KNNEntropy(EntropyEstimator):
    r"""Kozachenko-Leonenko k-nearest-neighbour entropy estimate, in nats.

    .. math::

        \hat H[z] = \psi(N) - \psi(k) + \log V_d
            + \frac{d}{N} \sum_{i=1}^N \log \min(\epsilon_{i,k}, q)

    :math:`\epsilon_{i,k}` is the p-norm distance from :math:`z_i` to its k-th
    nearest neighbour, excluding the point itself. Distances above ``q``, the
    ``clip_quantile`` quantile of the batch's k-th neighbour distances, are
    clipped to ``q`` (not removed). ``q`` is detached, so the clipped points
    receive no gradient. ``clip_quantile=1.0`` disables clipping.

    ``d`` is the dimension of the space the points fill:

    * ``dim="ambient"``: the number of columns ``D`` (``2 D`` for the joint
      ``H[z, z']`` on the concatenation ``[z, z']``).
    * ``dim="sphere"``: the intrinsic dimension ``D - 1`` of the unit sphere in
      ``R^D`` (joint ``2 (D - 1)``). Distances are chordal, which approximates the
      geodesic distance for close neighbours, so the estimate is for the density
      with respect to the surface measure.
    * an integer ``m``: ``d = m`` for one view and ``2 m`` for the joint.

    ``published=True`` returns the expression of the public implementation of
    Mikulasch and Zenke (commit 38473c1):
    :math:`\frac{1}{N} \sum_i \log(\min(\epsilon_{i,k}, 10^6, q) + 10^{-8})`, with
    no factor ``d`` and no constants. It is kept to reproduce the published runs;
    compared with the estimator, its entropy weight is ``1/d``. ``dim`` and
    ``include_constant`` have no effect then.

    Dropped constants: none with ``include_constant=True``. With
    ``include_constant=False`` the estimate drops
    :math:`\psi(N) - \psi(k) + \log V_d`. Distances are floored at ``1e-12`` so
    that coinciding points give a finite estimate and a finite gradient.

    Args:
        k: neighbour order ``k >= 1``.
        p: order of the norm, ``1 <= p <= inf``.
        clip_quantile: quantile in ``(0, 1]`` at which the k-th neighbour
            distances are clipped; ``1.0`` disables clipping.
        dim: ``"ambient"``, ``"sphere"`` or an integer intrinsic dimension ``>= 1``.
        include_constant: add :math:`\psi(N) - \psi(k) + \log V_d`.
        published: return the published expression described above.

    Shapes:
        ``z``, ``z_prime``: ``(N, D)`` with ``N > k``; result: scalar.

    References:
        L. F. Kozachenko and N. N. Leonenko, "Sample estimate of the entropy of a
        random vector", Problems of Information Transmission 23(2), 1987.
        F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
        Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Eq. 33.
    """

    def __init__(
        self,
        k: int = 3,
        p: float = 2.0,
        clip_quantile: float = 0.9,
        dim: str | int = "ambient",
        include_constant: bool = True,
        published: bool = False,
    ):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(p, bool) or not isinstance(p, int | float) or not p >= 1:
            raise ValueError(f"p must be a number with 1 <= p <= inf, got {p!r}")
        if (
            isinstance(clip_quantile, bool)
            or not isinstance(clip_quantile, int | float)
            or not 0 < clip_quantile <= 1
        ):
            raise ValueError(
                f"clip_quantile must be in (0, 1], got {clip_quantile!r}; "
                "use 1.0 to disable clipping"
            )
        if isinstance(dim, bool) or not (
            dim in DIMENSION_MODES or (isinstance(dim, int) and dim >= 1)
        ):
            raise ValueError(
                f"dim must be one of {DIMENSION_MODES} or an integer >= 1, got {dim!r}"
            )
        self.k = k
        self.p = float(p)
        self.clip_quantile = float(clip_quantile)
        self.dim = dim
        self.include_constant = check_bool("include_constant", include_constant)
        self.published = check_bool("published", published)
        self.min_samples = k + 1

    def intrinsic_dim(self, ambient_dim: int, views: int = 1) -> int:
        """Return the dimension ``d`` of the estimate for ``views`` stacked views.

        Args:
            ambient_dim: number of columns ``D`` of one view.
            views: 1 for ``H[z]``, 2 for the joint ``H[z, z']``.
        """
        if self.dim == "ambient":
            return views * ambient_dim
        if self.dim == "sphere":
            if ambient_dim < 2:
                raise ValueError(
                    "dim='sphere' needs points on the sphere in R^D with D >= 2, "
                    f"got D = {ambient_dim}; use dim='ambient'"
                )
            return views * (ambient_dim - 1)
        return views * self.dim

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, d)``."""
        return self._estimate(z, self.intrinsic_dim(z.shape[-1]))

    def joint(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate ``H[z, z']`` on ``[z, z']`` with twice the per-view dimension."""
        pair = torch.cat([z, z_prime], dim=-1)
        return self._estimate(pair, self.intrinsic_dim(z.shape[-1], views=2))

    def neighbour_distances(self, z: torch.Tensor) -> torch.Tensor:
        """Return the distance from each row of ``z`` to its k-th nearest neighbour.

        The neighbour is selected without gradient. The returned distance is then
        recomputed from the two rows, so it is differentiable and avoids the
        cancellation of the matrix-product form of ``torch.cdist``.

        Shapes:
            ``z``: ``(N, d)``; result: ``(N,)``.
        """
        with torch.no_grad():
            detached = z.detach()
            distances = torch.cdist(detached, detached, p=self.p)
            distances.fill_diagonal_(math.inf)
            neighbour = distances.topk(self.k, dim=1, largest=False).indices[:, -1]
        difference = z - z[neighbour]
        if self.p == 2.0:
            squared = difference.pow(2).sum(dim=-1)
            return squared.clamp_min(_MIN_DISTANCE**2).sqrt()
        norm = torch.linalg.vector_norm(difference, ord=self.p, dim=-1)
        return norm.clamp_min(_MIN_DISTANCE)

    def _estimate(self, z: torch.Tensor, dim: int) -> torch.Tensor:
        distances = self.neighbour_distances(z)
        if self.published:
            distances = distances.clamp_max(_PUBLISHED_MAX_DISTANCE)
        distances = self._clip(distances)
        if self.published:
            return torch.log(distances + _PUBLISHED_LOG_OFFSET).mean()
        value = dim * torch.log(distances).mean()
        if not self.include_constant:
            return value
        samples = z.shape[0]
        constant = (
            float(special.digamma(samples))
            - float(special.digamma(self.k))
            + log_unit_ball_volume(dim, self.p)
        )
        return value + constant

    def _clip(self, distances: torch.Tensor) -> torch.Tensor:
        if self.clip_quantile >= 1.0:
            return distances
        bound = torch.quantile(distances.detach(), self.clip_quantile)
        # torch.where passes the full gradient to points at or below the bound.
        return torch.where(distances > bound, bound, distances)
