r"""Pointwise log-likelihood of frozen encodings under a latent model.

The latent model is a Pyro program that observes the latents in
``pyro.sample(name, distribution, obs=value)`` sites. Tracing it with
``pyro.poutine.trace`` and reading each observed site's ``log_prob`` with the batch
dimensions kept gives one log-density per observation: per sample for ``(N, D)``
latents, per sequence for ``(B, T, D)`` latents, and, on request, per time step.

For a linear encoder :math:`z = W x` the density of the data is

.. math::

    \log p(x) = \log P_\theta(W x) + \tfrac12 \log |W W^\top|,

with :math:`\log |\det W|` for a square ``W`` (change of variables; for a
non-square ``W`` the injective-flow form of the Jacobian term). Adding this term
puts models with different linear encoders on the data scale. Without it the
log-likelihood is a density of the latents, and comparisons are valid only
between models that share the encoder.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pyro import poutine
from pyro.distributions import Independent
from pyro.poutine.util import site_is_subsample

from .._validation import check_finite, check_tensor
from ..latents.priors import EmpiricalPriorDistribution


def linear_log_jacobian(weight: torch.Tensor) -> torch.Tensor:
    r"""Return the log-Jacobian term of a linear encoder ``z = W x``.

    .. math::

        \tfrac12 \log |W W^\top| \quad (D < n), \qquad
        \log |\det W| \quad (D = n).

    Args:
        weight: the full encoder matrix ``W`` (for whitened ICA the product of the
            learned matrix and the whitening matrix, ``ICAResult.unmixing``).

    Returns:
        A scalar tensor in nats.

    Raises:
        ValueError: if ``W`` has more rows than columns or is singular.

    Shapes:
        ``weight`` is ``(D, n)`` with ``D <= n``.
    """
    check_tensor("weight", weight, ndim=2)
    rows, columns = weight.shape
    if rows > columns:
        raise ValueError(
            f"weight must have shape (D, n) with D <= n (an injective linear "
            f"encoder), got shape {tuple(weight.shape)}; pass W with one row per "
            "latent dimension"
        )
    if rows == columns:
        sign, log_abs_det = torch.linalg.slogdet(weight)
    else:
        sign, log_abs_det = torch.linalg.slogdet(weight @ weight.T)
        log_abs_det = 0.5 * log_abs_det
    if float(sign) == 0.0 or not bool(torch.isfinite(log_abs_det)):
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} is singular (log-determinant "
            f"{float(log_abs_det)}); the encoder must have full row rank"
        )
    return log_abs_det


def observed_sites(trace) -> list[dict]:
    """Return the observed sample sites of a Pyro trace, without subsample sites."""
    return [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample"
        and site["is_observed"]
        and not site_is_subsample(site)
    ]


def latent_sites(trace) -> list[dict]:
    """Return the latent (unobserved) sample sites of a Pyro trace."""
    return [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
    ]


def _base_distribution(fn):
    base = fn
    while hasattr(base, "base_dist"):
        base = base.base_dist
    return base


def _site_log_prob(site: dict, per_step: bool) -> torch.Tensor:
    """Log-density of one observed site, with the batch dimensions kept.

    With ``per_step`` a distribution over whole sequences (event shape ``(T, L)``)
    is split into its time steps. A ``step_log_prob`` method provides them
    directly. Otherwise the distribution must be an ``Independent`` whose base
    has the time axis as its last batch dimension.
    """
    fn, value = site["fn"], site["value"]
    name = site["name"]
    if isinstance(_base_distribution(fn), EmpiricalPriorDistribution):
        raise ValueError(
            f"site {name!r} uses the empirical prior, which has no density; model "
            "comparison needs a latent model with a proper prior on every observed "
            "site"
        )
    log_prob = None
    if per_step and len(fn.batch_shape) < 2:
        if hasattr(fn, "step_log_prob"):
            log_prob = fn.step_log_prob(value)
        elif isinstance(fn, Independent) and fn.reinterpreted_batch_ndims >= 1:
            inner = fn.base_dist.log_prob(value)
            extra = fn.reinterpreted_batch_ndims - 1
            log_prob = inner.sum(tuple(range(-extra, 0))) if extra else inner
        else:
            raise ValueError(
                f"per_step=True needs per-time-step log-densities, but site "
                f"{name!r} has {type(fn).__name__} with batch shape "
                f"{tuple(fn.batch_shape)}; score each step in a plate over time, "
                "use an Independent over a (B, T) batch, or a distribution with a "
                "step_log_prob method"
            )
    if log_prob is None:
        log_prob = fn.log_prob(value)
    mask = site["mask"]
    if mask is not None and mask is not True:
        log_prob = torch.where(mask, log_prob, log_prob.new_zeros(()))
    return log_prob


def pointwise_log_likelihood(
    model,
    *latents: torch.Tensor,
    per_step: bool = False,
    jacobian: torch.Tensor | None = None,
    parameters: Mapping[str, torch.Tensor] | None = None,
    **context,
) -> torch.Tensor:
    r"""Trace a latent model and return the log-density of each observation.

    The observed sites are summed per observation (for paired views
    :math:`\log P(z_i) + \log P(z'_i \mid z_i)`). Batch dimensions after the
    first are summed as well, except the time axis with ``per_step``. Site masks
    are applied; site scales (from subsampling plates) are not, because each
    value is the density of one observation.

    Args:
        model: the latent model, a Pyro program called as
            ``model(*latents, **context)``.
        *latents: the frozen encodings, in the order the program takes them.
        per_step: return per-time-step values ``log P(z_t | z_{<t})`` of shape
            ``(B, T)`` instead of one value per sequence.
        jacobian: the encoder matrix ``W`` of a linear encoder ``z = W x``; adds
            :func:`linear_log_jacobian` once per latent vector (``T`` times per
            sequence), so the values are data log-densities.
        parameters: values of the program's ``pyro.sample`` parameter sites.
            They are fixed by ``pyro.poutine.condition`` and left out of the sum
            (they are priors, not likelihood terms). Parameter sites without a
            value are drawn from their priors.
        **context: keyword arguments of the program, passed unscored.

    Returns:
        Log-densities in nats: ``(N,)`` per sample, ``(B,)`` per sequence, or
        ``(B, T)`` per time step.

    Raises:
        ValueError: if the program observes no site, a site has no per-observation
            batch dimension, uses the empirical prior, the sites disagree on the
            number of observations, or a value is NaN or Inf.

    Shapes:
        Single view ``z``: ``(N, D)``; paired views ``(N, D)`` each; sequences
        ``(B, T, D)``.
    """
    if parameters:
        model = poutine.condition(model, data=dict(parameters))
    exclude = frozenset(parameters or ())
    return _log_likelihood(model, latents, context, per_step, jacobian, exclude)


def _log_likelihood(model, latents, context, per_step, jacobian, exclude):
    """Trace ``model`` and sum the observed sites not in ``exclude``."""
    if not latents:
        raise ValueError("pointwise_log_likelihood needs at least one latent tensor")
    first = check_tensor("latents[0]", latents[0], ndim=(2, 3))
    if per_step and first.dim() != 3:
        raise ValueError(
            f"per_step=True needs sequences of shape (B, T, D), got latents[0] of "
            f"shape {tuple(first.shape)}; drop per_step for (N, D) latents"
        )

    trace = poutine.trace(model).get_trace(*latents, **context)
    sites = [s for s in observed_sites(trace) if s["name"] not in exclude]
    if not sites:
        raise ValueError(
            "the latent model observed no pyro.sample sites; each latent must be "
            "scored with pyro.sample(name, distribution, obs=value)"
        )

    count = first.shape[0]
    keep = 2 if per_step else 1
    total = None
    for site in sites:
        log_prob = _site_log_prob(site, per_step)
        if log_prob.dim() < keep or log_prob.shape[0] != count:
            raise ValueError(
                f"site {site['name']!r} has log_prob of shape "
                f"{tuple(log_prob.shape)}, expected a leading dimension of "
                f"{count} observations; put the observations in a pyro.plate (or "
                "give the distribution that batch shape) so each gets its own "
                "log-density"
            )
        if per_step and log_prob.shape[1] != first.shape[1]:
            raise ValueError(
                f"site {site['name']!r} has per-step log_prob of shape "
                f"{tuple(log_prob.shape)}, expected (B, T) = "
                f"{tuple(first.shape[:2])}"
            )
        if log_prob.dim() > keep:
            log_prob = log_prob.sum(tuple(range(keep, log_prob.dim())))
        total = log_prob if total is None else total + log_prob
    if jacobian is not None:
        term = linear_log_jacobian(jacobian).to(total)
        if first.dim() == 3 and not per_step:
            term = term * first.shape[1]
        total = total + term
    return check_finite("pointwise log-likelihood", total.detach())


def draws_log_likelihood(
    model,
    samples: dict[str, torch.Tensor],
    *latents: torch.Tensor,
    per_step: bool = False,
    jacobian: torch.Tensor | None = None,
    **context,
) -> torch.Tensor:
    """Evaluate :func:`pointwise_log_likelihood` at every posterior draw.

    Each draw conditions the program's latent parameter sites on the sampled
    values with ``pyro.poutine.condition``.

    Args:
        model: the latent model with ``pyro.sample`` parameter sites.
        samples: draws of every parameter site, each of shape
            ``(chains, draws, *site_shape)``.
        *latents: the frozen encodings.
        per_step: per-time-step values for sequences.
        jacobian: encoder matrix of a linear encoder, see
            :func:`pointwise_log_likelihood`.
        **context: keyword arguments of the program.

    Returns:
        ``(chains, draws, N)``, ``(chains, draws, B)`` or ``(chains, draws, B, T)``.

    Raises:
        ValueError: if ``samples`` is empty or its arrays disagree on the number
            of chains and draws.
    """
    if not samples:
        raise ValueError(
            "samples is empty; pass the posterior draws of the parameter sites"
        )
    shapes = {name: tuple(value.shape[:2]) for name, value in samples.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
        raise ValueError(
            f"every entry of samples must have leading shape (chains, draws) in "
            f"common, got {shapes}"
        )
    chains, draws = next(iter(shapes.values()))
    # Conditioning marks the parameter sites as observed; they are priors, not
    # likelihood terms, so they are left out of the sum.
    parameters = frozenset(samples)
    rows = []
    with torch.no_grad():
        for chain in range(chains):
            for draw in range(draws):
                values = {name: value[chain, draw] for name, value in samples.items()}
                conditioned = poutine.condition(model, data=values)
                rows.append(
                    _log_likelihood(
                        conditioned, latents, context, per_step, jacobian, parameters
                    )
                )
    stacked = torch.stack(rows)
    return stacked.reshape((chains, draws) + tuple(stacked.shape[1:]))
