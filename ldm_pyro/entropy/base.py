"""Base class of the entropy estimators."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

from .._validation import check_same_shape, check_tensor
from ..distributed import all_gather_rows, full_precision, needs_full_precision


def _global_batch(method):
    """Wrap ``forward`` or ``marginal_sum`` to gather and upcast its inputs once.

    With ``gather`` set, the inputs are concatenated over processes before the
    wrapped method runs, so :meth:`EntropyEstimator.estimate`, ``joint`` and
    ``marginal_sum`` see the global batch. Half-precision inputs are cast to
    float32 and autocast is disabled. Nested calls (an override that calls
    ``super()``) and calls inside :meth:`EntropyEstimator.inputs_gathered` pass
    their inputs through unchanged.
    """

    @functools.wraps(method)
    def wrapper(self, z, z_prime=None):
        if self._inputs_global:
            return method(self, z, z_prime)
        tensors = [z] if z_prime is None else [z, z_prime]
        if self.gather:
            for name, value in zip(("z", "z_prime"), tensors, strict=False):
                check_tensor(name, value, ndim=2)
        with self.inputs_gathered():
            if needs_full_precision(tensors):
                with full_precision(tensors) as upcast:
                    return self._call_gathered(method, list(upcast))
            return self._call_gathered(method, tensors)

    wrapper._gathers_inputs = True
    return wrapper


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

    Setting :attr:`gather` makes :meth:`forward` and :meth:`marginal_sum`
    (including a subclass's override) concatenate their inputs over the
    processes of a ``torch.distributed`` group first
    (:func:`ldm_pyro.distributed.all_gather`), so that every process estimates
    the entropy of the global batch and gradients flow back to each process's
    rows. Without a process group it changes nothing. Inputs in float16 or
    bfloat16, or under autocast, are estimated in float32.
    """

    #: Smallest batch size for which :meth:`estimate` is defined.
    min_samples: int = 2

    #: Concatenate the inputs of all processes before estimating.
    gather: bool = False

    # True while the inputs of the current call are already global.
    _inputs_global: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward", "marginal_sum"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_gathers_inputs", False):
                setattr(cls, name, _global_batch(method))

    @contextlib.contextmanager
    def inputs_gathered(self) -> Iterator[None]:
        """Treat the inputs of calls inside this block as global and full precision.

        :class:`~ldm_pyro.objective.LDMObjective` gathers the latents itself
        and uses this block so that they are not gathered twice.
        """
        previous = self._inputs_global
        self._inputs_global = True
        try:
            yield
        finally:
            self._inputs_global = previous

    def _call_gathered(self, method, tensors):
        if self.gather:
            tensors = all_gather_rows(tensors)
        if len(tensors) == 1:
            return method(self, tensors[0], None)
        return method(self, *tensors)

    @_global_batch
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

    @_global_batch
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
