r"""Kalman-filter SSL on dot-motion videos from a spec: ``ldm-pyro fit kalman-figure8``.

Registered task ``"kalman"``. An MLP frame encoder maps each frame
:math:`x_t` to :math:`z_t = f(x_t)`, and a
:class:`~ldm_pyro.latents.KalmanDynamics` latent model scores the sequences
:math:`z_{1:T}`:

- stop-gradient form (``entropy.estimator = "plugin"``): the model scores
  :math:`\sum_t \log N(SG[z_t];\ D h_{t|t-1}, \Sigma_{e,t})` and the entropy term
  is zero;
- kNN/MI form (any other estimator): the model scores the undetached
  :math:`z_t`, and the ``"single"`` form adds ``T`` times the single-step entropy.

With ``task_params.noise_network`` set, a :class:`~ldm_pyro.latents.NoiseDetector`
or :class:`~ldm_pyro.latents.NoiseMLP` maps each frame to the per-step
observation variances ``g_t`` (``KalmanDynamics(noise="input")``). It is trained
with the encoder's learning rate.

Evaluation on held-out sequences, written to ``metrics.json``:

- ``probe_r2``: linear probe from the filtered states :math:`h_{t|t}` to the true
  positions (the sinusoidal surrogate for the square), fitted on
  ``task_params.probe_sequences`` training sequences;
- ``coverage``: fraction of target coordinates inside the 50/90/95 % bands
  :math:`N(W h_{t|t} + c, W P_{t|t} W^T)` of the filter posterior, and
  ``coverage_with_residual`` with the probe's training residual variance added;
- ``noise_correlation`` (``noise_network`` only): Pearson correlation over test
  frames between the learned :math:`\operatorname{tr}(\Sigma_{D,t}) / L` and the
  true pixel-noise variance :math:`v_t`;
- ``probe_r2_random``: the probe R^2 of an untrained encoder and filter.

Plots: ``trajectory.png`` (true and decoded targets of one test sequence with the
90 % band), ``loss_terms.png`` and, with a noise network, ``noise.png``.

With ``data.name = "aeon-basicmotions"`` or ``"aeon-japanesevowels"`` the task
trains on the standardized sensor series of
:func:`~ldm_pyro.data.sensors.load_sensor_series` (needs
``pip install ldm_pyro[timeseries]``): the encoder maps each channel vector
:math:`x_t \in \mathbb{R}^C` to :math:`z_t`, all training series are used, and
the dot-motion fields of ``[task_params]`` (``sequences``, ``test_sequences``,
``probe_sequences``, ``length``, ``published``, ``data``) are rejected. The
metrics are class-label probes. Each is a logistic regression
(:func:`~ldm_pyro.evaluation.linear_probe_accuracy`) fitted on the training
split and scored on the test split:

- ``probe_accuracy``: on the time-averaged filtered states
  :math:`\frac{1}{T}\sum_t h_{t|t}`;
- ``probe_accuracy_raw``: on the time-averaged series;
- ``probe_accuracy_random``: on the time-averaged filtered states of an
  untrained encoder and filter.

Plot: ``loss_terms.png``.

References:
    F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
    Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Fig. 4, A3, A4.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from torch import nn

from ..builders import build_entropy, build_objective, construct
from ..runs import build_encoder_checked, register_task
from ..training import TrainConfig, fit
from .predictive import sequence_batches, task_settings

logger = logging.getLogger(__name__)

#: Fields of ``[task_params]`` and their defaults.
KALMAN_DEFAULTS: dict[str, Any] = {
    "sequences": 800,
    "test_sequences": 32,
    "probe_sequences": 64,
    "length": 100,
    "published": False,
    # Options of make_dot_motion other than the task, sizes and seed.
    "data": {},
    # Options of KalmanDynamics other than latent_dim and detach_targets.
    "dynamics": {"state_dim": 10},
    # None, "detector" (NoiseDetector) or "mlp" (NoiseMLP).
    "noise_network": None,
    "noise_hidden": None,
    # torch intra-op threads during the run; 0 keeps the process setting.
    "threads": 0,
}
DATA_NAMES = {
    "dots-figure8": "figure8",
    "dots-square": "square",
    "dots-circle": "circle",
}
#: Sensor data names and the aeon dataset each loads.
SENSOR_DATA_NAMES = {
    "aeon-basicmotions": "BasicMotions",
    "aeon-japanesevowels": "JapaneseVowels",
}
#: Fields of ``[task_params]`` that only dot-motion data use.
DOT_ONLY_FIELDS = (
    "sequences",
    "test_sequences",
    "probe_sequences",
    "length",
    "published",
    "data",
)
NOISE_NETWORKS = ("detector", "mlp")
#: Arguments of make_dot_motion that the task sets from other spec fields.
FIXED_DATA_OPTIONS = (
    "task",
    "num_sequences",
    "num_steps",
    "seed",
    "published",
    "dtype",
)


class FrameEncoder(nn.Module):
    """Frame encoder with an optional observation-noise network.

    Args:
        encoder: maps frames ``(N, P)`` to latents ``(N, L)``.
        noise: maps frames ``(N, P)`` to variances ``(N, L)``, or ``None``.

    Shapes:
        ``frames``: ``(B, T, P)``; returns ``z`` of shape ``(B, T, L)`` and the
        variances ``(B, T, L)`` or ``None``.
    """

    def __init__(self, encoder: nn.Module, noise: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.noise = noise

    def forward(self, frames: torch.Tensor):
        """Return the latents and the per-step variances (``None`` without noise)."""
        batch, steps = frames.shape[:2]
        flat = frames.reshape(batch * steps, *frames.shape[2:])
        z = self.encoder(flat).reshape(batch, steps, -1)
        if self.noise is None:
            return z, None
        return z, self.noise(flat).reshape(batch, steps, -1)


def encode_frames(encoder: nn.Module, frames: torch.Tensor):
    """Encode ``(B, T, P)`` frames for the objective: ``((z,), {noise_var})``."""
    z, noise_var = encoder(frames)
    return (z,), ({} if noise_var is None else {"noise_var": noise_var})


def load_dot_motion(spec, settings):
    """Generate the train and test videos named by ``spec["data"]["name"]``."""
    from ..data import make_dot_motion_splits
    from ..data.dots import make_dot_motion

    name = spec["data"]["name"]
    if name not in DATA_NAMES:
        raise ValueError(
            f"unknown data.name {name!r} for task 'kalman'; valid choices: "
            f"{', '.join(sorted([*DATA_NAMES, *SENSOR_DATA_NAMES]))}"
        )
    options = dict(settings["data"])
    for key in FIXED_DATA_OPTIONS:
        if key in options:
            raise ValueError(
                f"[task_params.data] must not set {key!r}; it comes from "
                "data.name, task_params.sequences/length/published, "
                "training.seed and the default dtype"
            )

    def make(**kwargs):
        return make_dot_motion_splits(
            DATA_NAMES[name],
            settings["sequences"],
            settings["test_sequences"],
            settings["length"],
            seed=spec["training"]["seed"],
            published=bool(settings["published"]),
            **kwargs,
        )

    # construct() checks the option names against this signature.
    make.__signature__ = _signature_of_options(make_dot_motion)
    return construct(make, options, "task_params.data")


def _signature_of_options(function):
    """Return the signature of ``function`` without the arguments set by the task."""
    signature = inspect.signature(function)
    kept = [
        parameter
        for name, parameter in signature.parameters.items()
        if name not in FIXED_DATA_OPTIONS
    ]
    return signature.replace(parameters=kept)


def build_frame_encoder(spec, settings, num_pixels: int) -> FrameEncoder:
    """Build the MLP frame encoder and, if requested, its noise network."""
    from ..latents import NoiseDetector, NoiseMLP

    latent_dim = spec["encoder"].get("latent_dim")
    encoder = build_encoder_checked(spec["encoder"], (num_pixels,))
    choice = settings["noise_network"]
    if choice is None:
        return FrameEncoder(encoder)
    if choice not in NOISE_NETWORKS:
        raise ValueError(
            f"task_params.noise_network must be one of {NOISE_NETWORKS} or left "
            f"out, got {choice!r}"
        )
    network = NoiseDetector if choice == "detector" else NoiseMLP
    # NOTE: the noise network trains in the encoder's parameter group, at the
    # encoder's learning rate; the published code uses 0.03 times that rate.
    options = (
        {} if settings["noise_hidden"] is None else {"hidden": settings["noise_hidden"]}
    )
    return FrameEncoder(encoder, network(num_pixels, latent_dim, **options))


def build_dynamics(spec, settings, detach_targets: bool):
    """Build the :class:`~ldm_pyro.latents.KalmanDynamics` of a spec."""
    from ..latents import KalmanDynamics

    options = dict(settings["dynamics"])
    for key in ("latent_dim", "detach_targets"):
        if key in options:
            raise ValueError(
                f"[task_params.dynamics] must not set {key!r}; latent_dim is "
                "encoder.latent_dim and detach_targets follows entropy.estimator "
                "('plugin' detaches the targets)"
            )
    noise = options.get("noise", "fixed")
    has_network = settings["noise_network"] is not None
    if has_network and noise != "input":
        options["noise"] = "input"
        if "noise" in settings["dynamics"]:
            raise ValueError(
                f"task_params.noise_network={settings['noise_network']!r} needs "
                f"task_params.dynamics.noise = 'input', got {noise!r}"
            )
    if noise == "input" and not has_network:
        raise ValueError(
            "task_params.dynamics.noise = 'input' needs a noise network; set "
            "task_params.noise_network = 'detector' or 'mlp'"
        )
    latent_dim = spec["encoder"]["latent_dim"]
    return construct(
        lambda **kwargs: KalmanDynamics(
            latent_dim, detach_targets=detach_targets, **kwargs
        ),
        options,
        "task_params.dynamics",
    )


@torch.no_grad()
def _filter_sequences(encoder, dynamics, frames, batch_size: int = 64):
    """Return the filtered means, covariances and ``Sigma_D`` traces of frames."""
    was_training = encoder.training
    encoder.eval()
    means, covs, noise = [], [], []
    for start in range(0, len(frames), batch_size):
        z, noise_var = encoder(frames[start : start + batch_size])
        result = dynamics.filter(z, noise_var)
        means.append(result.filtered_mean)
        covs.append(result.filtered_cov)
        if noise_var is not None:
            scale = dynamics.log_scale.exp()
            noise.append(scale * (noise_var + 1e-5).mean(-1))
    encoder.train(was_training)
    # The probe's least-squares fit on nearly collinear states is ill-conditioned
    # in float32, so the evaluation continues in float64.
    return (
        torch.cat(means).double(),
        torch.cat(covs).double(),
        torch.cat(noise).double() if noise else None,
    )


def _evaluate(encoder, dynamics, splits, probe_count: int) -> dict[str, Any]:
    from ..evaluation import (
        empirical_coverage,
        fit_linear_probe,
        linear_readout_bands,
    )

    probe_frames = splits.train.frames[:probe_count]
    probe_targets = splits.train.targets[:probe_count].double()
    test_targets = splits.test.targets.double()
    train_mean, _, _ = _filter_sequences(encoder, dynamics, probe_frames)
    test_mean, test_cov, test_noise = _filter_sequences(
        encoder, dynamics, splits.test.frames
    )
    probe = fit_linear_probe(train_mean, probe_targets, test_mean, test_targets)
    bands = linear_readout_bands(test_mean, test_cov, probe.weight, probe.bias)
    bands_residual = linear_readout_bands(
        test_mean,
        test_cov,
        probe.weight,
        probe.bias,
        extra_var=probe.residual_var,
    )
    return {
        "probe": probe,
        "bands": bands,
        "noise": test_noise,
        "coverage": empirical_coverage(bands, test_targets),
        "coverage_with_residual": empirical_coverage(bands_residual, test_targets),
    }


def _levels_table(coverage: dict[float, float]) -> dict[str, float]:
    return {f"{round(100 * level)}": value for level, value in coverage.items()}


def plot_trajectory(targets, bands, path: Path, sequence: int = 0) -> None:
    """Plot true and decoded targets of one sequence with the middle-level band."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, targets.shape[-1], squeeze=False)[0]
    level = bands.levels[len(bands.levels) // 2]
    index = bands.levels.index(level)
    steps = np.arange(targets.shape[1])
    for coordinate, ax in enumerate(axes):
        ax.plot(steps, targets[sequence, :, coordinate].numpy(), "k", label="true")
        ax.plot(steps, bands.mean[sequence, :, coordinate].numpy(), label="decoded")
        ax.fill_between(
            steps,
            bands.lower[index, sequence, :, coordinate].numpy(),
            bands.upper[index, sequence, :, coordinate].numpy(),
            alpha=0.3,
            label=f"{round(100 * level)}% band",
        )
        ax.set_xlabel("step t")
        ax.set_title(f"target coordinate {coordinate}")
    axes[0].legend()
    figure.savefig(path, dpi=100)


def plot_noise(true_var, learned_var, correlation: float, path: Path) -> None:
    """Scatter the learned observation variance against the true pixel noise."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), layout="constrained")
    ax = figure.subplots()
    ax.scatter(true_var.flatten(), learned_var.flatten(), s=4, alpha=0.4)
    ax.set_xlabel("true pixel-noise variance v_t")
    ax.set_ylabel("learned tr(Sigma_D,t) / L")
    ax.set_title(f"Pearson r = {correlation:.3f}")
    figure.savefig(path, dpi=100)


@register_task("kalman")
def run_kalman(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train a Kalman-filter SSL model on dot videos or sensor series; score probes."""
    from ..entropy import PlugInEntropy

    settings = task_settings(spec, KALMAN_DEFAULTS)
    if spec["model"]["program"] != "kalman":
        raise ValueError(
            f"task 'kalman' needs model.program = 'kalman', got "
            f"{spec['model']['program']!r}"
        )
    if spec["form"] != "single":
        raise ValueError(
            f"task 'kalman' scores one sequence of latents; set form = 'single', "
            f"got {spec['form']!r}"
        )
    threads = settings["threads"]
    if int(threads) != threads or threads < 0:
        raise ValueError(
            f"task_params.threads must be an integer >= 0 (0 keeps the process "
            f"setting), got {threads!r}"
        )
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(spec, settings, out, resume, progress, PlugInEntropy)
    finally:
        torch.set_num_threads(previous_threads)


def _run(spec, settings, out, resume, progress, plugin_cls) -> dict[str, Any]:
    from ..plotting import plot_loss_terms

    config = TrainConfig.from_spec(spec["training"], progress=progress)
    # KalmanDynamics is a PyroModule: calling it registers its parameters in
    # Pyro's global param store, which the optimizer also collects. Parameters
    # of an earlier run in this process would otherwise join this run.
    pyro.clear_param_store()
    if spec["data"]["name"] in SENSOR_DATA_NAMES:
        return _run_sensors(spec, settings, out, resume, config, plugin_cls)
    splits = load_dot_motion(spec, settings)
    count = settings["probe_sequences"]
    if int(count) != count or not 1 <= count <= settings["sequences"]:
        raise ValueError(
            f"task_params.probe_sequences must be an integer in [1, "
            f"task_params.sequences = {settings['sequences']}], got {count!r}"
        )
    num_pixels = splits.train.frames.shape[-1]
    entropy = build_entropy(spec)
    detach = isinstance(entropy, plugin_cls)

    torch.manual_seed(config.seed)
    encoder = build_frame_encoder(spec, settings, num_pixels)
    dynamics = build_dynamics(spec, settings, detach)
    torch.manual_seed(config.seed + 1)
    random_encoder = build_frame_encoder(spec, settings, num_pixels)
    random_dynamics = build_dynamics(spec, settings, detach)
    objective = build_objective(spec, model=dynamics, entropy=entropy)

    result = fit(
        encoder,
        objective,
        sequence_batches(splits.train.frames, config.batch_size),
        encode_frames,
        config,
        out_dir=out,
        resume=resume,
    )
    report = _evaluate(encoder, dynamics, splits, int(count))
    baseline = _evaluate(random_encoder, random_dynamics, splits, int(count))
    probe = report["probe"]
    metrics: dict[str, Any] = {
        "task": "kalman",
        "data": spec["data"]["name"],
        "published": bool(settings["published"]),
        "form": "stop-gradient" if detach else "knn",
        "sequences": settings["sequences"],
        "length": settings["length"],
        "epochs": config.epochs,
        "steps": result.history[-1]["step"],
        "probe_r2": probe.r2,
        "probe_r2_per_output": probe.r2_per_output.tolist(),
        "probe_r2_random": baseline["probe"].r2,
        "coverage": _levels_table(report["coverage"]),
        "coverage_with_residual": _levels_table(report["coverage_with_residual"]),
        "spectral_radius": float(
            torch.linalg.eigvals(dynamics.A.detach()).abs().amax()
        ),
    }
    plot_trajectory(splits.test.targets, report["bands"], out / "trajectory.png")
    if report["noise"] is not None:
        true_var = splits.test.noise_var.numpy()
        learned = report["noise"].numpy()
        correlation = float(np.corrcoef(true_var.ravel(), learned.ravel())[0, 1])
        metrics["noise_correlation"] = correlation
        plot_noise(true_var, learned, correlation, out / "noise.png")
    plot_loss_terms(result.history, out / "loss_terms.png")
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    final = result.history[-1]
    metrics["final"] = {
        key: final[key] for key in ("objective", "alignment", "entropy")
    }
    coverage = metrics["coverage"]
    summary = (
        f"probe R^2 {probe.r2:.4f} (random {baseline['probe'].r2:.4f}); coverage "
        + "/".join(f"{100 * value:.1f}" for value in coverage.values())
        + f" % at {'/'.join(coverage)} %"
    )
    if "noise_correlation" in metrics:
        summary += f"; noise correlation {metrics['noise_correlation']:.3f}"
    metrics["summary_table"] = summary
    logger.info(summary)
    return metrics


def _time_averaged_states(encoder, dynamics, series: torch.Tensor) -> torch.Tensor:
    """Return the filtered means ``h_{t|t}`` averaged over steps, ``(B, S)``."""
    mean, _, _ = _filter_sequences(encoder, dynamics, series)
    return mean.mean(dim=1)


def _run_sensors(spec, settings, out, resume, config, plugin_cls) -> dict[str, Any]:
    """Train on aeon sensor series and score class-label probes."""
    from ..data.sensors import load_sensor_series
    from ..evaluation import linear_probe_accuracy
    from ..plotting import plot_loss_terms

    name = spec["data"]["name"]
    dot_fields = sorted(set(spec["task_params"]) & set(DOT_ONLY_FIELDS))
    if dot_fields:
        raise ValueError(
            f"[task_params] field(s) {dot_fields} apply only to dot-motion data, "
            f"not to data.name {name!r}; remove them"
        )
    data = load_sensor_series(SENSOR_DATA_NAMES[name])
    num_channels = data.train.shape[-1]
    entropy = build_entropy(spec)
    detach = isinstance(entropy, plugin_cls)

    torch.manual_seed(config.seed)
    encoder = build_frame_encoder(spec, settings, num_channels)
    dynamics = build_dynamics(spec, settings, detach)
    torch.manual_seed(config.seed + 1)
    random_encoder = build_frame_encoder(spec, settings, num_channels)
    random_dynamics = build_dynamics(spec, settings, detach)
    objective = build_objective(spec, model=dynamics, entropy=entropy)

    result = fit(
        encoder,
        objective,
        sequence_batches(data.train, config.batch_size),
        encode_frames,
        config,
        out_dir=out,
        resume=resume,
    )

    def accuracy(train_features, test_features) -> float:
        return linear_probe_accuracy(
            train_features,
            data.train_labels,
            test_features,
            data.test_labels,
            seed=config.seed,
        )

    trained = accuracy(
        _time_averaged_states(encoder, dynamics, data.train),
        _time_averaged_states(encoder, dynamics, data.test),
    )
    raw = accuracy(data.train.mean(dim=1), data.test.mean(dim=1))
    random = accuracy(
        _time_averaged_states(random_encoder, random_dynamics, data.train),
        _time_averaged_states(random_encoder, random_dynamics, data.test),
    )
    final = result.history[-1]
    summary = (
        f"test accuracy of the class probe on time-averaged h_t|t {trained:.3f} "
        f"(raw series {raw:.3f}, untrained encoder {random:.3f})"
    )
    metrics: dict[str, Any] = {
        "task": "kalman",
        "data": name,
        "form": "stop-gradient" if detach else "knn",
        "train_series": int(data.train.shape[0]),
        "test_series": int(data.test.shape[0]),
        "length": int(data.train.shape[1]),
        "channels": int(num_channels),
        "classes": list(data.classes),
        "epochs": config.epochs,
        "steps": final["step"],
        "probe_accuracy": trained,
        "probe_accuracy_raw": raw,
        "probe_accuracy_random": random,
        "spectral_radius": float(
            torch.linalg.eigvals(dynamics.A.detach()).abs().amax()
        ),
        "final": {key: final[key] for key in ("objective", "alignment", "entropy")},
        "summary_table": summary,
    }
    plot_loss_terms(result.history, out / "loss_terms.png")
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    logger.info(summary)
    return metrics
