r"""Kernel density (resubstitution) entropy estimate: the contrastive uniformity term.

.. math::

    \hat H[z] = -\frac{1}{N} \sum_i \log \Bigl[ \frac{1}{M} \sum_{j} K(z_i, z_j) \Bigr]

with a normalized kernel ``K``: a Gaussian on the plane, a von Mises-Fisher (vMF)
kernel on the unit sphere. Every sum over kernels is a log-sum-exp, so the
estimate and its gradient stay finite for sharp kernels (vMF concentrations of
1000 and more, Gaussian bandwidths far below the spread of the points).
"""

from __future__ import annotations

import functools
import math

import torch

from .._validation import check_positive, check_same_shape
from ..ops.bessel import vmf_log_normalizer
from ._checks import check_bool, check_choice
from .base import EntropyEstimator

KERNELS = ("gaussian", "vmf")


@functools.lru_cache(maxsize=256)
def _vmf_log_normalizer(dim: int, kappa: float) -> float:
    r"""Return :math:`\log C_D(\kappa)` of the vMF density on the sphere in ``R^D``.

    The KDE's concentration is fixed, so the float64 value is cached per
    ``(dim, kappa)``.
    """
    kappa64 = torch.tensor(float(kappa), dtype=torch.float64)
    return float(vmf_log_normalizer(dim, kappa64))


class KDEEntropy(EntropyEstimator):
    r"""Kernel density estimate of the entropy, in nats.

    .. math::

        \hat H[z] = -\frac{1}{N} \sum_{i=1}^N \log \Bigl[ \frac{1}{M}
            \sum_{j} K(z_i, z_j) \Bigr],

    where the sum runs over ``j != i`` with ``M = N - 1`` (leave-one-out, the
    default) or over all ``j`` with ``M = N`` (the self pair included, as in the
    public implementation of Mikulasch and Zenke). The self pair ``K(z_i, z_i)``
    is a constant that caps the estimate and damps the gradient once the
    neighbours are far away.

    Kernels:

    * ``"gaussian"`` with ``per_coordinate=True``: the normalized Gaussian
      :math:`K(z_i, z_j) = N(z_i; z_j, h^2 I)` with bandwidth ``h`` per coordinate.
      The joint ``H[z, z']`` uses it on the concatenation ``[z, z']``, which is the
      product of the two per-view kernels.
    * ``"gaussian"`` with ``per_coordinate=False``: the published
      mean-over-coordinates kernel
      :math:`\exp(-(\kappa/d) \lVert z_i - z_j \rVert^2)` with :math:`\kappa` the
      ``concentration``, normalized here. It is the Gaussian kernel with implied
      bandwidth :math:`h^2 = d / (2 \kappa)`, which depends on the dimension
      ``d``: :math:`\kappa = 5`, ``d = 2048`` give :math:`h^2 = 204.8`. The joint
      on the concatenation then has ``d = 2 D``, which halves the precision of
      each view.
    * ``"vmf"``: :math:`K(z_i, z_j) = C_D(\kappa) \exp(\kappa z_i^\top z_j)` on the
      unit sphere in ``R^D``, with :math:`\kappa` the ``concentration`` (the
      inverse temperature of contrastive losses). The rows must have unit norm;
      the estimator does not project them. The joint ``H[z, z']`` uses the product
      of the two per-view kernels, normalizer :math:`C_D(\kappa)^2`.

    ``pool_views=True`` changes :meth:`marginal_sum` (the MI form). Every one of
    the ``2 N`` rows of ``[z; z']`` is an anchor, scored against the other
    ``2 N - 1`` rows (its positive included) or against all ``2 N`` rows. The
    result is twice the mean over anchors, an estimate of ``H[z] + H[z']`` from
    pooled reference points. With the vMF kernel, leave-one-out and
    :math:`\kappa = 1/\tau` this is the denominator of NT-Xent (SimCLR):

    .. math::

        \kappa \langle z_i^\top z'_i \rangle + \tfrac{1}{2}\,\text{marginal\_sum}
            = -L_{\text{NT-Xent}}(\tau) + \log(2N - 1) - \log C_D(\kappa).

    Dropped constants: none. The estimate includes the kernel normalizer and
    :math:`\log M`. The published plane loss
    :math:`-\frac{1}{N}\sum_i \log(\sum_j K_{ij} + 10^{-8})` with the
    unnormalized kernel differs from ``per_coordinate=False, leave_one_out=False``
    by the constant :math:`\log N + \frac{d}{2} \log(2 \pi h^2)` and the
    :math:`10^{-8}`.

    Args:
        kernel: ``"gaussian"`` (plane) or ``"vmf"`` (sphere).
        bandwidth: Gaussian bandwidth ``h > 0`` per coordinate; used by
            ``kernel="gaussian"`` with ``per_coordinate=True`` only.
        concentration: :math:`\kappa > 0`; the vMF concentration, or the
            precision of the mean-over-coordinates Gaussian kernel.
        leave_one_out: exclude the self pair ``j = i``.
        pool_views: pool both views into one reference set in
            :meth:`marginal_sum`.
        per_coordinate: Gaussian kernel with bandwidth per coordinate; ``False``
            selects the published mean-over-coordinates kernel.

    Shapes:
        ``z``, ``z_prime``: ``(N, D)``, with ``N >= 2`` for leave-one-out and
        ``D >= 2`` for the vMF kernel; result: scalar.

    References:
        F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
        Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Eq. 32.
        T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A Simple Framework for
        Contrastive Learning of Visual Representations", ICML 2020,
        arXiv:2002.05709.
    """

    def __init__(
        self,
        kernel: str = "gaussian",
        bandwidth: float = 1.0,
        concentration: float = 5.0,
        leave_one_out: bool = True,
        pool_views: bool = False,
        per_coordinate: bool = True,
    ):
        super().__init__()
        self.kernel = check_choice("kernel", kernel, KERNELS)
        self.bandwidth = check_positive("bandwidth", bandwidth)
        self.concentration = check_positive("concentration", concentration)
        self.leave_one_out = check_bool("leave_one_out", leave_one_out)
        self.pool_views = check_bool("pool_views", pool_views)
        self.per_coordinate = check_bool("per_coordinate", per_coordinate)
        self.min_samples = 2 if self.leave_one_out else 1

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, d)``."""
        log_kernel = self._log_kernel_matrix(z)
        return self._entropy_from_log_kernel(log_kernel)

    def joint(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate ``H[z, z']`` with the product of the per-view kernels."""
        if self.kernel != "vmf":
            return super().joint(z, z_prime)
        log_kernel = self._log_kernel_matrix(z) + self._log_kernel_matrix(z_prime)
        return self._entropy_from_log_kernel(log_kernel)

    def marginal_sum(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate ``H[z] + H[z']``, from pooled views when ``pool_views`` is set."""
        if not self.pool_views:
            return super().marginal_sum(z, z_prime)
        self._check_input("z", z)
        self._check_input("z_prime", z_prime)
        check_same_shape("z", z, "z_prime", z_prime)
        pooled = torch.cat([z, z_prime], dim=0)
        return 2.0 * self._entropy_from_log_kernel(self._log_kernel_matrix(pooled))

    def _entropy_from_log_kernel(self, log_kernel: torch.Tensor) -> torch.Tensor:
        samples = log_kernel.shape[0]
        if self.leave_one_out:
            self_pairs = torch.eye(samples, dtype=torch.bool, device=log_kernel.device)
            log_kernel = log_kernel.masked_fill(self_pairs, -math.inf)
            reference_count = samples - 1
        else:
            reference_count = samples
        log_density = torch.logsumexp(log_kernel, dim=1) - math.log(reference_count)
        return -log_density.mean()

    def _log_kernel_matrix(self, z: torch.Tensor) -> torch.Tensor:
        dim = z.shape[-1]
        if self.kernel == "vmf":
            if dim < 2:
                raise ValueError(
                    "the vMF kernel needs points on the sphere in R^D with D >= 2, "
                    f"got D = {dim}; use kernel='gaussian' for one-dimensional latents"
                )
            log_normalizer = _vmf_log_normalizer(dim, self.concentration)
            return self.concentration * (z @ z.T) + log_normalizer
        if self.per_coordinate:
            variance = self.bandwidth**2
        else:
            variance = dim / (2.0 * self.concentration)
        log_normalizer = -0.5 * dim * math.log(2.0 * math.pi * variance)
        return -_squared_distances(z) / (2.0 * variance) + log_normalizer


def _squared_distances(z: torch.Tensor) -> torch.Tensor:
    """Return the ``(N, N)`` squared Euclidean distances between the rows of ``z``.

    The rows are centred first (distances do not change) to reduce cancellation in
    ``|a|^2 + |b|^2 - 2 a.b``. Rounding below zero is clamped, and the diagonal is
    exactly zero.
    """
    centered = z - z.detach().mean(dim=0, keepdim=True)
    squared_norms = centered.pow(2).sum(dim=1)
    gram = centered @ centered.T
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * gram
    self_pairs = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return squared.clamp_min(0.0).masked_fill(self_pairs, 0.0)
