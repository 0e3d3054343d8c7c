"""Input checks shared across the package.

Every check raises ``ValueError`` (or ``TypeError``) with a message that names the
argument, the expected and received values, and a fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class LDMWarning(UserWarning):
    """Base class of every warning that ldm_pyro emits."""


def check_tensor(
    name: str,
    value: object,
    *,
    ndim: int | Sequence[int] | None = None,
    last_dim: int | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor with the expected rank and last dimension.

    Args:
        name: argument name used in the error message.
        value: the object to check.
        ndim: allowed number of dimensions, or a sequence of allowed numbers.
        last_dim: required size of the last dimension.

    Returns:
        ``value`` unchanged.

    Raises:
        TypeError: if ``value`` is not a ``torch.Tensor``.
        ValueError: if the rank or the last dimension does not match.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            "convert it with torch.as_tensor"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                f"got shape {tuple(value.shape)}"
            )
    if last_dim is not None and (value.dim() == 0 or value.shape[-1] != last_dim):
        raise ValueError(
            f"{name} must have last dimension {last_dim}, got shape "
            f"{tuple(value.shape)}"
        )
    return value


def check_finite(name: str, value: torch.Tensor, *, context: str = "") -> torch.Tensor:
    """Raise ``ValueError`` if ``value`` contains NaN or Inf.

    Args:
        name: argument or term name used in the message.
        value: tensor to check.
        context: extra location, for example ``"at step 12"``.

    Returns:
        ``value`` unchanged.
    """
    # Fast path: a finite sum proves that no element is NaN or Inf. A sum that
    # overflows from finite values falls through to the exact check below.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return value
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        where = f" {context}" if context else ""
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf){where}; "
            "check the inputs, lower the learning rate or enable gradient clipping"
        )
    return value


def check_positive(name: str, value: float) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite number greater than zero."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor):
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}; encode both views with the "
            "same encoder and batch"
        )
