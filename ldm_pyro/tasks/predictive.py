"""Task runners for predictive, stop-gradient, simplex and identifiability methods.

Registered tasks (the ``task`` field of a spec):

* ``"sequence"``: a predictive sequence model (RNN predictor) on wobbly swirl
  videos; reports the held-out affine R^2 from latents to true positions.
* ``"toy"``: paired Gaussian latents seen through a random MLP; reports the
  affine R^2 for each latent dimension in ``task_params.latent_dims``.
* ``"paired-target"``: paired views with a predictor kernel and an optional EMA
  target encoder (BYOL, SimSiam), or softmax latents on the simplex.
* ``"categorical"``: a softmax encoder on pairs of different digit images of the
  same class; reports accuracy after matching categories to digits.

Task-specific settings live in the spec's open ``[task_params]`` table; each
runner lists its fields and defaults in ``*_DEFAULTS`` below.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ..builders import build_entropy, build_latent_model, build_objective, construct
from ..runs import (
    build_augmentation,
    build_encoder_checked,
    encode_pair,
    extract_features,
    load_paired_data,
    register_task,
)
from ..training import TrainConfig, fit

logger = logging.getLogger(__name__)

SEQUENCE_DEFAULTS: dict[str, Any] = {
    "sequences": 256,
    "test_sequences": 64,
    "length": 50,
    "published": False,
    "restoring": 1.0,
    "full": False,
    "gradient_cosine_every": 0,
    "predictor": {"cell": "lstm", "hidden_size": 10, "head": [20, 20]},
}
#: Paper-size settings of the wobbly experiment, applied by ``task_params.full``.
SEQUENCE_FULL = {
    "task_params": {"sequences": 10000, "test_sequences": 256, "length": 100},
    "training": {"epochs": 300, "batch_size": 128},
    "encoder": {"hidden": [200] * 10},
}
TOY_DEFAULTS: dict[str, Any] = {
    "latent_dims": [2],
    "samples": 4096,
    "test_samples": 2048,
    "noise_variance": 0.1,
    "code_factor": 1,
}
PAIRED_TARGET_DEFAULTS: dict[str, Any] = {
    "ema_rate": None,
    "final_ema_rate": None,
    "symmetric": True,
}
CATEGORICAL_DEFAULTS: dict[str, Any] = {
    "initial_probability": 0.8,
    "anneal_fraction": 0.5,
}


def task_settings(spec: Mapping[str, Any], defaults: Mapping[str, Any]):
    """Return ``defaults`` updated by ``spec["task_params"]``; check the names."""
    params = dict(spec["task_params"])
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown spec field(s) {unknown} in [task_params] of task "
            f"{spec['task']!r}; valid fields: {sorted(defaults)}"
        )
    settings = copy.deepcopy(dict(defaults))
    settings.update(params)
    return settings


def _write_history(out: Path, history) -> None:
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")


class SimplexEncoder(nn.Module):
    """Encoder whose latents are the softmax of another encoder's outputs."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the wrapped encoder's features."""
        return self.encoder.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the softmax of the wrapped encoder's output, rows on the simplex."""
        return functional.softmax(self.encoder(x), dim=-1)


def _as_default_dtype(dataset):
    """Return ``dataset`` with its inputs in the default torch dtype of the encoders."""
    dtype = torch.get_default_dtype()
    return dataset._replace(
        x_train=dataset.x_train.to(dtype), x_test=dataset.x_test.to(dtype)
    )


def _build_space_encoder(spec, params, sample_shape):
    space = spec["space"]
    encoder = build_encoder_checked(
        {"normalize": space == "sphere", **params}, sample_shape
    )
    return SimplexEncoder(encoder) if space == "simplex" else encoder


# --------------------------------------------------------------------------
# Sequences: the wobbly swirl system


def resolve_sequence_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return the spec with ``task_params.full`` applied (paper-size settings)."""
    resolved = copy.deepcopy(dict(spec))
    settings = task_settings(resolved, SEQUENCE_DEFAULTS)
    if settings["full"]:
        settings.update(SEQUENCE_FULL["task_params"])
        resolved["training"] = {**resolved["training"], **SEQUENCE_FULL["training"]}
        resolved["encoder"] = {**resolved["encoder"], **SEQUENCE_FULL["encoder"]}
    resolved["task_params"] = settings
    return resolved


def build_sequence_model(spec: Mapping[str, Any], dim: int):
    """Build the :class:`~ldm_pyro.latents.SequencePredictiveModel` of a spec."""
    from ..latents.predictors import (
        RNNPredictor,
        SequencePredictiveModel,
        make_kernel,
    )

    model = spec["model"]
    if model["program"] != "predictive-sequence":
        raise ValueError(
            f"task 'sequence' needs model.program = 'predictive-sequence', got "
            f"{model['program']!r}"
        )
    kernel_params = {"concentration": 5.0, "scale": 1.0, **model["kernel_params"]}
    kernel = construct(
        lambda concentration, scale: make_kernel(
            model["kernel"], concentration=concentration, scale=scale
        ),
        kernel_params,
        "model.kernel_params",
    )
    predictor = construct(
        lambda **options: RNNPredictor(dim, **options),
        spec["task_params"]["predictor"],
        "task_params.predictor",
    )
    return SequencePredictiveModel(predictor, kernel)


def sequence_batches(frames: torch.Tensor, batch_size: int):
    """Return ``batches(epoch, generator)`` of shuffled sequences ``(B, T, ...)``."""
    count = frames.shape[0]
    if count < batch_size:
        raise ValueError(
            f"training.batch_size={batch_size} exceeds the {count} training "
            f"sequences; set --set training.batch_size={count} or less"
        )

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            yield frames[order[start : start + batch_size]]

    return batches


def encode_sequences(encoder: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Encode each frame of ``(B, T, ...)`` sequences; returns ``(B, T, D)``."""
    batch, steps = frames.shape[:2]
    z = encoder(frames.reshape(batch * steps, *frames.shape[2:]))
    return z.reshape(batch, steps, -1)


@torch.no_grad()
def _sequence_latents(encoder, frames, batch_size: int = 64) -> np.ndarray:
    was_training = encoder.training
    encoder.eval()
    parts = [
        encode_sequences(encoder, frames[i : i + batch_size])
        for i in range(0, len(frames), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(parts).cpu().numpy()


@register_task("sequence")
def run_sequence(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train a predictive sequence model on wobbly videos and score the affine R^2."""
    from ..data.wobbly import clamped_fraction, make_wobbly
    from ..diagnostics import sequence_entropy_gradient_cosine
    from ..entropy import KNNEntropy
    from ..evaluation.identifiability import identifiability_report

    spec = resolve_sequence_spec(spec)
    settings = spec["task_params"]
    if spec["data"]["name"] != "wobbly":
        raise ValueError(
            f"task 'sequence' needs data.name = 'wobbly', got {spec['data']['name']!r}"
        )
    config = TrainConfig.from_spec(spec["training"], progress=progress)
    generator_options = {
        "published": settings["published"],
        "restoring": settings["restoring"],
    }
    train = make_wobbly(
        settings["sequences"], settings["length"], seed=config.seed, **generator_options
    )
    test = make_wobbly(
        settings["test_sequences"],
        settings["length"],
        seed=config.seed + 10_000,
        **generator_options,
    )
    pinned = clamped_fraction(train.positions.numpy())
    logger.info("wobbly data: %.1f%% of training frames pinned", 100 * pinned)

    sample_shape = tuple(train.frames.shape[2:])
    torch.manual_seed(config.seed)
    encoder = _build_space_encoder(spec, spec["encoder"], sample_shape)
    torch.manual_seed(config.seed + 1)
    random_encoder = _build_space_encoder(spec, spec["encoder"], sample_shape)
    dim = spec["encoder"]["latent_dim"]
    model = build_sequence_model(spec, dim)
    objective = build_objective(spec, model=model)

    cosines: list[dict[str, float]] = []
    every = settings["gradient_cosine_every"]
    probe_frames = train.frames[: min(config.batch_size, len(train.frames))]
    probe_estimator = KNNEntropy()

    def after_step(step: int) -> None:
        if every and step % every == 0:
            value = sequence_entropy_gradient_cosine(
                encoder, model, probe_estimator, probe_frames
            )
            cosines.append({"step": step, "cosine": value})
            logger.info("step %d: kNN vs plug-in gradient cosine %.3f", step, value)

    result = fit(
        encoder,
        objective,
        sequence_batches(train.frames, config.batch_size),
        lambda enc, batch: ((encode_sequences(enc, batch),), {}),
        config,
        out_dir=out,
        resume=resume,
        after_step=after_step,
    )
    report = identifiability_report(
        (
            _sequence_latents(encoder, train.frames),
            _sequence_latents(encoder, test.frames),
        ),
        (
            _sequence_latents(random_encoder, train.frames),
            _sequence_latents(random_encoder, test.frames),
        ),
        (train.positions.numpy(), test.positions.numpy()),
    )
    _write_history(out, result.history)
    summary = (
        f"affine R^2 (held out): trained {report['r2']:.4f}, random encoder "
        f"{report['r2_random']:.4f}; pinned frames {100 * pinned:.1f}%"
    )
    logger.info(summary)
    final = result.history[-1]
    return {
        "task": "sequence",
        "generator": "published" if settings["published"] else "restoring",
        "sequences": settings["sequences"],
        "length": settings["length"],
        "epochs": config.epochs,
        "pinned_fraction": pinned,
        **report,
        "gradient_cosine": cosines,
        "final": {key: final[key] for key in ("objective", "alignment", "entropy")},
        "summary_table": summary,
    }


# --------------------------------------------------------------------------
# Higher-dimensional toy


def _toy_spec(spec: Mapping[str, Any], dim: int) -> dict[str, Any]:
    resolved = copy.deepcopy(dict(spec))
    if resolved["model"]["kernel"] == "predictor":
        resolved["model"]["kernel_params"] = {
            **resolved["model"]["kernel_params"],
            "dim": dim,
        }
    resolved["encoder"] = {**resolved["encoder"], "latent_dim": dim}
    return resolved


def paired_tensor_batches(x: torch.Tensor, x_prime: torch.Tensor, batch_size: int):
    """Return ``batches(epoch, generator)`` yielding shuffled fixed pairs."""
    count = x.shape[0]
    if count < batch_size:
        raise ValueError(
            f"training.batch_size={batch_size} exceeds the {count} training pairs"
        )

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield x[index], x_prime[index]

    return batches


@register_task("toy")
def run_toy(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train on the toy pairs for each latent dimension and score the affine R^2."""
    from ..data.toy import make_toy_pairs
    from ..evaluation.identifiability import identifiability_report
    from ..runs import extract_latents

    settings = task_settings(spec, TOY_DEFAULTS)
    if resume and len(settings["latent_dims"]) > 1:
        raise ValueError("--resume supports one entry in task_params.latent_dims")
    config = TrainConfig.from_spec(spec["training"], progress=progress)
    rows = []
    for true_dim in settings["latent_dims"]:
        code_dim = int(true_dim * settings["code_factor"])
        dim_spec = _toy_spec(spec, code_dim)
        options = {
            "noise_variance": settings["noise_variance"],
            "mixer_seed": config.seed,
        }
        train = make_toy_pairs(
            settings["samples"], true_dim, seed=config.seed, **options
        )
        test = make_toy_pairs(
            settings["test_samples"], true_dim, seed=config.seed + 10_000, **options
        )
        shape = tuple(train.x.shape[1:])
        torch.manual_seed(config.seed)
        encoder = _build_space_encoder(dim_spec, dim_spec["encoder"], shape)
        torch.manual_seed(config.seed + 1)
        random_encoder = _build_space_encoder(dim_spec, dim_spec["encoder"], shape)
        objective = build_objective(dim_spec)
        run_dir = out if len(settings["latent_dims"]) == 1 else out / f"n{true_dim}"
        result = fit(
            encoder,
            objective,
            paired_tensor_batches(train.x, train.x_prime, config.batch_size),
            encode_pair,
            config,
            out_dir=run_dir,
            resume=resume,
        )
        report = identifiability_report(
            (extract_latents(encoder, train.x), extract_latents(encoder, test.x)),
            (
                extract_latents(random_encoder, train.x),
                extract_latents(random_encoder, test.x),
            ),
            (train.z.numpy(), test.z.numpy()),
        )
        rows.append({"latent_dim": true_dim, "code_dim": code_dim, **report})
        _write_history(run_dir, result.history)
        logger.info(
            "toy N=%d: R^2 %.4f (random %.4f)",
            true_dim,
            report["r2"],
            report["r2_random"],
        )
    lines = ["N  code  R^2 trained  R^2 random"]
    lines += [
        f"{row['latent_dim']:<2} {row['code_dim']:<5} {row['r2']:<12.4f} "
        f"{row['r2_random']:.4f}"
        for row in rows
    ]
    return {"task": "toy", "rows": rows, "summary_table": "\n".join(lines)}


# --------------------------------------------------------------------------
# Paired views with a predictor and an optional EMA target (BYOL, SimSiam)


def _paired_target_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    resolved = copy.deepcopy(dict(spec))
    model = resolved["model"]
    if model["kernel"] == "predictor" and "dim" not in model["kernel_params"]:
        model["kernel_params"]["dim"] = resolved["encoder"]["latent_dim"]
    return resolved


def make_target_encode(target: nn.Module | None, symmetric: bool):
    """Return ``encode(encoder, batch)`` for online/target views.

    The online encoder maps the first view; the target (the online encoder when
    ``target`` is ``None``) maps the second. ``symmetric`` also scores the
    swapped pair, which is BYOL's two-way loss, by stacking both directions.
    """

    def encode(encoder, batch):
        view, view_prime = batch
        if not symmetric:
            second = encoder if target is None else target
            return (encoder(view), second(view_prime)), {}
        online = encoder(torch.cat([view, view_prime]))
        if target is None:
            # The stop-gradient site detaches the targets, so the online outputs
            # of the swapped views serve as targets without a second pass.
            count = view.shape[0]
            return (online, torch.cat([online[count:], online[:count]])), {}
        return (online, target(torch.cat([view_prime, view]))), {}

    return encode


@register_task("paired-target")
def run_paired_target(
    spec, out: Path, *, resume: bool, progress: bool
) -> dict[str, Any]:
    """Train BYOL/SimSiam-style (or simplex) paired models and report probes."""
    from ..ema import EMATarget
    from ..evaluation import format_probe_table, probe_report
    from ..runs import paired_batches

    settings = task_settings(spec, PAIRED_TARGET_DEFAULTS)
    spec = _paired_target_spec(spec)
    dataset = _as_default_dtype(load_paired_data(spec))
    sample_shape = tuple(dataset.x_train.shape[1:])
    config = TrainConfig.from_spec(spec["training"], progress=progress)
    torch.manual_seed(config.seed)
    encoder = _build_space_encoder(spec, spec["encoder"], sample_shape)
    torch.manual_seed(config.seed + 1)
    random_encoder = _build_space_encoder(spec, spec["encoder"], sample_shape)
    objective = build_objective(spec)
    augment = build_augmentation(spec, sample_shape)
    batches = paired_batches(dataset.x_train, config.batch_size, augment)

    target = None
    after_step = None
    if settings["ema_rate"] is not None:
        # NOTE: checkpoints do not store the EMA target, so --resume restarts it
        # from the resumed online encoder.
        total_steps = config.epochs * (len(dataset.x_train) // config.batch_size)
        target = EMATarget(
            encoder,
            settings["ema_rate"],
            final_rate=settings["final_ema_rate"],
            total_steps=total_steps if settings["final_ema_rate"] is not None else None,
        )
        after_step = target.after_step
    result = fit(
        encoder,
        objective,
        batches,
        make_target_encode(target, settings["symmetric"]),
        config,
        out_dir=out,
        resume=resume,
        after_step=after_step,
    )
    rows = probe_report(
        lambda x: extract_features(encoder, x),
        dataset,
        lambda x: extract_features(random_encoder, x),
        seed=config.seed,
        knn_k=spec["evaluation"]["knn_k"],
    )
    table = format_probe_table(rows)
    logger.info("probe results:\n%s", table)
    _write_history(out, result.history)
    final = result.history[-1]
    return {
        "task": "paired-target",
        "data": dataset.name,
        "epochs": config.epochs,
        "ema_rate": settings["ema_rate"],
        "final": {key: final[key] for key in ("objective", "alignment", "entropy")},
        "probes": rows,
        "probe_table": table,
    }


# --------------------------------------------------------------------------
# Categorical codes on digit pairs


def same_class_pair_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """Return ``batches(epoch, generator)`` of pairs of different same-class samples.

    Every sample is an anchor once per epoch; its partner is drawn uniformly from
    the other samples of its class.

    Raises:
        ValueError: if a class has fewer than two samples.
    """
    labels = y.long()
    classes = torch.unique(labels)
    members = {int(c): torch.nonzero(labels == c).flatten() for c in classes}
    small = [c for c, index in members.items() if len(index) < 2]
    if small:
        raise ValueError(f"classes {small} have fewer than 2 samples; cannot pair")
    count = x.shape[0]
    if count < batch_size:
        raise ValueError(
            f"training.batch_size={batch_size} exceeds the {count} training samples"
        )
    position = torch.empty(count, dtype=torch.long)
    for index in members.values():
        position[index] = torch.arange(len(index))

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            anchors = order[start : start + batch_size]
            partners = torch.empty_like(anchors)
            for slot, anchor in enumerate(anchors.tolist()):
                index = members[int(labels[anchor])]
                draw = int(torch.randint(len(index) - 1, (1,), generator=generator))
                # Skip the anchor itself: shift draws at or after its position.
                draw += int(draw >= position[anchor])
                partners[slot] = index[draw]
            yield x[anchors], x[partners]

    return batches


@register_task("categorical")
def run_categorical(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train a softmax encoder on same-digit pairs; report matched accuracy."""
    from ..evaluation.identifiability import matched_category_accuracy
    from ..latents.simplex import CategoricalMatchKernel

    settings = task_settings(spec, CATEGORICAL_DEFAULTS)
    dataset = _as_default_dtype(load_paired_data(spec))
    if dataset.y_train is None:
        raise ValueError("task 'categorical' needs labelled data to form pairs")
    sample_shape = tuple(dataset.x_train.shape[1:])
    config = TrainConfig.from_spec(spec["training"], progress=progress)
    spec = copy.deepcopy(dict(spec))
    spec["space"] = "simplex"
    torch.manual_seed(config.seed)
    encoder = _build_space_encoder(spec, spec["encoder"], sample_shape)
    model = build_latent_model(spec)
    kernel = model.kernel
    if not isinstance(kernel, CategoricalMatchKernel):
        raise ValueError(
            "task 'categorical' needs model.kernel = 'categorical-match', got "
            f"{spec['model']['kernel']!r}"
        )
    final_probability = float(
        spec["model"]["kernel_params"].get("equal_probability", 0.99)
    )
    objective = build_objective(spec, model=model, entropy=build_entropy(spec))
    steps_per_epoch = len(dataset.x_train) // config.batch_size
    anneal_steps = max(
        1, int(settings["anneal_fraction"] * config.epochs * steps_per_epoch)
    )
    start = settings["initial_probability"]

    def anneal(step: int) -> None:
        fraction = min((step + 1) / anneal_steps, 1.0)
        kernel.set_probability(start + (final_probability - start) * fraction)

    if settings["anneal_fraction"] > 0:
        kernel.set_probability(start)
    result = fit(
        encoder,
        objective,
        same_class_pair_batches(dataset.x_train, dataset.y_train, config.batch_size),
        encode_pair,
        config,
        out_dir=out,
        resume=resume,
        after_step=anneal if settings["anneal_fraction"] > 0 else None,
    )
    with torch.no_grad():
        encoder.eval()
        probabilities = encoder(dataset.x_test)
    categories = probabilities.argmax(-1).numpy()
    accuracy = matched_category_accuracy(categories, dataset.y_test.numpy())
    code_entropy = float(
        -(probabilities * probabilities.clamp_min(1e-30).log()).sum(-1).mean()
    )
    used = int(np.unique(categories).size)
    _write_history(out, result.history)
    summary = (
        f"matched accuracy {100 * accuracy:.2f}% with {used} categories used; "
        f"mean code entropy {code_entropy:.3f} nats "
        f"(max {math.log(probabilities.shape[-1]):.3f})"
    )
    logger.info(summary)
    final = result.history[-1]
    return {
        "task": "categorical",
        "form": spec["form"],
        "epochs": config.epochs,
        "matched_accuracy": accuracy,
        "categories_used": used,
        "mean_code_entropy": code_entropy,
        "final": {key: final[key] for key in ("objective", "alignment", "entropy")},
        "summary_table": summary,
    }
