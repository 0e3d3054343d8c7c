"""Matplotlib figures of training curves, embeddings and latent eigenspectra.

Every function builds a ``matplotlib.figure.Figure`` directly, without pyplot, so
that importing or calling it selects no backend and opens no window. Each returns
the figure and, when ``path`` is given, also writes it as a PNG (creating the
parent directories).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger(__name__)

#: Terms of a training-history entry drawn by :func:`plot_loss_terms`.
LOSS_TERMS = ("objective", "alignment", "entropy", "loss")


def _to_numpy(name: str, value, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(array)).sum())} non-finite values "
            "(NaN or Inf); drop them before plotting"
        )
    return array


def _save(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=120)
        logger.info("wrote figure %s", path)
    return figure


def plot_loss_terms(
    history: Sequence[Mapping[str, float]], path: str | Path | None = None
) -> Figure:
    """Plot the objective, its alignment and entropy terms, and the loss per step.

    The left panel shows ``objective``, ``alignment`` and ``entropy`` (in nats per
    sample), the right panel the training ``loss``. Terms missing from the history
    are left out.

    Args:
        history: one mapping per logged step with the key ``step`` and some of
            ``objective``, ``alignment``, ``entropy`` and ``loss`` (other keys,
            such as ``epoch``, are ignored).
        path: PNG file to write, or ``None``.

    Returns:
        The figure.
    """
    if isinstance(history, Mapping) or len(history) == 0:
        raise ValueError(
            "history must be a non-empty list of dicts with keys 'step' and "
            f"{list(LOSS_TERMS)}, got {type(history).__name__} of length "
            f"{len(history)}"
        )
    for index, entry in enumerate(history):
        if "step" not in entry:
            raise ValueError(
                f"history[{index}] has no 'step' key; its keys are {sorted(entry)}"
            )
    present = [term for term in LOSS_TERMS if any(term in e for e in history)]
    if not present:
        raise ValueError(
            f"history contains none of the terms {list(LOSS_TERMS)}; its first entry "
            f"has keys {sorted(history[0])}"
        )

    figure = Figure(figsize=(10, 4), layout="constrained")
    terms_axes, loss_axes = figure.subplots(1, 2)
    for term in present:
        points = [(e["step"], float(e[term])) for e in history if term in e]
        steps, values = zip(*points, strict=True)
        axes = loss_axes if term == "loss" else terms_axes
        axes.plot(steps, values, label=term)
    terms_axes.set_title("objective and its terms")
    terms_axes.set_xlabel("step")
    terms_axes.set_ylabel("nats per sample")
    if any(term != "loss" for term in present):
        terms_axes.legend()
    loss_axes.set_title("training loss")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss")
    return _save(figure, path)


def plot_embedding(features, labels=None, path: str | Path | None = None) -> Figure:
    """Scatter the first two principal components of features, coloured by label.

    The projection is ``sklearn.decomposition.PCA(n_components=2)`` fitted on
    ``features`` themselves (typically the test latents).

    Args:
        features: tensor or array of shape ``(N, D)`` with ``N >= 2``, ``D >= 2``.
        labels: integer labels of shape ``(N,)``, or ``None`` for one colour.
        path: PNG file to write, or ``None``.

    Returns:
        The figure.
    """
    from sklearn.decomposition import PCA

    points = _to_numpy("features", features, 2)
    if points.shape[0] < 2 or points.shape[1] < 2:
        raise ValueError(
            f"features must have shape (N, D) with N >= 2 and D >= 2 for a 2-D PCA, "
            f"got shape {points.shape}"
        )
    projected = PCA(n_components=2, svd_solver="full").fit_transform(points)

    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.subplots()
    if labels is None:
        axes.scatter(projected[:, 0], projected[:, 1], s=6)
    else:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.shape != (points.shape[0],):
            raise ValueError(
                f"labels must have shape ({points.shape[0]},) to match features, got "
                f"shape {labels.shape}"
            )
        classes = np.unique(labels)
        colours = colormaps["tab10" if len(classes) <= 10 else "viridis"]
        for index, label in enumerate(classes):
            chosen = labels == label
            colour = colours(index if len(classes) <= 10 else index / len(classes))
            axes.scatter(
                projected[chosen, 0],
                projected[chosen, 1],
                s=6,
                color=colour,
                label=str(label),
            )
        if len(classes) <= 20:
            axes.legend(markerscale=2, fontsize="small", title="label")
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_title("PCA of the features")
    return _save(figure, path)


def plot_eigenspectrum(latents, path: str | Path | None = None) -> Figure:
    """Plot the covariance eigenvalues of latents in decreasing order, log scale.

    The covariance is the unbiased sample covariance ``numpy.cov(latents,
    rowvar=False)``. Eigenvalues at or below ``1e-12`` times the largest one
    (zero up to rounding, for example after a dimensional collapse) are drawn at
    that floor, so that the log scale can show them.

    Args:
        latents: tensor or array of shape ``(N, D)`` with ``N >= 2``.
        path: PNG file to write, or ``None``.

    Returns:
        The figure.
    """
    points = _to_numpy("latents", latents, 2)
    if points.shape[0] < 2:
        raise ValueError(
            f"latents must have shape (N, D) with N >= 2 to estimate a covariance, "
            f"got shape {points.shape}"
        )
    covariance = np.atleast_2d(np.cov(points, rowvar=False))
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    floor = max(eigenvalues[0], np.finfo(np.float64).tiny) * 1e-12
    plotted = np.maximum(eigenvalues, floor)

    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(np.arange(1, len(plotted) + 1), plotted, marker="o", markersize=3)
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("rank")
    axes.set_ylabel("covariance eigenvalue")
    axes.set_title("latent eigenspectrum")
    return _save(figure, path)
