"""Base class of the entropy estimators."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_same_shape, check_tensor


class EntropyEstimator(nn.Module):
    """Differentiable estimate of the differential entropy of a batch, in nats.

    Calling the estimator with one tensor ``z`` of shape ``(N, D)`` estimates
    ``H[z]`` (a single view, as in the MI form of the objective). Calling it with
    two tensors ``z, z_prime`` of shape ``(N, D)`` estimates the joint entropy
    ``H[z, z']`` of the pair (the LDM form). The default joint estimate treats the
    pair as one sample of dimension ``2 D``; estimators on the sphere override
    :meth:`joint` to use a product of per-view kernels.

    :meth:`marginal_sum` returns ``H[z] + H[z']``, the entropy term of the MI form.
    Estimators that pool both views into one reference set override it.

    Subclasses implement :meth:`estimate` for a single ``(N, d)`` tensor and set
    :attr:`min_samples`, the smallest batch for which the estimate is defined.
    Every subclass documents the additive constants it drops.
    """

    #: Smallest batch size for which :meth:`estimate` is defined.
    min_samples: int = 2

    def forward(self, z: torch.Tensor, z_prime: torch.Tensor | None = None):
        """Estimate ``H[z]``, or ``H[z, z']`` when ``z_prime`` is given."""
        self._check_input("z", z)
        if z_prime is None:
            return self.estimate(z)
        self._check_input("z_prime", z_prime)
        check_same_shape("z", z, "z_prime", z_prime)
        return self.joint(z, z_prime)

    def joint(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate the joint entropy ``H[z, z']`` of paired views."""
        return self.estimate(torch.cat([z, z_prime], dim=-1))

    def marginal_sum(self, z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
        """Estimate ``H[z] + H[z']``, the entropy term of the MI form."""
        self._check_input("z", z)
        self._check_input("z_prime", z_prime)
        check_same_shape("z", z, "z_prime", z_prime)
        return self.estimate(z) + self.estimate(z_prime)

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Estimate the entropy of the rows of ``z`` of shape ``(N, d)``."""
        raise NotImplementedError

    def _check_input(self, name: str, z: torch.Tensor) -> None:
        check_tensor(name, z, ndim=2)
        if z.shape[0] < self.min_samples:
            raise ValueError(
                f"{type(self).__name__} needs a batch of at least "
                f"{self.min_samples} samples, got {name} with {z.shape[0]}; "
                "increase the batch size or change the estimator parameters"
            )
