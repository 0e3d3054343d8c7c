"""Tests of the InfoNCE conditional."""

import math

import pytest
import torch
from torch.nn import functional

from ldm_pyro.entropy.infonce import InfoNCEKernel, infonce_log_density


def test_infonce_matches_cross_entropy():
    # Reference: InfoNCE = cross-entropy of softmax(beta p_i^T z_j / |p_i|) at j=i.
    beta = 2.5
    prediction, target = (
        torch.randn(7, 3),
        functional.normalize(torch.randn(7, 3), dim=-1),
    )
    logits = beta * functional.normalize(prediction, dim=-1) @ target.T
    infonce = functional.cross_entropy(logits, torch.arange(7), reduction="none")
    log_density = infonce_log_density(prediction, target, beta)
    torch.testing.assert_close(-log_density, infonce - math.log(7))


def test_infonce_negatives_per_time_step():
    # Negatives of sequence b at step t are the other sequences at the same step.
    prediction, target = torch.randn(5, 3, 2), torch.randn(5, 3, 2)
    log_density = infonce_log_density(prediction, target, 1.0)
    for t in range(3):
        torch.testing.assert_close(
            log_density[:, t], infonce_log_density(prediction[:, t], target[:, t], 1.0)
        )


def test_infonce_kernel_distribution_shape():
    distribution = InfoNCEKernel(3.0)(torch.randn(4, 2))
    assert distribution.log_prob(torch.randn(4, 2)).shape == (4,)


def test_infonce_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        infonce_log_density(torch.randn(4, 2), torch.randn(3, 2), 1.0)
