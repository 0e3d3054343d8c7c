"""Build latent models, entropy estimators and objectives from resolved specs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from . import latents
from .objective import LDMObjective

PRIORS: dict[str, type] = {
    "flat": latents.FlatPrior,
    "sphere-uniform": latents.SphereUniformPrior,
    "empirical": latents.EmpiricalPrior,
    "simplex-uniform": latents.SimplexUniformPrior,
    "categorical-uniform": latents.CategoricalUniformPrior,
}
KERNELS: dict[str, type] = {
    "gaussian": latents.GaussianKernel,
    "vmf": latents.VonMisesFisherKernel,
    "predictor": latents.PredictorKernel,
    "dirichlet": latents.DirichletKernel,
    "categorical-match": latents.CategoricalMatchKernel,
}
PROGRAMS = ("paired", "single")


def construct(factory: Callable[..., Any], params: Mapping[str, Any], where: str):
    """Call ``factory(**params)`` after checking the names against its signature.

    Raises:
        ValueError: naming the spec table ``where``, the unknown fields and the
            valid ones.
    """
    signature = inspect.signature(factory)
    accepts_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    valid = [
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    ]
    unknown = sorted(set(params) - set(valid))
    if unknown and not accepts_any:
        raise ValueError(
            f"unknown spec field(s) {unknown} in [{where}]; valid fields: {valid}"
        )
    return factory(**params)


def _choose(registry: Mapping[str, Any], name: str, field: str):
    if name not in registry:
        raise ValueError(
            f"unknown {field} {name!r}; valid choices: {', '.join(sorted(registry))}"
        )
    return registry[name]


def prior_registry() -> dict[str, type]:
    """Return every prior name a spec may use, including factorized priors."""
    registry = dict(PRIORS)
    try:
        from .latents.factorized import PRIORS as factorized
    except ImportError:  # the factorized priors are optional building blocks
        factorized = {}
    registry.update(factorized)
    return registry


def build_latent_model(spec: Mapping[str, Any]):
    """Build the latent model named by ``spec["model"]``.

    ``model.program`` is ``"paired"`` (prior times kernel, sites ``z`` and
    ``z_prime``), ``"single"`` (prior only, site ``z``), a dynamics program
    registered by a task, or a user's ``"module:function"``.
    """
    model = spec["model"]
    program = model["program"]
    if ":" in program:
        return latents.load_program(program)
    if program not in PROGRAMS:
        raise ValueError(
            f"unknown model.program {program!r}; valid choices: "
            f"{', '.join(PROGRAMS)} or 'module:function'"
        )
    prior_cls = _choose(prior_registry(), model["prior"], "model.prior")
    prior = construct(prior_cls, model["prior_params"], "model.prior_params")
    if program == "single":
        return latents.SingleViewModel(prior)
    kernel_cls = _choose(KERNELS, model["kernel"], "model.kernel")
    kernel = construct(kernel_cls, model["kernel_params"], "model.kernel_params")
    return latents.PairedViewModel(prior, kernel)


def build_entropy(spec: Mapping[str, Any]):
    """Build the entropy estimator of ``spec["entropy"]``."""
    from .entropy import ESTIMATORS

    params = dict(spec["entropy"])
    if "estimator" not in params:
        raise ValueError(
            "spec table [entropy] needs an 'estimator' field; valid choices: "
            f"{', '.join(sorted(ESTIMATORS))}"
        )
    name = params.pop("estimator")
    estimator_cls = _choose(ESTIMATORS, name, "entropy.estimator")
    return construct(estimator_cls, params, "entropy")


def build_objective(spec: Mapping[str, Any], model=None, entropy=None) -> LDMObjective:
    """Build the objective of a spec; ``model`` or ``entropy`` replace the spec's."""
    forms = ("ldm", "mi") if spec["task"] == "paired" else ("ldm", "mi", "single")
    if spec["form"] not in forms:
        raise ValueError(f"form must be one of {forms}, got {spec['form']!r}")
    return LDMObjective(
        model if model is not None else build_latent_model(spec),
        entropy if entropy is not None else build_entropy(spec),
        form=spec["form"],
        stop_gradient=spec["model"]["stop_gradient"],
        entropy_weight=spec["training"]["entropy_weight"],
    )
