"""Tests of the EMA target encoder."""

import math

import pytest
import torch
from torch import nn

from ldm_pyro.ema import EMATarget


def test_ema_update_formula():
    online = nn.Linear(2, 2)
    target = EMATarget(online, rate=0.9)
    start = target.target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    target.update()
    expected = 0.9 * start + 0.1 * online.weight
    torch.testing.assert_close(target.target.weight, expected)


def test_ema_rate_zero_copies_and_one_freezes():
    online = nn.Linear(2, 2)
    copy_target = EMATarget(online, rate=0.0)
    frozen = EMATarget(online, rate=1.0)
    start = frozen.target.weight.clone()
    with torch.no_grad():
        online.weight.mul_(3.0)
    copy_target.update()
    frozen.update()
    torch.testing.assert_close(copy_target.target.weight, online.weight)
    torch.testing.assert_close(frozen.target.weight, start)


def test_ema_target_has_no_gradient():
    target = EMATarget(nn.Linear(2, 1), rate=0.5)
    output = target(torch.randn(3, 2))
    assert not output.requires_grad
    assert all(not p.requires_grad for p in target.parameters())


def test_ema_cosine_schedule():
    target = EMATarget(nn.Linear(1, 1), rate=0.9, final_rate=1.0, total_steps=10)
    assert target.rate_at(0) == pytest.approx(0.9)
    assert target.rate_at(5) == pytest.approx(0.95)
    assert target.rate_at(10) == pytest.approx(1.0)
    assert math.isclose(target.rate_at(20), 1.0)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_ema_rejects_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        EMATarget(nn.Linear(1, 1), rate=rate)


def test_ema_schedule_needs_total_steps():
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        EMATarget(nn.Linear(1, 1), rate=0.9, final_rate=1.0)
