r"""ArviZ export of posterior draws and Bayesian model comparison with LOO and WAIC.

:func:`to_inference_data` builds an ``arviz.InferenceData`` with the groups

- ``posterior``: one variable per parameter site, dimensions ``(chain, draw, ...)``;
- ``log_likelihood``: one variable (``var_name``, default ``"z"``), the summed
  log-density of the observed sites, dimensions ``(chain, draw, obs)`` for
  ``(N, D)`` latents, ``(chain, draw, sequence)`` for sequences, or
  ``(chain, draw, sequence, time)`` with ``per_step=True``;
- ``observed_data``: the latents of every observed site, dimensions
  ``(obs, latent)`` or ``(sequence, time, latent)``.

A run folder takes part in ``ldm-pyro compare`` when it contains
``inference_data.nc`` (:data:`INFERENCE_DATA_FILE`), written by
:func:`write_inference_data`. ``az.loo`` treats every entry of the
log-likelihood as one observation, so a per-step export gives
leave-one-time-step-out estimates, not leave-one-sequence-out.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .._validation import check_tensor
from .inference import PosteriorSamples
from .likelihood import draws_log_likelihood, observed_sites

logger = logging.getLogger(__name__)

#: File name of the exported ``InferenceData`` in a run folder.
INFERENCE_DATA_FILE = "inference_data.nc"
INFORMATION_CRITERIA = ("loo", "waic")


def import_arviz():
    """Import ArviZ, silencing the FutureWarning that ArviZ 0.23 emits on import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


def to_inference_data(
    model,
    posterior: PosteriorSamples | Mapping[str, torch.Tensor],
    *latents: torch.Tensor,
    per_step: bool = False,
    jacobian: torch.Tensor | None = None,
    var_name: str = "z",
    **context,
):
    """Export posterior draws and pointwise log-likelihoods to ``InferenceData``.

    Args:
        model: the latent model with ``pyro.sample`` parameter sites.
        posterior: :class:`~ldm_pyro.comparison.PosteriorSamples`, or a mapping of
            parameter draws of shape ``(chains, draws, *site_shape)``.
        *latents: the frozen (held-out) encodings the posterior was fitted on.
        per_step: store per-time-step log-likelihoods of sequences.
        jacobian: encoder matrix ``W`` of a linear encoder ``z = W x``; adds the
            log-Jacobian term, so that models with different encoders compare on
            the data scale.
        var_name: name of the log-likelihood variable.
        **context: keyword arguments of the program.

    Returns:
        ``arviz.InferenceData`` with ``posterior``, ``log_likelihood`` and
        ``observed_data`` groups; the ``log_likelihood`` attributes record
        ``per_step`` and ``jacobian`` (0 or 1).

    Raises:
        ValueError: if the draws are empty, the log-likelihood has NaN or Inf, or
            the ``log_likelihood`` group would be missing from the result.

    Shapes:
        Latents ``(N, D)`` (paired views: each ``(N, D)``) or ``(B, T, D)``.
    """
    az = import_arviz()
    samples = (
        posterior.samples if isinstance(posterior, PosteriorSamples) else posterior
    )
    if not latents:
        raise ValueError("to_inference_data needs the latents the model observes")
    first = check_tensor("latents[0]", latents[0], ndim=(2, 3))
    log_likelihood = draws_log_likelihood(
        model, dict(samples), *latents, per_step=per_step, jacobian=jacobian, **context
    )
    if first.dim() == 3:
        observation_dims = ["sequence", "time"] if per_step else ["sequence"]
        latent_dims = ["sequence", "time", "latent"]
    else:
        observation_dims = ["obs"]
        latent_dims = ["obs", "latent"]
    observed = _observed_values(model, samples, latents, context)
    dims = {var_name: observation_dims}
    dims.update({name: latent_dims[: value.ndim] for name, value in observed.items()})
    posterior_arrays = {name: _numpy(value) for name, value in samples.items()}
    idata = az.from_dict(
        posterior=posterior_arrays,
        log_likelihood={var_name: _numpy(log_likelihood)},
        observed_data=observed,
        dims=dims,
    )
    if "log_likelihood" not in idata.groups():
        raise ValueError(
            "the log_likelihood group is missing from the exported InferenceData; "
            "LOO and WAIC need it, so check that the model observes the latents"
        )
    idata.log_likelihood.attrs["per_step"] = int(per_step)
    idata.log_likelihood.attrs["jacobian"] = int(jacobian is not None)
    idata.log_likelihood.attrs["units"] = "nats"
    return idata


def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().to(torch.float64).numpy()


def _observed_values(model, samples, latents, context) -> dict[str, np.ndarray]:
    from pyro import poutine

    first_draw = {name: value[0, 0] for name, value in samples.items()}
    with torch.no_grad():
        trace = poutine.trace(poutine.condition(model, data=first_draw)).get_trace(
            *latents, **context
        )
    return {
        site["name"]: _numpy(site["value"])
        for site in observed_sites(trace)
        if site["name"] not in first_draw
    }


def check_log_likelihood(idata, name: str = "inference data") -> None:
    """Raise ``ValueError`` unless ``idata`` has a non-empty log-likelihood group."""
    if "log_likelihood" not in idata.groups() or not idata.log_likelihood.data_vars:
        raise ValueError(
            f"{name} has no log_likelihood group, so LOO and WAIC cannot be "
            "computed; export it with ldm_pyro.comparison.to_inference_data"
        )


def write_inference_data(idata, run_dir: str | Path) -> Path:
    """Write ``idata`` to ``RUN_DIR/inference_data.nc`` atomically.

    The file is written to a temporary name in the folder and then renamed, so a
    reader never sees a partial file.

    Raises:
        ValueError: if ``idata`` lacks the ``log_likelihood`` group.
    """
    check_log_likelihood(idata)
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / INFERENCE_DATA_FILE
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".nc.tmp")
    os.close(handle)
    try:
        idata.to_netcdf(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote %s", target)
    return target


def load_inference_data(run_dir: str | Path):
    """Read ``inference_data.nc`` from a run folder (or the file itself).

    Raises:
        FileNotFoundError: if the folder or the file does not exist.
        ValueError: if the file lacks the ``log_likelihood`` group.
    """
    az = import_arviz()
    path = Path(run_dir)
    if path.is_dir():
        path = path / INFERENCE_DATA_FILE
    elif not path.exists():
        raise FileNotFoundError(f"run folder {path} does not exist")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a run folder takes part in a comparison once "
            "ldm_pyro.comparison.write_inference_data has written the posterior "
            "and pointwise log-likelihood there"
        )
    idata = az.from_netcdf(path)
    check_log_likelihood(idata, str(path))
    return idata


def compare_models(models: Mapping[str, object], ic: str = "loo", **options):
    """Rank models by expected log predictive density with ``az.compare``.

    Args:
        models: ``InferenceData`` by model name (at least two).
        ic: ``"loo"`` (Pareto-smoothed importance sampling) or ``"waic"``.
        **options: further keyword arguments of ``arviz.compare``.

    Returns:
        The ``az.compare`` table on the log scale (higher ``elpd_loo`` is better;
        ``elpd_diff`` and ``dse`` are the difference to the best model and its
        standard error).

    Raises:
        ValueError: with fewer than two models, an unknown ``ic``, a missing
            log-likelihood, or models scored on different observations.
    """
    az = import_arviz()
    if ic not in INFORMATION_CRITERIA:
        raise ValueError(f"ic must be one of {INFORMATION_CRITERIA}, got {ic!r}")
    if len(models) < 2:
        raise ValueError(f"compare_models needs at least two models, got {len(models)}")
    shapes = {}
    for name, idata in models.items():
        check_log_likelihood(idata, f"model {name!r}")
        variables = list(idata.log_likelihood.data_vars)
        array = idata.log_likelihood[variables[0]]
        shapes[name] = tuple(
            size for dim, size in array.sizes.items() if dim not in ("chain", "draw")
        )
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"the models are scored on different observations (log-likelihood "
            f"shapes {shapes}); export all of them on the same held-out latents "
            "with the same per_step setting"
        )
    return az.compare(dict(models), ic=ic, scale="log", **options)


def plot_comparison(table, path: str | Path | None = None, *, title: str | None = None):
    """Plot an ``az.compare`` table with ``az.plot_compare`` and optionally save it.

    The figure is built without pyplot, so it works with any matplotlib backend.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    az = import_arviz()
    figure = Figure(figsize=(6.0, 1.2 + 0.6 * len(table)), layout="constrained")
    axis = figure.subplots()
    az.plot_compare(table, ax=axis, show=False)
    if title:
        axis.set_title(title)
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=120)
        logger.info("wrote %s", target)
    return figure


def compare_runs(run_dirs: Sequence[str | Path], ic: str = "loo"):
    """Load ``inference_data.nc`` from run folders and compare them.

    Models are named by folder name (the full path when two names collide).

    Returns:
        The ``az.compare`` table.
    """
    paths = [Path(run_dir) for run_dir in run_dirs]
    names = [path.name or str(path) for path in paths]
    if len(set(names)) != len(names):
        names = [str(path) for path in paths]
    models = {
        name: load_inference_data(path) for name, path in zip(names, paths, strict=True)
    }
    return compare_models(models, ic=ic)
