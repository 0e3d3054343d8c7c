r"""Stop-gradient plug-in entropy: a zero entropy term for predictive latent models.

A latent model that scores detached targets, for example
:class:`ldm_pyro.latents.KalmanDynamics` with ``detach_targets=True``, already
carries the conditional entropy in its alignment term. The gradient identity

.. math::

    \nabla \langle \log P_\theta(SG[z_t] \mid z_{:t}) \rangle_R
    = \nabla \langle \log P_\theta(z_t \mid z_{:t}) \rangle_R
    - \nabla \langle \log P_{SG[\theta]}(z_t \mid SG[z_{:t}]) \rangle_R

is valid because the gradients through the current :math:`z_t` cancel. The last term
is the cross-entropy of the fitted predictive model, a plug-in (upper-bound)
estimate of :math:`H_R[z_t \mid z_{:t}]`, so maximizing the stop-gradient
alignment maximizes :math:`F_{LDM}` with that estimator. The separate entropy
term of the objective is then zero.

References:
    F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
    Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Eq. 35 and 54.
"""

from __future__ import annotations

import torch

from .base import EntropyEstimator


class PlugInEntropy(EntropyEstimator):
    """Entropy term of the stop-gradient form: always zero.

    Use it with a latent model whose observed sites score detached targets; the
    plug-in conditional entropy is then part of the alignment term (see the
    module docstring). The estimate is exactly ``0`` with no gradient, so it drops
    the whole entropy, including every additive constant.
    """

    min_samples = 1

    def estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Return a zero scalar of ``z``'s dtype and device."""
        return z.new_zeros(())
