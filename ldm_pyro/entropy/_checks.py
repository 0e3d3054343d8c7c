"""Argument checks shared by the entropy estimators."""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_nonnegative(name: str, value: float) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite number ``>= 0``."""
    number = _to_float(name, value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0, got {value!r}; "
            "use 0 to disable it or a small positive value such as 1e-6"
        )
    return number


def check_bool(name: str, value: object) -> bool:
    """Raise ``TypeError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _to_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)
