r"""The LDM objective: alignment from a Pyro latent model plus an entropy estimate.

.. math::

    F_{LDM} = \langle \log P_\theta(z, z') \rangle_R + H_R[z, z']

    F_{MI} = \langle \log P_\theta(z, z') \rangle_R + H_R[z] + H_R[z']

The alignment is the sum of the log-densities of the observed sites of the latent
model, averaged over the batch (over sequences for time series). ``F`` is
maximized; the training loss is ``-F``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from ._validation import check_finite, check_tensor
from .distributed import all_gather_rows, full_precision, needs_full_precision
from .entropy.base import EntropyEstimator
from .latents.priors import EmpiricalPriorDistribution

FORMS = ("ldm", "mi", "single")


class ObjectiveTerms(NamedTuple):
    """Value of the objective and its terms, each a scalar tensor in nats."""

    objective: torch.Tensor
    alignment: torch.Tensor
    entropy: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        """The training loss ``-F``."""
        return -self.objective


class _ObservedLogDensity(Messenger):
    """Accumulate the log-densities of observed sample sites.

    A lighter equivalent of ``poutine.trace(...).log_prob_sum()`` restricted to
    observed sites: it applies each site's scale and mask but keeps no trace.
    """

    def __init__(self, detach: frozenset[str]):
        super().__init__()
        self.detach = detach
        self.total = None
        self.sites: list[str] = []
        self.empirical: list[torch.Tensor] = []

    def _pyro_sample(self, msg):
        if msg["is_observed"] and msg["name"] in self.detach:
            msg["value"] = msg["value"].detach()

    def _pyro_post_sample(self, msg):
        if not msg["is_observed"] or site_is_subsample(msg):
            return
        self.sites.append(msg["name"])
        fn = msg["fn"]
        base = fn
        while hasattr(base, "base_dist"):
            base = base.base_dist
        if isinstance(base, EmpiricalPriorDistribution):
            self.empirical.append(msg["value"])
            return
        log_prob = fn.log_prob(msg["value"])
        if msg["mask"] is not None and msg["mask"] is not True:
            log_prob = torch.where(msg["mask"], log_prob, log_prob.new_zeros(()))
        log_prob = log_prob.sum()
        scale = msg["scale"]
        if not (isinstance(scale, float | int) and scale == 1.0):
            log_prob = log_prob * scale
        self.total = log_prob if self.total is None else self.total + log_prob


class LDMObjective(nn.Module):
    r"""Latent distribution matching objective for a latent model written in Pyro.

    Args:
        model: the latent model, a Pyro program called with the latents
            positionally (``z, z_prime`` for paired views, ``z`` for the single
            form). A ``PyroModule`` registers its parameters here.
        entropy: entropy estimator.
        form: ``"ldm"`` uses the joint entropy ``H[z, z']`` of two views, and
            ``"mi"`` uses ``H[z] + H[z']``. ``"single"`` takes one latent tensor
            and uses ``H[z]``. For sequences of shape ``(B, T, D)`` it uses ``T``
            times the single-step entropy of the time steps.
        stop_gradient: names of observed sites whose values are detached before
            they are scored, for example ``("z_prime",)`` in BYOL.
        entropy_weight: factor on the entropy term (1 for the objective as
            derived; other values trade alignment against uniformity).
        gather: concatenate the latents of all processes of a
            ``torch.distributed`` group (:func:`ldm_pyro.distributed.all_gather`)
            before the alignment and the entropy, so that every process
            evaluates the objective of the global batch. Context tensors whose
            leading size equals the local batch size are gathered with them.
            Without a process group it changes nothing.

    The empirical prior :class:`~ldm_pyro.latents.EmpiricalPrior` enters as
    :math:`\langle\log R(z)\rangle = -H_R[z]`. Each site that uses it removes one
    marginal entropy, symmetrized over the views: the MI form becomes
    :math:`\tfrac12 (H[z] + H[z'])` and the LDM form
    :math:`H[z, z'] - \tfrac12 (H[z] + H[z'])`.

    Latents in float16 or bfloat16, or under autocast, are scored in float32 with
    autocast disabled, so an encoder may run in bfloat16.

    Shapes:
        Paired views: ``z`` and ``z_prime`` of shape ``(N, D)``. Single view:
        ``(N, D)``, or ``(B, T, D)`` for sequences, where the alignment is averaged
        over the ``B`` sequences.
    """

    def __init__(
        self,
        model: Callable[..., None],
        entropy: EntropyEstimator,
        *,
        form: str = "ldm",
        stop_gradient: Sequence[str] = (),
        entropy_weight: float = 1.0,
        gather: bool = False,
    ):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.model = model
        self.entropy = entropy
        self.form = form
        self.stop_gradient = frozenset(stop_gradient)
        self.entropy_weight = float(entropy_weight)
        self.gather = bool(gather)
        self.step: int | None = None

    def alignment(self, *latents: torch.Tensor, **context) -> torch.Tensor:
        """Return the alignment term: observed log-density per sample."""
        total, _, _ = self._score(latents, context)
        return total / latents[0].shape[0]

    def _score(self, latents, context):
        recorder = _ObservedLogDensity(self.stop_gradient)
        with recorder:
            self.model(*latents, **context)
        if not recorder.sites:
            raise ValueError(
                "the latent model observed no pyro.sample sites; each latent must be "
                "scored with pyro.sample(name, distribution, obs=value)"
            )
        unknown = self.stop_gradient.difference(recorder.sites)
        if unknown:
            raise ValueError(
                f"stop_gradient names sites {sorted(unknown)} that the latent model "
                f"does not observe; observed sites: {recorder.sites}"
            )
        total = recorder.total
        if total is None:
            total = latents[0].new_zeros(())
        return total, recorder.sites, recorder.empirical

    def forward(self, *latents: torch.Tensor, **context) -> ObjectiveTerms:
        """Evaluate the objective on the encoder outputs.

        Keyword arguments in ``context`` go to the latent model unscored, for
        example a per-step observation-noise variance predicted from the input.

        Raises:
            ValueError: if a latent or a term is NaN or Inf. The message names the
                term, and the training step (``self.step``) when the loop sets it.
        """
        where = f"at step {self.step}" if self.step is not None else ""
        expected = 1 if self.form == "single" else 2
        if len(latents) != expected:
            raise ValueError(
                f"form={self.form!r} takes {expected} latent tensor(s), got "
                f"{len(latents)}"
            )
        names = ("z",) if expected == 1 else ("z", "z_prime")
        for name, value in zip(names, latents, strict=True):
            check_tensor(name, value, ndim=(2, 3) if self.form == "single" else 2)
            check_finite(f"latents {name!r}", value.detach(), context=where)
        if self.gather:
            latents, context = self._gather(latents, context)
        if needs_full_precision([*latents, *context.values()]):
            keys = list(context)
            with full_precision([*latents, *context.values()]) as upcast:
                latents = tuple(upcast[: len(latents)])
                context = dict(zip(keys, upcast[len(latents) :], strict=True))
                return self._evaluate(latents, context, where)
        return self._evaluate(latents, context, where)

    def _gather(self, latents, context):
        """Concatenate latents and per-sample context tensors over processes."""
        local_size = latents[0].shape[0]
        keys = [
            key
            for key, value in context.items()
            if isinstance(value, torch.Tensor)
            and value.dim() >= 1
            and value.shape[0] == local_size
        ]
        gathered = all_gather_rows([*latents, *(context[key] for key in keys)])
        context = dict(context)
        context.update(zip(keys, gathered[len(latents) :], strict=True))
        return tuple(gathered[: len(latents)]), context

    def _evaluate(self, latents, context, where: str) -> ObjectiveTerms:
        total, _, empirical = self._score(latents, context)
        alignment = total / latents[0].shape[0]
        inputs_gathered = getattr(self.entropy, "inputs_gathered", None)
        if self.gather and inputs_gathered is not None:
            with inputs_gathered():
                entropy = self._entropy(latents, len(empirical))
        else:
            entropy = self._entropy(latents, len(empirical))
        check_finite("alignment term", alignment.detach(), context=where)
        check_finite("entropy term", entropy.detach(), context=where)
        objective = alignment + self.entropy_weight * entropy
        return ObjectiveTerms(objective, alignment, entropy)

    def _entropy(self, latents, n_empirical: int) -> torch.Tensor:
        if self.form == "single":
            (z,) = latents
            if n_empirical:
                # H[z] - H[z] with the same estimator: nothing remains.
                return z.new_zeros(())
            if z.dim() == 3:
                steps = z.shape[1]
                return steps * self.entropy(z.reshape(-1, z.shape[-1]))
            return self.entropy(z)
        z, z_prime = latents
        if self.form == "mi":
            marginals = self.entropy.marginal_sum(z, z_prime)
            return (1.0 - 0.5 * n_empirical) * marginals
        joint = self.entropy(z, z_prime)
        if n_empirical:
            joint = joint - 0.5 * n_empirical * self.entropy.marginal_sum(z, z_prime)
        return joint
