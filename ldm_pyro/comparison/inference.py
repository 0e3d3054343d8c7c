r"""Posterior inference over the parameters of a latent model on frozen encodings.

The latent model declares priors on its own parameters with ``pyro.sample``, for
example

.. code-block:: python

    def laplace_model(z):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("obs", z.shape[0]):
            pyro.sample("z", dist.Laplace(0.0, scale).expand([z.shape[1]])
                        .to_event(1), obs=z)

and :func:`sample_posterior` draws from :math:`p(\theta \mid z_{1:N})` with NUTS
(small models) or approximates it with stochastic variational inference and a
multivariate normal guide (larger models).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoLaplaceApproximation, AutoMultivariateNormal
from pyro.optim import ClippedAdam

from .._validation import LDMWarning
from .likelihood import latent_sites

logger = logging.getLogger(__name__)

METHODS = ("nuts", "svi", "laplace")


class PosteriorSamples(NamedTuple):
    """Draws of the parameter sites of a latent model.

    Attributes:
        samples: one tensor per parameter site, of shape
            ``(chains, draws, *site_shape)``.
        method: ``"nuts"``, ``"svi"`` or ``"laplace"``.
        divergences: number of divergent NUTS transitions after warm-up, summed
            over chains (0 for SVI).
        seconds: wall time of the inference.
    """

    samples: dict[str, torch.Tensor]
    method: str
    divergences: int
    seconds: float


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sample_posterior(
    model,
    *latents: torch.Tensor,
    method: str = "nuts",
    num_samples: int = 500,
    warmup_steps: int | None = None,
    num_chains: int = 1,
    seed: int = 0,
    target_accept_prob: float = 0.8,
    svi_steps: int = 2000,
    lr: float = 0.02,
    progress: bool = False,
    **context,
) -> PosteriorSamples:
    """Sample the posterior of a latent model's ``pyro.sample`` parameters.

    NUTS runs the chains one after another, chain ``c`` seeded with ``seed + c``,
    so results do not depend on multiprocessing. SVI fits an
    ``AutoMultivariateNormal`` guide with Adam (learning rate decaying from
    ``lr`` to ``lr / 100``) and ``Trace_ELBO`` and returns
    ``num_samples`` guide draws as one chain. ``"laplace"`` finds the posterior
    mode with the same optimizer (no sampling noise, so it converges in fewer
    steps) and draws from the Gaussian with the inverse Hessian of the negative
    log posterior as covariance, in the unconstrained space. The guide
    parameters live in a private parameter-store scope, so the global store is
    left unchanged.

    Args:
        model: the latent model, called as ``model(*latents, **context)``; its
            unobserved ``pyro.sample`` sites are the parameters.
        *latents: the frozen encodings, observed by the program.
        method: ``"nuts"``, ``"svi"`` or ``"laplace"``.
        num_samples: draws per chain.
        warmup_steps: NUTS warm-up steps per chain (default ``num_samples``).
        num_chains: NUTS chains (SVI always returns one).
        seed: Pyro random seed.
        target_accept_prob: NUTS step-size adaptation target.
        svi_steps: optimization steps of SVI and of the Laplace mode search.
        lr: initial Adam learning rate of SVI.
        progress: show Pyro's progress bar for NUTS.
        **context: keyword arguments of the program.

    Returns:
        :class:`PosteriorSamples`.

    Raises:
        ValueError: on an unknown method, invalid counts, or a program without
            parameter sites.

    Warns:
        LDMWarning: when NUTS reports divergent transitions.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    num_samples = _check_count("num_samples", num_samples, 1)
    num_chains = _check_count("num_chains", num_chains, 1)
    warmup_steps = num_samples if warmup_steps is None else warmup_steps
    warmup_steps = _check_count("warmup_steps", warmup_steps, 0)
    svi_steps = _check_count("svi_steps", svi_steps, 1)
    pyro.set_rng_seed(seed)
    trace = poutine.trace(model).get_trace(*latents, **context)
    names = [site["name"] for site in latent_sites(trace)]
    if not names:
        raise ValueError(
            "the latent model has no parameter sites to infer; declare each "
            "parameter with pyro.sample(name, prior) inside the program"
        )
    start = time.perf_counter()
    if method == "nuts":
        samples, divergences = _run_nuts(
            model,
            latents,
            context,
            num_samples,
            warmup_steps,
            num_chains,
            seed,
            target_accept_prob,
            progress,
        )
    else:
        samples = _run_svi(
            model, latents, context, names, num_samples, svi_steps, lr, method
        )
        divergences = 0
    seconds = time.perf_counter() - start
    logger.info(
        "sample_posterior: method=%s, sites=%s, %d chain(s) x %d draws in %.2f s",
        method,
        names,
        next(iter(samples.values())).shape[0],
        num_samples,
        seconds,
    )
    if divergences:
        warnings.warn(
            f"NUTS reported {divergences} divergent transitions; raise "
            "target_accept_prob, reparameterize the model or check the priors",
            LDMWarning,
            stacklevel=2,
        )
    return PosteriorSamples(samples, method, divergences, seconds)


def _run_nuts(
    model,
    latents,
    context,
    num_samples,
    warmup_steps,
    num_chains,
    seed,
    target_accept_prob,
    progress,
):
    chains: list[dict[str, torch.Tensor]] = []
    divergences = 0
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model, target_accept_prob=target_accept_prob)
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            num_chains=1,
            disable_progbar=not progress,
        )
        mcmc.run(*latents, **context)
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        per_chain = mcmc.diagnostics().get("divergences", {})
        divergences += sum(len(steps) for steps in per_chain.values())
    samples = {
        name: torch.stack([chain[name] for chain in chains]) for name in chains[0]
    }
    return samples, divergences


def _run_svi(model, latents, context, names, num_samples, svi_steps, lr, method):
    with pyro.get_param_store().scope():
        if method == "laplace":
            guide = AutoLaplaceApproximation(model)
        else:
            guide = AutoMultivariateNormal(model)
        # The learning rate decays geometrically to lr / 100 over the run, so the
        # last steps average out the noise of the single-particle ELBO gradient.
        decay = 0.01 ** (1.0 / svi_steps)
        optimizer = ClippedAdam({"lr": lr, "lrd": decay})
        svi = SVI(model, guide, optimizer, Trace_ELBO())
        loss = math.nan
        for _ in range(svi_steps):
            loss = svi.step(*latents, **context)
        if not math.isfinite(loss):
            raise ValueError(
                f"SVI ended with a non-finite ELBO loss ({loss}); lower lr or check "
                "the priors"
            )
        if method == "laplace":
            guide = guide.laplace_approximation(*latents, **context)
        predictive = Predictive(
            guide, num_samples=num_samples, return_sites=names, parallel=False
        )
        with torch.no_grad():
            draws = predictive(*latents, **context)
    return {name: draws[name].detach().unsqueeze(0) for name in names}
