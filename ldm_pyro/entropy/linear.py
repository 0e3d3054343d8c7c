r"""Exact entropy term of a linear encoder, and the linear encoders of ICA.

For ``z = W x`` the entropy of the latents is, up to the constant ``H[x]``,

.. math::

    H[z] = H[x] + \tfrac12 \log |W W^\top|

(Mikulasch and Zenke, "Understanding Self-Supervised Learning via Latent
Distribution Matching", ICML 2026, arXiv 2605.03517, Eq. 3 and 25). With a
factorized prior, maximizing ``<log P(W x)> + 1/2 log|W W^T|`` is maximum-likelihood
linear ICA.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from .._validation import check_tensor
from .base import EntropyEstimator

logger = logging.getLogger(__name__)


class UnmixingLinear(nn.Module):
    """Linear map ``z = W x`` without bias, with ``W`` initialized to the identity.

    Args:
        in_features: input dimension ``n``.
        out_features: output dimension ``D`` (default ``n``). A non-square ``W``
            starts as the first ``D`` rows or columns of the identity.

    Shapes:
        Input ``(..., n)``, output ``(..., D)``; ``weight`` is ``(D, n)``.
    """

    def __init__(self, in_features: int, out_features: int | None = None):
        super().__init__()
        out_features = in_features if out_features is None else out_features
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.eye(self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x @ W^T``."""
        return x @ self.weight.T


class RotationLinear(nn.Module):
    r"""Volume-preserving linear map ``z = W x`` with ``W = exp(K - K^T)``.

    .. math::

        W = \exp(K - K^\top), \qquad |\det W| = 1

    The matrix exponential of a skew-symmetric matrix is a rotation, so the
    entropy term ``log|det W|`` is exactly zero. This is the constrained unmixing
    for Gaussian sources with known, distinct variances, where an unconstrained
    ``W`` has no unique optimum. ``K`` is stored as its ``D (D - 1) / 2``
    upper-triangular entries.

    Args:
        features: dimension ``D`` of input and output.
        init_scale: the entries of ``K`` start uniform in ``[0, init_scale)``.
            ``0`` starts at the identity, a stationary point of symmetric
            objectives.
        generator: random generator for the initialization.

    Shapes:
        Input ``(..., D)``, output ``(..., D)``; ``weight`` is ``(D, D)``.
    """

    volume_preserving = True

    def __init__(
        self,
        features: int,
        init_scale: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if int(features) != features or features < 1:
            raise ValueError(f"features must be a positive integer, got {features!r}")
        if not math.isfinite(init_scale) or init_scale < 0:
            raise ValueError(f"init_scale must be finite and >= 0, got {init_scale!r}")
        self.in_features = self.out_features = int(features)
        rows, cols = torch.triu_indices(self.in_features, self.in_features, offset=1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        initial = torch.rand(rows.shape[0], generator=generator) * init_scale
        self.skew_entries = nn.Parameter(initial)

    @property
    def weight(self) -> torch.Tensor:
        """The rotation ``W = exp(K - K^T)``, of shape ``(D, D)``."""
        size = self.in_features
        upper = self.skew_entries.new_zeros(size, size)
        upper = upper.index_put((self._rows, self._cols), self.skew_entries)
        return torch.linalg.matrix_exp(upper - upper.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x @ W^T``."""
        return x @ self.weight.T


class LinearJacobianEntropy(EntropyEstimator):
    r"""Exact entropy term ``1/2 log|W W^T|`` of a linear encoder ``z = W x``.

    .. math::

        \hat H[z] = \tfrac12 \log |W W^\top| =
        \begin{cases}
            \log |\det W| & W \text{ square} \\
            \tfrac12 \log |W W^\top + \epsilon I| & D < n \\
            \tfrac12 \log |W^\top W + \epsilon I| & D > n
        \end{cases}

    for ``W`` of shape ``(D, n)``. It drops the constant ``H[x]``. The square case
    uses ``slogdet``. The non-square cases take the Cholesky factor of the smaller
    Gram matrix, the one that is full rank for a full-rank ``W`` (an overcomplete
    map ``D > n`` is injective, and ``1/2 log|W^T W|`` is its volume change on the
    data manifold). The ridge ``eps`` goes on the diagonal only, and a square
    ``W`` with ``eps > 0`` also takes the Cholesky path of ``W W^T + eps I``.

    The batch ``z`` enters only through a shape check: its last dimension must
    be ``D``. A module with ``volume_preserving = True`` (such as
    :class:`RotationLinear`) gives exactly zero.

    A singular or non-finite ``W`` raises ``ValueError`` rather than warning,
    because ``log|W W^T| = -inf`` and its gradient ``W^{-T}`` would turn every
    later step into NaN.

    Args:
        linear: the linear encoder; a module with a 2-D ``weight`` (for example
            :class:`UnmixingLinear`, :class:`RotationLinear` or ``nn.Linear``,
            whose bias does not change the Jacobian).
        eps: ridge :math:`\epsilon \ge 0` added to the diagonal of the Gram matrix.

    Shapes:
        ``z`` is ``(N, D)``; the value is a scalar in nats.
    """

    min_samples = 1

    def __init__(self, linear: nn.Module, eps: float = 0.0):
        super().__init__()
        weight = getattr(linear, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise TypeError(
                "linear must be a module with a 2-D weight tensor (D, n), such as "
                f"UnmixingLinear or nn.Linear; got {type(linear).__name__}"
            )
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        self.linear = linear
        self.eps = float(eps)

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``1/2 log|W W^T|``; ``z`` is used for its shape only."""
        weight = self.linear.weight
        check_tensor("z", z, ndim=2, last_dim=weight.shape[0])
        return self.log_volume(weight)

    def log_volume(self, weight: torch.Tensor) -> torch.Tensor:
        """Return ``1/2 log|W W^T|`` (with the ridge) for a ``(D, n)`` weight."""
        if getattr(self.linear, "volume_preserving", False):
            return weight.new_zeros(())
        if not bool(torch.isfinite(weight.detach()).all()):
            raise ValueError(
                "the linear encoder's weight W contains NaN or Inf; lower the "
                "learning rate or enable gradient clipping"
            )
        rows, cols = weight.shape
        if rows == cols and self.eps == 0.0:
            sign, logabsdet = torch.linalg.slogdet(weight)
            if sign.detach() == 0 or not bool(torch.isfinite(logabsdet.detach())):
                raise ValueError(
                    f"the {rows}x{cols} weight W is singular (log|det W| = -inf); "
                    "lower the learning rate, or set eps > 0 to add a ridge"
                )
            return logabsdet
        gram = weight @ weight.T if rows <= cols else weight.T @ weight
        if self.eps > 0:
            gram = gram + self.eps * torch.eye(
                gram.shape[0], dtype=gram.dtype, device=gram.device
            )
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) != 0:
            raise ValueError(
                f"the Gram matrix of the {rows}x{cols} weight W is not positive "
                f"definite (Cholesky failed at column {int(info)}), so W is rank "
                "deficient; lower the learning rate or increase eps"
            )
        return factor.diagonal().log().sum()
