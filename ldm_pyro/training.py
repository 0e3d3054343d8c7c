"""Training loop shared by the CLI, the estimator API and the reproductions.

The loop maximizes an :class:`~ldm_pyro.objective.LDMObjective` over the parameters
of an encoder and of the latent model. Latent-model parameters (kernel
concentrations, Kalman matrices, predictors) form their own optimizer group whose
learning rate is the base rate times ``latent_lr_multiplier``.

Checkpoints are written atomically (temporary file, then rename) and loaded with
``torch.load(..., weights_only=True)``. A run that fails keeps its last good
checkpoint, because a checkpoint is only written after a completed epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pyro
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from ._validation import check_finite
from .objective import LDMObjective

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "linear")


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run.

    Attributes:
        epochs: number of passes over the training data.
        batch_size: samples (or sequences) per step.
        lr: base learning rate of the encoder.
        weight_decay: weight decay of every parameter group.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        latent_lr_multiplier: factor on ``lr`` for latent-model parameters.
        lr_schedule: ``"constant"``, ``"cosine"`` (to ``min_lr_factor * lr``),
            ``"step"`` (times ``gamma`` at each fraction of training in
            ``milestones``) or ``"linear"`` (to ``min_lr_factor * lr``).
        min_lr_factor: final learning rate of the cosine and linear schedules, as
            a fraction of the initial rate.
        milestones: fractions of the total steps where the step schedule decays.
        gamma: decay factor of the step schedule.
        grad_clip: maximum gradient norm; 0 disables clipping.
        seed: seed of parameter initialization, shuffling and augmentation.
        checkpoint_every: write a checkpoint every this many epochs (and at the
            end); 0 writes only at the end.
        log_every: log the running terms every this many steps.
        progress: show a tqdm progress bar.
        gather: under a ``torch.distributed`` group, evaluate the objective on
            the batch gathered from all processes (``True``), on each process's
            own samples (``False``), or ``"auto"``: gather whenever two or more
            processes run. Without a process group it has no effect.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        precision: ``"fp32"``, or ``"bf16"`` to run the encoder under bfloat16
            autocast; the objective is always evaluated in float32 or higher.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    latent_lr_multiplier: float = 1.0
    lr_schedule: str = "constant"
    min_lr_factor: float = 0.0
    milestones: tuple[float, ...] = (0.33, 0.66)
    gamma: float = 0.5
    grad_clip: float = 0.0
    seed: int = 0
    checkpoint_every: int = 10
    log_every: int = 10
    progress: bool = True
    gather: bool | str = "auto"
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self):
        """Validate every field."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(
                    f"training.{name} must be an integer >= 1, got {value!r}"
                )
        for name in ("lr", "latent_lr_multiplier", "gamma"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"training.{name} must be a number > 0, got {value!r}")
        for name in ("weight_decay", "grad_clip", "min_lr_factor"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"training.{name} must be a number >= 0, got {value!r}"
                )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"training.optimizer must be one of {OPTIMIZERS}, got "
                f"{self.optimizer!r}"
            )
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"training.lr_schedule must be one of {SCHEDULES}, got "
                f"{self.lr_schedule!r}"
            )
        if not (isinstance(self.gather, bool) or self.gather == "auto"):
            raise ValueError(
                f"training.gather must be 'auto', true or false, got {self.gather!r}"
            )
        if self.device not in distributed.DEVICES:
            raise ValueError(
                f"training.device must be one of {distributed.DEVICES}, got "
                f"{self.device!r}"
            )
        if self.precision not in distributed.PRECISIONS:
            raise ValueError(
                f"training.precision must be one of {distributed.PRECISIONS}, got "
                f"{self.precision!r}"
            )
        self.milestones = tuple(float(m) for m in self.milestones)
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(
                "training.milestones must be fractions in (0, 1), got "
                f"{self.milestones}"
            )

    @classmethod
    def from_spec(cls, training: dict[str, Any], **changes) -> TrainConfig:
        """Build the config from a spec's ``[training]`` table.

        Spec fields that are not training-loop settings (``entropy_weight``) are
        ignored here; the builder of the objective reads them.
        """
        names = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in training.items() if key in names}
        values.update(changes)
        return cls(**values)


class TrainResult(NamedTuple):
    """Outcome of :func:`fit`.

    Attributes:
        history: one dictionary per epoch with the mean of each term.
        steps: one dictionary per logged step.
        checkpoint: path of the last checkpoint, or ``None`` without an output
            folder.
    """

    history: list[dict[str, float]]
    steps: list[dict[str, float]]
    checkpoint: Path | None


Encode = Callable[[nn.Module, Any], tuple[tuple[torch.Tensor, ...], dict[str, Any]]]
Batches = Callable[[int, torch.Generator], Iterable[Any]]


def build_optimizer(
    encoder: nn.Module, objective: nn.Module, config: TrainConfig
) -> torch.optim.Optimizer:
    """Create the optimizer with an encoder group and a latent-model group."""
    encoder_params = [p for p in encoder.parameters() if p.requires_grad]
    seen = {id(p) for p in encoder_params}
    latent_params = [
        p for p in objective.parameters() if p.requires_grad and id(p) not in seen
    ]
    seen.update(id(p) for p in latent_params)
    # Parameters created with pyro.param by a user's program live in the param store.
    store_params = [
        p
        for p in pyro.get_param_store().get_state()["params"].values()
        if p.requires_grad and id(p) not in seen
    ]
    latent_params.extend(store_params)
    groups = [{"params": encoder_params, "lr": config.lr, "name": "encoder"}]
    if latent_params:
        groups.append(
            {
                "params": latent_params,
                "lr": config.lr * config.latent_lr_multiplier,
                "name": "latent_model",
            }
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, momentum=0.9, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Return the schedule's learning-rate factor at ``step`` of ``total_steps``."""
    progress = min(step / max(total_steps, 1), 1.0)
    floor = config.min_lr_factor
    if config.lr_schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.lr_schedule == "linear":
        return 1 - (1 - floor) * progress
    if config.lr_schedule == "step":
        passed = sum(progress >= milestone for milestone in config.milestones)
        return config.gamma**passed
    return 1.0


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is corrupt or not an ldm_pyro checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; run without --resume to start a new run"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise ValueError(
            f"checkpoint {path} is corrupt or not a checkpoint "
            f"({str(error).strip().splitlines()[0]}); delete it "
            "or run without --resume to start again"
        ) from error
    required = {"encoder", "objective", "optimizer", "epoch", "history", "generator"}
    if not isinstance(state, dict) or not required.issubset(state):
        raise ValueError(
            f"checkpoint {path} is not an ldm_pyro checkpoint (missing "
            f"{sorted(required - set(state) if isinstance(state, dict) else required)})"
            "; delete it or run without --resume"
        )
    return state


def fit(
    encoder: nn.Module,
    objective: LDMObjective,
    batches: Batches,
    encode: Encode,
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    steps_per_epoch: int | None = None,
    after_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Maximize ``objective`` over the encoder and latent-model parameters.

    Under a ``torch.distributed`` process group of ``W`` processes (see
    :func:`ldm_pyro.distributed.init_distributed`), every process draws the same
    batches from a generator with rank 0's seed, and process ``r`` trains on the
    ``r``-th of ``W`` contiguous slices of each batch, so ``config.batch_size``
    is the global batch and must be divisible by ``W``. The encoder is wrapped in
    DistributedDataParallel, and ``encode`` receives the wrapper, so it must call
    the encoder as ``encoder(x)`` and not through other methods. With
    ``config.gather`` the objective is evaluated on the gathered global batch on
    every process; the latent-model gradients are
    averaged over processes. Only rank 0 shows the progress bar, logs and writes
    checkpoints; every process reads the checkpoint on resume.

    Args:
        encoder: module whose parameters form the encoder group.
        objective: the LDM objective; its parameters form the latent-model group.
        batches: ``batches(epoch, generator)`` yields the batches of one epoch and
            must draw all randomness from ``generator``.
        encode: ``encode(encoder, batch)`` returns ``(latents, context)``, the
            positional latents and keyword context passed to ``objective``.
        config: training settings.
        out_dir: folder for ``checkpoint.pt``; ``None`` writes nothing.
        resume: continue from ``out_dir/checkpoint.pt``.
        steps_per_epoch: number of batches per epoch, for the learning-rate
            schedule; counted from the first epoch when omitted.
        after_step: called with the global step after each optimizer step, for
            example to update an EMA target encoder.

    Returns:
        The per-epoch history, the logged steps and the checkpoint path.

    Raises:
        ValueError: if a latent, a term or the loss becomes NaN or Inf; the
            message names the term and the step. The last checkpoint is kept.
    """
    rank = distributed.get_rank()
    world_size = distributed.get_world_size()
    main = distributed.is_main_process()
    device = distributed.resolve_device(config.device)
    seed = distributed.synchronize_seed(config.seed, device=device)
    # Every process seeds the global generator alike, so that random operations
    # inside a gathered objective agree across processes.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    checkpoint_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    history: list[dict[str, float]] = []
    step_records: list[dict[str, float]] = []
    start_epoch = 0
    global_step = 0

    if resume:
        if checkpoint_path is None:
            raise ValueError(
                "resume=True needs out_dir with a checkpoint to resume from"
            )
        state = load_checkpoint(checkpoint_path)
        encoder.load_state_dict(state["encoder"])
        objective.load_state_dict(state["objective"])
        encoder.to(device)
        objective.to(device)
        optimizer = build_optimizer(encoder, objective, config)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        global_step = int(state.get("global_step", 0))
        steps_per_epoch = steps_per_epoch or state.get("steps_per_epoch")
        logger.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)
    else:
        encoder.to(device)
        objective.to(device)
        optimizer = build_optimizer(encoder, objective, config)
        base_lrs = [group["lr"] for group in optimizer.param_groups]

    if world_size > 1:
        objective.gather = distributed.resolve_gather(config.gather)
    gathered = bool(getattr(objective, "gather", False))
    train_encoder = distributed.wrap_ddp(encoder, device)
    # DDP averages the encoder gradients; the latent-model group is averaged here.
    latent_params = [
        parameter
        for group in optimizer.param_groups
        if group.get("name") != "encoder"
        for parameter in group["params"]
    ]

    encoder.train()
    objective.train()
    epochs = range(start_epoch, config.epochs)
    bar = tqdm(
        epochs,
        desc="training",
        unit="epoch",
        disable=not config.progress or not main,
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in bar:
        sums: dict[str, float] = {}
        count = 0
        for batch in batches(epoch, generator):
            batch = distributed.shard_batch(batch, rank, world_size)
            batch = distributed.move_to_device(batch, device)
            if steps_per_epoch:
                factor = lr_factor(config, global_step, steps_per_epoch * config.epochs)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * factor
            objective.step = global_step
            with distributed.autocast(device, config.precision):
                latents, context = encode(train_encoder, batch)
                terms = objective(*latents, **context)
            loss = terms.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(latent_params)
            if config.grad_clip > 0:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            if after_step is not None:
                after_step(global_step)
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    if not torch.isfinite(parameter).all():
                        check_finite(
                            f"parameter of group {group.get('name', '?')!r}",
                            parameter.detach(),
                            context=f"after step {global_step}",
                        )
            record = {
                "objective": terms.objective.item(),
                "alignment": terms.alignment.item(),
                "entropy": terms.entropy.item(),
                "loss": loss.item(),
            }
            if world_size > 1 and not gathered:
                # Each process scored its own samples: record the mean.
                means = distributed.all_reduce_mean(list(record.values()), device)
                record = dict(zip(record, means, strict=True))
            for key, value in record.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            global_step += 1
            if config.log_every and global_step % config.log_every == 0:
                step_records.append({"epoch": epoch, "step": global_step, **record})
                if main:
                    logger.debug("step %d: %s", global_step, record)
        if count == 0:
            raise ValueError(
                "the data produced no batches in an epoch; lower training.batch_size "
                "or provide more samples"
            )
        if steps_per_epoch is None:
            steps_per_epoch = count
        epoch_record = {"epoch": epoch + 1, "step": global_step}
        epoch_record.update({key: value / count for key, value in sums.items()})
        epoch_record["lr"] = optimizer.param_groups[0]["lr"]
        history.append(epoch_record)
        bar.set_postfix(loss=f"{epoch_record['loss']:.4g}")
        log = logger.info if main else logger.debug
        log(
            "epoch %d/%d: objective %.5g alignment %.5g entropy %.5g",
            epoch + 1,
            config.epochs,
            epoch_record["objective"],
            epoch_record["alignment"],
            epoch_record["entropy"],
        )
        last = epoch + 1 == config.epochs
        periodic = (
            config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0
        )
        if checkpoint_path is not None and (last or periodic) and main:
            save_checkpoint(
                checkpoint_path,
                {
                    "encoder": encoder.state_dict(),
                    "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "steps_per_epoch": steps_per_epoch,
                    "history": history,
                    "config": dataclasses.asdict(config),
                },
            )
    bar.close()
    objective.step = None
    return TrainResult(history, step_records, checkpoint_path)
