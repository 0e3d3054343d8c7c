r"""Training diagnostics: agreement between the encoder gradients of entropy estimators.

Two estimators of the same entropy should push the encoder the same way. The
cosine similarity between their encoder gradients,

.. math::

    \cos(g_a, g_b) = \frac{g_a^\top g_b}{\lVert g_a \rVert \lVert g_b \rVert},
    \qquad g = \nabla_\phi \hat H,

over all encoder parameters :math:`\phi`, tracks this during training. For
sequences, Mikulasch and Zenke compare the kNN single-step entropy
:math:`T \hat H_{kNN}[z]` with the stop-gradient plug-in estimate
:math:`-\sum_t \langle \log P_{SG[\theta]}(z_t | SG[z_{<t}]) \rangle`; they report a
positive cosine that rises during training.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ._validation import check_tensor
from .entropy.base import EntropyEstimator


def gradient_cosine(
    term_a: torch.Tensor, term_b: torch.Tensor, parameters: Iterable[torch.Tensor]
) -> float:
    """Return the cosine similarity of the gradients of two scalars.

    Args:
        term_a: scalar tensor, for example one entropy estimate.
        term_b: scalar tensor built from the same parameters.
        parameters: the parameters to differentiate with respect to (unused ones
            count as zero gradient).

    Returns:
        The cosine in ``[-1, 1]``, or ``nan`` if a gradient is zero.
    """
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("parameters contains no tensor with requires_grad=True")
    grads_a = torch.autograd.grad(term_a, params, retain_graph=True, allow_unused=True)
    grads_b = torch.autograd.grad(term_b, params, retain_graph=True, allow_unused=True)
    flat_a = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads_a, params, strict=True)
        ]
    )
    flat_b = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads_b, params, strict=True)
        ]
    )
    norm = flat_a.norm() * flat_b.norm()
    if norm == 0:
        return float("nan")
    return float(flat_a @ flat_b / norm)


def plugin_sequence_entropy(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    r"""Return the stop-gradient plug-in estimate of :math:`\sum_t H[z_t | z_{<t}]`.

    .. math::

        \hat H = -\frac{1}{B} \sum_{b} \sum_{t=2}^T
            \log K_{SG[\theta]}(z_{bt}; p_{SG[\theta]}(SG[z_{b,<t}]))

    Only the targets :math:`z_t` carry gradient, so its encoder gradient is the
    entropy part of the stop-gradient objective (Eq. 54).

    Args:
        model: a :class:`~ldm_pyro.latents.SequencePredictiveModel` (anything
            with ``predictor`` and ``kernel`` attributes).
        z: sequences ``(B, T, D)``.
    """
    check_tensor("z", z, ndim=3)
    with torch.no_grad():
        prediction = model.predictor(z[:, :-1].detach())
        kernel = model.kernel(prediction)
    log_density = kernel.log_prob(z[:, 1:])
    return -log_density.sum() / z.shape[0]


def knn_sequence_entropy(estimator: EntropyEstimator, z: torch.Tensor) -> torch.Tensor:
    """Return ``T`` times the single-step entropy of the pooled latents of ``z``."""
    check_tensor("z", z, ndim=3)
    return z.shape[1] * estimator(z.reshape(-1, z.shape[-1]))


def sequence_entropy_gradient_cosine(
    encoder: nn.Module,
    model: nn.Module,
    estimator: EntropyEstimator,
    frames: torch.Tensor,
) -> float:
    """Return the cosine between the encoder gradients of the kNN and plug-in terms.

    Args:
        encoder: maps frames ``(M, ...)`` to latents ``(M, D)``.
        model: the sequence latent model, for the plug-in term.
        estimator: the single-step estimator, for example
            :class:`~ldm_pyro.entropy.KNNEntropy`.
        frames: one batch of sequences ``(B, T, ...)``.
    """
    batch, steps = frames.shape[:2]
    z = encoder(frames.reshape(batch * steps, *frames.shape[2:]))
    z = z.reshape(batch, steps, -1)
    return gradient_cosine(
        knn_sequence_entropy(estimator, z),
        plugin_sequence_entropy(model, z),
        encoder.parameters(),
    )
