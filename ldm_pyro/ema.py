r"""Exponential moving average (EMA) target encoder, as in BYOL.

.. math::

    \xi \leftarrow m \xi + (1 - m) \theta

after every optimizer step, where :math:`\theta` are the online encoder's
parameters, :math:`\xi` the target's and ``m`` the EMA rate. The target encodes the
second view without gradient. In the latent-distribution-matching reading, the
slowly moving target lets the predictor learn faster than the encoder, which the
stop-gradient plug-in entropy estimate needs. ``m = 0`` copies the online encoder
after each step (SimSiam), ``m = 1`` freezes the target.

Use it through the training loop::

    target = EMATarget(encoder, rate=0.99)
    fit(encoder, objective, batches, encode, config, after_step=target.after_step)

References:
    J.-B. Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020,
    arXiv:2006.07733.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def check_rate(name: str, value: object) -> float:
    """Raise ``ValueError`` unless ``value`` is a number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(
            f"{name} must be in [0, 1], got {value!r}; typical EMA rates are "
            "0.99 to 0.999 (0 copies the online encoder, 1 freezes the target)"
        )
    return number


class EMATarget(nn.Module):
    r"""A frozen copy of an encoder updated as an exponential moving average.

    The rate follows BYOL's cosine schedule from ``rate`` to ``final_rate`` over
    ``total_steps`` steps when both are given, and stays at ``rate`` otherwise:

    .. math::

        m_k = m_{final} - (m_{final} - m_0) \frac{\cos(\pi k / K) + 1}{2}

    Buffers (for example batch-norm statistics) are copied from the online
    encoder at every update.

    Args:
        encoder: the online encoder; it is deep-copied.
        rate: EMA rate ``m`` in ``[0, 1]`` at the first step.
        final_rate: EMA rate at ``total_steps``, in ``[0, 1]``; ``None`` keeps
            ``rate``.
        total_steps: length of the cosine schedule in optimizer steps.

    Shapes:
        :meth:`forward` maps inputs like the encoder does; outputs are detached.
    """

    def __init__(
        self,
        encoder: nn.Module,
        rate: float = 0.99,
        final_rate: float | None = None,
        total_steps: int | None = None,
    ):
        super().__init__()
        self.rate = check_rate("rate", rate)
        self.final_rate = (
            None if final_rate is None else check_rate("final_rate", final_rate)
        )
        if self.final_rate is not None and (
            isinstance(total_steps, bool)
            or not isinstance(total_steps, int)
            or total_steps < 1
        ):
            raise ValueError(
                f"total_steps must be a positive integer when final_rate is set, got "
                f"{total_steps!r}; pass the number of optimizer steps of the run"
            )
        self.total_steps = total_steps
        # Not a registered submodule: the online encoder is not part of the target.
        self.__dict__["online"] = encoder
        self.target = copy.deepcopy(encoder)
        for parameter in self.target.parameters():
            parameter.requires_grad_(False)

    def rate_at(self, step: int) -> float:
        """Return the EMA rate after optimizer step ``step`` (0-based)."""
        if self.final_rate is None:
            return self.rate
        progress = min(step / self.total_steps, 1.0)
        weight = (math.cos(math.pi * progress) + 1.0) / 2.0
        return self.final_rate - (self.final_rate - self.rate) * weight

    @torch.no_grad()
    def update(self, rate: float | None = None) -> None:
        """Move the target towards the online encoder with EMA rate ``rate``."""
        m = self.rate if rate is None else check_rate("rate", rate)
        online = dict(self.online.named_parameters())
        for name, target in self.target.named_parameters():
            target.mul_(m).add_(online[name].detach(), alpha=1.0 - m)
        online_buffers = dict(self.online.named_buffers())
        for name, buffer in self.target.named_buffers():
            buffer.copy_(online_buffers[name])

    def after_step(self, step: int) -> None:
        """Update the target; pass this method as ``fit(..., after_step=...)``."""
        self.update(self.rate_at(step))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` with the target encoder, without gradient."""
        return self.target(x)
