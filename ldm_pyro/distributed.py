r"""Multi-process training: process groups, batch gathering, devices and precision.

Launch a run with ``torchrun --nproc-per-node W ...``. Each process calls
:func:`init_distributed`, which reads the environment variables that ``torchrun``
sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
and joins the process group: gloo for CPU tensors, NCCL for CUDA tensors.

Batch estimators of the entropy (covariances, kernel density, nearest
neighbours, in-batch negatives) are not sums over samples. The objective of
``W`` processes with ``N / W`` samples each therefore differs from the objective
of one process with all ``N``. :func:`all_gather` concatenates the rows of every
process, and its backward pass sums the gradients that every process computes
for the rows of this process:

.. math::

    \frac{\partial}{\partial z_r} \sum_{s=1}^W L_s .

When every process computes the same global objective ``L`` from the gathered
batch, process ``r`` thus obtains ``W`` times the gradient of ``L`` through its
own rows, and the average that DistributedDataParallel (DDP) takes over the
``W`` processes equals the single-process gradient of ``L``. Parameters that act
on the gathered batch directly (latent-model parameters) already receive the
full gradient of ``L`` on every process, so they must be averaged, not summed:
:func:`average_gradients` does that.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")

#: Dtypes that the objective and the entropy estimators upcast to float32.
LOW_PRECISION_DTYPES = (torch.float16, torch.bfloat16)

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedContext(NamedTuple):
    """Place of this process in the process group.

    Attributes:
        rank: global rank, 0 for the main process.
        world_size: number of processes; 1 without a process group.
        local_rank: rank on this machine, which selects the CUDA device.
        device: the device of this process's tensors.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` without a process group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None


def launched_by_torchrun() -> bool:
    """Return whether the environment variables of ``torchrun`` are set."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def is_distributed() -> bool:
    """Return whether a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Return the global rank of this process, 0 without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def get_world_size() -> int:
    """Return the number of processes, 1 without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def get_local_rank() -> int:
    """Return the rank of this process on its machine (``LOCAL_RANK``, default 0)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Return whether this process is rank 0, the one that writes outputs."""
    return get_rank() == 0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device of this process for ``"auto"``, ``"cpu"`` or ``"cuda"``.

    ``"auto"`` selects CUDA when it is available and the CPU otherwise. A CUDA
    device is ``cuda:LOCAL_RANK``, one GPU per process on each machine.

    Raises:
        ValueError: for an unknown name, or for ``"cuda"`` without CUDA.
    """
    if isinstance(device, torch.device):
        return device
    if device not in DEVICES:
        raise ValueError(
            f"device must be one of {DEVICES}, got {device!r}; for example --device cpu"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; use --device "
            "cpu or --device auto"
        )
    return torch.device("cuda", get_local_rank() % torch.cuda.device_count())


def init_distributed(
    device: str | torch.device = "auto",
    *,
    timeout_s: float = 1800.0,
) -> DistributedContext:
    """Join the process group that ``torchrun`` describes, if it is not joined yet.

    Without the ``torchrun`` environment variables this does nothing and returns
    a context with ``world_size == 1``. The backend is NCCL for a CUDA device and
    gloo for the CPU; a CUDA process also selects ``cuda:LOCAL_RANK`` as its
    current device.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; see :func:`resolve_device`.
        timeout_s: time a collective operation waits for the other processes.

    Returns:
        The rank, world size, local rank, device and backend of this process.
    """
    resolved = resolve_device(device)
    if launched_by_torchrun() and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        logger.info(
            "joined process group: rank %d of %d, backend %s, device %s",
            dist.get_rank(),
            dist.get_world_size(),
            backend,
            resolved,
        )
    backend = dist.get_backend() if dist.is_initialized() else None
    return DistributedContext(
        get_rank(), get_world_size(), get_local_rank(), resolved, backend
    )


def shutdown_distributed() -> None:
    """Leave the process group, if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process reaches this call (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


class _AllGather(torch.autograd.Function):
    """Concatenate the rows of every process; the backward pass sums over processes."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: tuple[int, ...], rank: int):
        ctx.sizes = sizes
        ctx.rank = rank
        largest = max(sizes)
        padded = tensor.contiguous()
        if tensor.shape[0] < largest:
            padding = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([padded, padding])
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # Sum over processes, then keep this process's rows: a reduce-scatter
        # written with all_reduce, which gloo supports.
        total = grad_output.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start : start + ctx.sizes[ctx.rank]], None, None


def _gather_sizes(size: int, device: torch.device) -> tuple[int, ...]:
    local = torch.tensor([size], dtype=torch.int64, device=device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return tuple(int(part) for part in parts)


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    r"""Concatenate ``tensor`` of every process along dimension 0, in rank order.

    The result is differentiable. Its backward pass returns, for the rows of
    this process, the sum over processes of the gradients with respect to them
    (a reduce-scatter with ``SUM``). The processes may hold different numbers of
    rows. Without a process group of two or more processes ``tensor`` is
    returned unchanged.

    Shapes:
        ``tensor``: ``(n_r, ...)`` on process ``r``; result:
        ``(sum_r n_r, ...)`` on every process.
    """
    if not is_distributed():
        return tensor
    if tensor.dim() == 0:
        raise ValueError(
            "all_gather needs a tensor with a batch dimension, got a scalar; "
            "reshape it to (1,) first"
        )
    sizes = _gather_sizes(tensor.shape[0], tensor.device)
    return _AllGather.apply(tensor, sizes, dist.get_rank())


def all_gather_rows(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Gather several tensors that share their leading size with one collective.

    The tensors are flattened to ``(n, -1)``, concatenated along the columns,
    gathered with :func:`all_gather` and split again. Tensors with another
    leading size, dtype or device are gathered one by one.

    Shapes:
        each ``(n_r, ...)`` on process ``r``; results ``(sum_r n_r, ...)``.
    """
    tensors = tuple(tensors)
    if not is_distributed() or not tensors:
        return tensors
    first = tensors[0]
    uniform = all(
        t.dim() >= 1
        and t.shape[0] == first.shape[0]
        and t.dtype == first.dtype
        and t.device == first.device
        for t in tensors
    )
    if not uniform or len(tensors) == 1:
        return tuple(all_gather(t) for t in tensors)
    widths = [t[0].numel() for t in tensors]
    flat = torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)
    gathered = all_gather(flat)
    pieces = torch.split(gathered, widths, dim=1)
    return tuple(
        piece.reshape(piece.shape[0], *t.shape[1:])
        for piece, t in zip(pieces, tensors, strict=True)
    )


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over processes, in place.

    Parameters whose gradient is ``None`` are skipped; every process must have
    gradients for the same parameters, which holds when every process runs the
    same objective. All gradients go through one flattened ``all_reduce``.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    by_device: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for grad in grads:
        by_device.setdefault((grad.device, grad.dtype), []).append(grad)
    world_size = dist.get_world_size()
    for group in by_device.values():
        flat = torch.cat([grad.reshape(-1) for grad in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size
        offset = 0
        for grad in group:
            count = grad.numel()
            grad.copy_(flat[offset : offset + count].view_as(grad))
            offset += count


def all_reduce_mean(values: Sequence[float], device: torch.device | None = None):
    """Return the mean over processes of each number in ``values``, as floats."""
    if not is_distributed():
        return [float(v) for v in values]
    tensor = torch.tensor(
        [float(v) for v in values], dtype=torch.float64, device=device
    )
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / dist.get_world_size()).tolist()


def synchronize_seed(seed: int, device: torch.device | None = None) -> int:
    """Return rank 0's ``seed`` on every process (``seed`` without a group)."""
    if not is_distributed():
        return int(seed)
    tensor = torch.tensor([int(seed)], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def broadcast_object(value: Any) -> Any:
    """Return rank 0's ``value`` on every process (``value`` without a group)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """Return process ``rank``'s contiguous slice of every tensor in ``batch``.

    ``batch`` is a tensor or a tuple, list or dict of them (nested); other
    values pass through. Each tensor of leading size ``B`` gives rows
    ``[rank * B / W, (rank + 1) * B / W)``, so concatenating the slices of all
    processes in rank order restores the batch.

    Raises:
        ValueError: if a leading size is not divisible by ``world_size``.
    """
    if world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            return batch
        size = batch.shape[0]
        if size % world_size:
            raise ValueError(
                f"a batch of {size} samples cannot be split evenly over "
                f"{world_size} processes; set training.batch_size to a multiple "
                f"of {world_size}"
            )
        local = size // world_size
        return batch[rank * local : (rank + 1) * local]
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        items = [shard_batch(v, rank, world_size) for v in batch]
        if hasattr(batch, "_fields"):  # NamedTuple
            return type(batch)(*items)
        return type(batch)(items)
    return batch


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Return ``batch`` with every tensor, nested or not, moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        items = [move_to_device(v, device) for v in batch]
        if hasattr(batch, "_fields"):
            return type(batch)(*items)
        return type(batch)(items)
    return batch


def check_precision(precision: str) -> str:
    """Raise ``ValueError`` unless ``precision`` is ``"fp32"`` or ``"bf16"``."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}, got {precision!r}; for "
            "example --precision bf16"
        )
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """Return the autocast context of ``precision`` on ``device``.

    ``"bf16"`` runs eligible operations (matrix products, convolutions) in
    bfloat16; ``"fp32"`` changes nothing. The objective and the entropy
    estimators compute in float32 inside either context (:func:`full_precision`).
    """
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def needs_full_precision(tensors: Iterable[Any]) -> bool:
    """Return whether a tensor is half precision or autocast is active for it."""
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            continue
        if tensor.dtype in LOW_PRECISION_DTYPES:
            return True
        if tensor.is_floating_point() and torch.is_autocast_enabled(tensor.device.type):
            return True
    return False


@contextlib.contextmanager
def full_precision(tensors: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
    """Disable autocast and yield ``tensors`` with half precision cast to float32.

    Log-sum-exp, Cholesky factors, log-determinants and nearest-neighbour
    distances lose too many digits in bfloat16, and constants such as a squared
    distance floor of ``1e-24`` underflow in float16. The objective and the
    estimators therefore compute in float32 (or the input's higher precision)
    while the encoder may run in bfloat16.
    """
    device_types = {t.device.type for t in tensors if isinstance(t, torch.Tensor)}
    upcast = tuple(
        t.float()
        if isinstance(t, torch.Tensor) and t.dtype in LOW_PRECISION_DTYPES
        else t
        for t in tensors
    )
    with contextlib.ExitStack() as stack:
        for device_type in device_types:
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield upcast


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Wrap ``module`` in DistributedDataParallel when a process group is active.

    Returns ``module`` itself without a process group of two or more processes
    or when it has no trainable parameters.
    """
    if not is_distributed():
        return module
    if not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device] if device.type == "cuda" else None
    # NOTE: find_unused_parameters is off, so every trainable parameter of the
    # module must receive a gradient in each step; DDP raises otherwise.
    return DistributedDataParallel(module, device_ids=device_ids)


def resolve_gather(gather: bool | str) -> bool:
    """Return whether to gather: ``"auto"`` gathers under a process group of 2+.

    Raises:
        ValueError: unless ``gather`` is ``"auto"``, ``True`` or ``False``.
    """
    if gather is True or gather is False:
        return gather
    if gather != "auto":
        raise ValueError(
            f"training.gather must be 'auto', true or false, got {gather!r}"
        )
    return is_distributed()
