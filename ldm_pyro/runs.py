"""End-to-end runs from a spec: data, encoder, objective, training, evaluation.

A run writes one folder: the resolved spec (``spec.toml``), ``checkpoint.pt``,
``metrics.json``, ``train.log`` and plots.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyro
import torch

from .builders import build_objective, construct
from .distributed import is_main_process, resolve_device
from .specs import dump_spec
from .training import TrainConfig, fit

logger = logging.getLogger(__name__)

TASKS: dict[str, Any] = {}
# Tasks whose evaluation moves data to the encoder's device (others are CPU-only).
DEVICE_TASKS = ("paired",)


def register_task(name: str):
    """Register a function ``run(spec, out_dir, resume, progress)`` for a task."""

    def decorator(function):
        TASKS[name] = function
        return function

    return decorator


def run_spec(
    spec: Mapping[str, Any],
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the task of a resolved spec and write its run folder.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from . import tasks  # noqa: F401  (registers the task runners)

    # Parameters left in Pyro's global store by an earlier run in this process
    # would otherwise join this run's optimizer.
    pyro.clear_param_store()
    task = spec["task"]
    if task not in TASKS:
        raise ValueError(
            f"unknown task {task!r}; valid choices: {', '.join(sorted(TASKS))}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume and not (out / "checkpoint.pt").is_file():
        raise FileNotFoundError(
            f"--resume given but {out / 'checkpoint.pt'} does not exist; run without "
            "--resume to start a new run"
        )
    device = resolve_device(spec["training"]["device"])
    if device.type != "cpu" and task not in DEVICE_TASKS:
        raise ValueError(
            f"task {task!r} evaluates on the CPU only, got training.device="
            f"{spec['training']['device']!r} ({device}); set --device cpu"
        )
    if not is_main_process():
        return _run_secondary_process(spec, out, resume=resume, progress=progress)
    if not resume:
        (out / "spec.toml").write_text(dump_spec(spec))
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    )
    package_logger = logging.getLogger("ldm_pyro")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        start = time.perf_counter()
        metrics = TASKS[task](spec, out, resume=resume, progress=progress)
        metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
        metrics["spec"] = spec["name"]
        if resume:
            # A resumed run records its spec (new epochs, say) only once it succeeded.
            (out / "spec.toml").write_text(dump_spec(spec))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        logger.info(
            "run finished in %.1f s; metrics in %s", metrics["wall_time_s"], out
        )
        return metrics
    except Exception as error:
        # train.log keeps the error; the caller reports it to the user.
        logger.debug("run failed: %s; the last good checkpoint is kept", error)
        raise
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def _run_secondary_process(
    spec: Mapping[str, Any], out: Path, *, resume: bool, progress: bool
) -> dict[str, Any]:
    """Run the task on a process of rank > 0, which writes nothing to ``out``.

    The task writes into a temporary folder that is deleted afterwards. On
    resume it receives a copy of rank 0's checkpoint, so every process starts
    from the same state.
    """
    with tempfile.TemporaryDirectory(prefix="ldm-pyro-rank-") as scratch:
        scratch_dir = Path(scratch)
        if resume:
            shutil.copy2(out / "checkpoint.pt", scratch_dir / "checkpoint.pt")
        return TASKS[spec["task"]](spec, scratch_dir, resume=resume, progress=False)


def load_paired_data(spec: Mapping[str, Any]):
    """Load the dataset named by ``spec["data"]``."""
    from .data import load_digits_split, load_npz

    data = spec["data"]
    seed = spec["training"]["seed"]
    if data["name"] == "digits":
        return load_digits_split(test_size=data["test_size"], seed=seed)
    if data["name"] == "npz":
        if not data["path"]:
            raise ValueError("data.name='npz' needs data.path; pass --data PATH.npz")
        return load_npz(
            data["path"],
            x_key=data["x_key"],
            y_key=data["y_key"] or None,
            test_size=data["test_size"],
            seed=seed,
        )
    raise ValueError(
        f"unknown data.name {data['name']!r} for a paired-view task; valid choices: "
        "digits, npz"
    )


def build_augmentation(spec: Mapping[str, Any], sample_shape: tuple[int, ...]):
    """Build the view augmentation: image jitter for images, noise for vectors."""
    from .data import NoiseAugmentation, ViewAugmentation

    params = spec["data"]["augment"]
    if len(sample_shape) == 3:
        return construct(ViewAugmentation, params, "data.augment")
    return construct(NoiseAugmentation, params, "data.augment")


def build_encoder_checked(params: Mapping[str, Any], sample_shape: tuple[int, ...]):
    """Call :func:`ldm_pyro.encoders.build_encoder` with checked spec fields."""
    from .encoders import build_encoder

    signature_params = dict(params)
    if "input_shape" in signature_params:
        raise ValueError(
            "[encoder] must not set input_shape; it is taken from the data"
        )
    signature_params["input_shape"] = tuple(sample_shape)
    return construct(build_encoder, signature_params, "encoder")


def paired_batches(x: torch.Tensor, batch_size: int, augment):
    """Return ``batches(epoch, generator)`` yielding pairs of augmented views."""
    from .data import make_views

    n = x.shape[0]
    if n < batch_size:
        raise ValueError(
            f"training.batch_size={batch_size} exceeds the {n} training samples; "
            f"use a batch size of {n} or less (LDM(batch_size=...) or --set "
            "training.batch_size=...)"
        )

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(n, generator=generator)
        # Drop the last incomplete batch: batch estimators need a fixed size.
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield make_views(x[index], augment, generator)

    return batches


def encode_pair(encoder, batch):
    """Encode both views of a batch."""
    view, view_prime = batch
    return (encoder(view), encoder(view_prime)), {}


def _module_device(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def extract_features(encoder, x: torch.Tensor, batch_size: int = 1024):
    """Return the backbone features of ``x`` in evaluation mode, as numpy."""
    was_training = encoder.training
    encoder.eval()
    device = _module_device(encoder)
    parts = [
        encoder.features(x[i : i + batch_size].to(device))
        for i in range(0, len(x), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(parts).cpu().numpy()


@torch.no_grad()
def extract_latents(encoder, x: torch.Tensor, batch_size: int = 1024):
    """Return the latents ``z = f(x)`` in evaluation mode, as numpy."""
    was_training = encoder.training
    encoder.eval()
    device = _module_device(encoder)
    parts = [
        encoder(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(parts).cpu().numpy()


@register_task("paired")
def run_paired(spec, out: Path, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train an encoder on paired views and report linear-probe and kNN accuracy."""
    from .evaluation import format_probe_table, probe_report
    from .plotting import plot_eigenspectrum, plot_embedding, plot_loss_terms

    dtype = torch.get_default_dtype()
    dataset = load_paired_data(spec)
    dataset = dataset._replace(
        x_train=dataset.x_train.to(dtype), x_test=dataset.x_test.to(dtype)
    )
    sample_shape = tuple(dataset.x_train.shape[1:])
    config = TrainConfig.from_spec(spec["training"], progress=progress)
    torch.manual_seed(config.seed)
    encoder = build_encoder_checked(
        {"normalize": spec["space"] == "sphere", **spec["encoder"]}, sample_shape
    )
    torch.manual_seed(config.seed + 1)
    random_encoder = build_encoder_checked(
        {"normalize": spec["space"] == "sphere", **spec["encoder"]}, sample_shape
    )
    objective = build_objective(spec)
    augment = build_augmentation(spec, sample_shape)
    batches = paired_batches(dataset.x_train, config.batch_size, augment)

    result = fit(
        encoder,
        objective,
        batches,
        encode_pair,
        config,
        out_dir=out,
        resume=resume,
    )
    if not is_main_process():
        # Rank 0 evaluates and writes the outputs; the model is the same here.
        final = result.history[-1]
        return {"task": "paired", "final": final}

    rows, table = [], ""
    if dataset.y_train is not None:
        probe_rows = probe_report(
            lambda x: extract_features(encoder, x),
            dataset,
            lambda x: extract_features(random_encoder, x),
            seed=config.seed,
            knn_k=spec["evaluation"]["knn_k"],
        )
        table = format_probe_table(probe_rows)
        logger.info("probe results:\n%s", table)
        rows = [
            {
                "representation": row.name.split(" (")[0],
                "linear_probe": row.linear_accuracy,
                "knn": row.knn_accuracy,
            }
            for row in probe_rows
        ]
    else:
        logger.info("data %s has no labels; probes skipped", dataset.name)
    test_latents = extract_latents(encoder, dataset.x_test)
    plot_loss_terms(result.history, out / "loss_terms.png")
    labels = dataset.y_test.numpy() if dataset.y_test is not None else None
    plot_embedding(test_latents, labels, out / "embedding.png")
    plot_eigenspectrum(test_latents, out / "eigenspectrum.png")
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    final = result.history[-1]
    return {
        "task": "paired",
        "data": dataset.name,
        "epochs": config.epochs,
        "final": {key: final[key] for key in ("objective", "alignment", "entropy")},
        "probes": rows,
        "probe_table": table,
    }
