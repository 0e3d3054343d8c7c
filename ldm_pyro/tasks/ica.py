"""Linear ICA as LDM from a spec: ``ldm-pyro fit ica-laplace --data ica-images``."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..builders import construct
from ..runs import register_task

logger = logging.getLogger(__name__)


def _generators():
    from ..data import ica

    return {
        "ica-images": ica.make_image_mixtures,
        "ica-laplace": ica.make_laplace_mixtures,
        "ica-uniform": ica.make_uniform_mixtures,
        "ica-ou": ica.make_ou_mixtures,
    }


def load_ica_data(spec) -> tuple[np.ndarray, Any]:
    """Return the mixtures and, for generated data, the :class:`ICAData`."""
    data = spec["data"]
    options = dict(spec["task_params"].get("data", {}))
    generators = _generators()
    if data["name"] in generators:
        factory = generators[data["name"]]
        if "seed" in inspect.signature(factory).parameters:
            options.setdefault("seed", spec["training"]["seed"])
        problem = construct(factory, options, "task_params.data")
        return problem.mixtures.numpy(), problem
    if data["name"] == "npz":
        path = Path(data["path"])
        if not path.is_file():
            raise FileNotFoundError(
                f"data file {path} not found; pass --data PATH.npz with an array "
                f"{data['x_key']!r} of shape (N, n)"
            )
        with np.load(path, allow_pickle=False) as arrays:
            if data["x_key"] not in arrays:
                raise ValueError(
                    f"{path} has no array {data['x_key']!r}; arrays present: "
                    f"{sorted(arrays.files)} (set data.x_key)"
                )
            return np.asarray(arrays[data["x_key"]], dtype=np.float64), None
    raise ValueError(
        f"unknown data.name {data['name']!r} for an ICA task; valid choices: "
        f"{', '.join(sorted(generators))}, npz"
    )


@register_task("ica")
def run_ica(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Fit linear ICA and report the Amari distance and MCC against the truth."""
    from ..evaluation.ica import amari_distance, mean_correlation_coefficient
    from ..ica import fit_ica, plot_ica

    if resume:
        raise ValueError(
            "ICA runs are full-batch and have no checkpoint to resume; run without "
            "--resume"
        )
    mixtures, problem = load_ica_data(spec)
    options = dict(spec["task_params"].get("fit", {}))
    options.setdefault("seed", spec["training"]["seed"])
    options["progress"] = progress
    result = _fit(fit_ica, mixtures, spec, options)
    metrics: dict[str, Any] = {
        "task": "ica",
        "data": spec["data"]["name"],
        "prior": spec["model"]["prior"],
        "iterations": result.iterations,
        "converged": result.converged,
        "final": {key: values[-1] for key, values in result.history.items()},
    }
    true_sources = None
    if problem is not None:
        true_sources = problem.sources.numpy()
        metrics["amari_distance"] = amari_distance(
            result.unmixing.numpy(), problem.mixing.numpy()
        )
        metrics["mcc"] = mean_correlation_coefficient(
            result.sources.numpy(), true_sources
        )
        metrics["summary_table"] = (
            f"Amari distance {metrics['amari_distance']:.4f}  "
            f"MCC {metrics['mcc']:.4f}  ({result.iterations} iterations)"
        )
        logger.info(metrics["summary_table"])
    image_shape = None
    if spec["data"]["name"] == "ica-images":
        size = int(spec["task_params"].get("data", {}).get("size", 200))
        image_shape = (size, size)
    figure = plot_ica(
        mixtures, result.sources.numpy(), true_sources, image_shape=image_shape
    )
    figure.savefig(out / "sources.png", dpi=100)
    np.savez(
        out / "ica_result.npz",
        unmixing=result.unmixing.numpy(),
        sources=result.sources.numpy(),
    )
    (out / "history.json").write_text(json.dumps(result.history) + "\n")
    return metrics


def _fit(fit_ica, mixtures, spec, options):
    def call(**kwargs):
        return fit_ica(
            mixtures,
            spec["model"]["prior"],
            prior_options=dict(spec["model"]["prior_params"]),
            **kwargs,
        )

    call.__signature__ = _signature_without(fit_ica, ("X", "prior", "prior_options"))
    return construct(call, options, "task_params.fit")


def _signature_without(function, names):
    signature = inspect.signature(function)
    kept = [p for name, p in signature.parameters.items() if name not in names]
    return signature.replace(parameters=kept)
