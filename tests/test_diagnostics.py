"""Tests of the gradient-agreement diagnostic."""

import math

import pytest
import torch
from torch import nn

from ldm_pyro.diagnostics import (
    gradient_cosine,
    plugin_sequence_entropy,
    sequence_entropy_gradient_cosine,
)
from ldm_pyro.entropy import KNNEntropy
from ldm_pyro.latents import GaussianKernel, RNNPredictor, SequencePredictiveModel


def test_gradient_cosine_hand_computation():
    # Gradients (1, 0) and (1, 1): cosine 1 / sqrt(2).
    w = torch.zeros(2, requires_grad=True)
    value = gradient_cosine(w[0], w[0] + w[1], [w])
    assert value == pytest.approx(1 / math.sqrt(2))


def test_plugin_entropy_gradient_only_through_targets():
    model = SequencePredictiveModel(RNNPredictor(2, 4, head=[]), GaussianKernel(1.0))
    z = torch.randn(3, 5, 2, requires_grad=True)
    plugin_sequence_entropy(model, z).backward()
    assert torch.all(z.grad[:, 0] == 0)
    assert z.grad[:, 1:].abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_sequence_gradient_cosine_in_range():
    encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model = SequencePredictiveModel(RNNPredictor(2, 4, head=[]), GaussianKernel(1.0))
    frames = torch.randn(6, 5, 4)
    value = sequence_entropy_gradient_cosine(encoder, model, KNNEntropy(), frames)
    assert -1.0 <= value <= 1.0
