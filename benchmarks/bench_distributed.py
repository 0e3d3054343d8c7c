"""Two-process CPU training throughput against one process on the same global batch.

Each configuration trains an MLP encoder (64 -> 256 -> 256 -> 32, unit-norm
latents) with the SimCLR objective of the catalog (vMF kernel, pooled vMF KDE)
for a number of steps and reports the median time per step:

* one process, global batch B, ``--threads`` intra-op threads;
* two gloo processes launched with torchrun, B / 2 rows each, gather on
  (the global-batch objective) and off (each process scores its own rows);
* the gather alone: forward and backward of ``all_gather_rows`` on the two
  latent tensors of one step, as a fraction of the gathered step.

Run: ``python benchmarks/bench_distributed.py [--batch 512] [--steps 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from ldm_pyro import distributed
from ldm_pyro.builders import build_objective
from ldm_pyro.specs import load_spec

INPUT_DIM = 64
LATENT_DIM = 32


def _encoder():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(INPUT_DIM, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, LATENT_DIM),
    )


def _time_steps(batch, steps, gather, device):
    rank, world = distributed.get_rank(), distributed.get_world_size()
    encoder = _encoder()
    trained = distributed.wrap_ddp(encoder, device)
    objective = build_objective(load_spec("simclr"))
    objective.gather = gather
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    local = batch // world
    times = []
    for step in range(steps + 3):
        x = torch.randn(batch, INPUT_DIM, generator=generator)
        x_prime = x + 0.1 * torch.randn(batch, INPUT_DIM, generator=generator)
        x, x_prime = (
            x[rank * local : (rank + 1) * local],
            x_prime[rank * local : (rank + 1) * local],
        )
        distributed.barrier()
        start = time.perf_counter()
        z = functional.normalize(trained(x), dim=-1)
        z_prime = functional.normalize(trained(x_prime), dim=-1)
        loss = objective(z, z_prime).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 3:  # warm-up steps are not timed
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_gather(batch, steps):
    local = batch // distributed.get_world_size()
    times = []
    for step in range(steps + 3):
        z = torch.randn(local, LATENT_DIM, requires_grad=True)
        z_prime = torch.randn(local, LATENT_DIM, requires_grad=True)
        distributed.barrier()
        start = time.perf_counter()
        gathered = distributed.all_gather_rows([z, z_prime])
        (gathered[0].sum() + gathered[1].sum()).backward()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _worker(args):
    context = distributed.init_distributed("cpu")
    torch.set_num_threads(1)
    result = {
        "gather": _time_steps(args.batch, args.steps, True, context.device),
        "no_gather": _time_steps(args.batch, args.steps, False, context.device),
        "gather_only": _time_gather(args.batch, args.steps),
    }
    if context.rank == 0:
        Path(args.worker).write_text(json.dumps(result))
    distributed.shutdown_distributed()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="global batch size")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of the one-process run"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    torch.set_num_threads(args.threads)
    single = _time_steps(args.batch, args.steps, False, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--master-addr=127.0.0.1",
            f"--master-port={_free_port()}",
            __file__,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--worker",
            str(result_file),
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
        subprocess.run(command, check=True, env=env, capture_output=True)
        two = json.loads(result_file.read_text())

    rows = [
        (f"1 process, {args.threads} threads", single),
        ("2 processes, gather on", two["gather"]),
        ("2 processes, gather off", two["no_gather"]),
    ]
    print(f"global batch {args.batch}, median of {args.steps} steps")
    print(f"{'configuration':<28} {'ms/step':>8} {'samples/s':>10} {'speed-up':>9}")
    for name, seconds in rows:
        print(
            f"{name:<28} {1e3 * seconds:8.2f} {args.batch / seconds:10.0f} "
            f"{single / seconds:9.2f}"
        )
    share = two["gather_only"] / two["gather"]
    print(
        f"gather alone (forward + backward): {1e3 * two['gather_only']:.3f} ms, "
        f"{100 * share:.1f}% of the gathered step"
    )


if __name__ == "__main__":
    main()
