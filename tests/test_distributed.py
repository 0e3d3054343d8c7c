"""Multi-process training: gathered objectives equal the single-process objective.

The two-process checks launch this file as a ``torchrun`` worker script
(``python tests/test_distributed.py --worker OUT``) with gloo on 127.0.0.1. Each
worker evaluates every case on its shard of a global batch, with the encoder in
DistributedDataParallel (DDP), and saves its loss and the averaged gradients.
The test process then recomputes each case in one process on the concatenated
batch: that single-process computation is the reference.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional

from ldm_pyro import LDMObjective, distributed
from ldm_pyro.builders import build_objective
from ldm_pyro.entropy import (
    GaussianEntropy,
    GaussianExpansionEntropy,
    KDEEntropy,
    KNNEntropy,
    VICRegEntropy,
)
from ldm_pyro.latents import FlatPrior, GaussianKernel, PairedViewModel
from ldm_pyro.specs import load_spec
from ldm_pyro.training import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
WORLD_SIZE = 2
SAMPLES = 16  # global batch; 8 per process
INPUT_DIM = 5
LATENT_DIM = 3


# ---------------------------------------------------------------------------
# Cases shared by the workers and the single-process reference.


def _estimator_case(estimator_factory, form="ldm", sphere=False):
    def build():
        model = PairedViewModel(FlatPrior(), GaussianKernel(0.7, learnable=True))
        return LDMObjective(model, estimator_factory(), form=form), sphere

    return build


def _spec_case(name):
    def build():
        spec = load_spec(name)
        return build_objective(spec), spec["space"] == "sphere"

    return build


CASES = {
    "simclr": _spec_case("simclr"),
    "vicreg": _spec_case("vicreg"),
    "gaussian-ldm": _estimator_case(GaussianEntropy),
    "gaussian-mi": _estimator_case(GaussianEntropy, form="mi"),
    "gaussian-expansion": _estimator_case(GaussianExpansionEntropy),
    "kde-gaussian": _estimator_case(KDEEntropy),
    "kde-self-pair": _estimator_case(lambda: KDEEntropy(leave_one_out=False)),
    "kde-vmf-joint": _estimator_case(
        lambda: KDEEntropy(kernel="vmf", concentration=4.0), sphere=True
    ),
    "kde-vmf-pooled": _estimator_case(
        lambda: KDEEntropy(kernel="vmf", concentration=4.0, pool_views=True),
        form="mi",
        sphere=True,
    ),
    "knn": _estimator_case(KNNEntropy),
    "knn-mi": _estimator_case(lambda: KNNEntropy(k=2), form="mi"),
    "vicreg-joint": _estimator_case(VICRegEntropy),
}


def _global_batch():
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(SAMPLES, INPUT_DIM, generator=generator, dtype=torch.float64)
    noise = torch.randn(SAMPLES, INPUT_DIM, generator=generator, dtype=torch.float64)
    return x, x + 0.3 * noise


def _encoder():
    torch.manual_seed(7)
    return nn.Linear(INPUT_DIM, LATENT_DIM).double()


def _encode(encoder, x, sphere):
    z = encoder(x)
    return functional.normalize(z, dim=-1) if sphere else z


def _latent_params(objective):
    return [p for p in objective.parameters() if p.requires_grad]


def _evaluate(name, x, x_prime, *, gather=False, wrap=lambda m: m):
    """Return the loss and the gradients of one case on the rows ``x, x_prime``."""
    objective, sphere = CASES[name]()
    objective.gather = gather
    encoder = _encoder()
    trained = wrap(encoder)
    loss = objective(_encode(trained, x, sphere), _encode(trained, x_prime, sphere))
    loss = loss.loss
    loss.backward()
    distributed.average_gradients(_latent_params(objective))
    return {
        "loss": loss.detach(),
        "encoder": [p.grad.detach().clone() for p in encoder.parameters()],
        "latent": [p.grad.detach().clone() for p in _latent_params(objective)],
    }


def _estimator_only(x, x_prime, gather):
    """Loss from ``forward`` and the overridden pooled ``marginal_sum`` directly."""
    pooled = KDEEntropy(kernel="vmf", concentration=3.0, pool_views=True)
    knn = KNNEntropy(k=2)
    pooled.gather = gather
    knn.gather = gather
    encoder = _encoder()
    trained = distributed.wrap_ddp(encoder, torch.device("cpu")) if gather else encoder
    z = _encode(trained, x, True)
    z_prime = _encode(trained, x_prime, True)
    loss = -(pooled.marginal_sum(z, z_prime) + knn(z, z_prime) + knn(z))
    loss.backward()
    return {
        "loss": loss.detach(),
        "encoder": [p.grad.detach().clone() for p in encoder.parameters()],
    }


# ---------------------------------------------------------------------------
# Worker, run under torchrun.


def _worker(out: Path) -> None:
    torch.set_default_dtype(torch.float64)
    context = distributed.init_distributed("cpu")
    rank, world = context.rank, context.world_size
    x, x_prime = _global_batch()
    local = slice(rank * SAMPLES // world, (rank + 1) * SAMPLES // world)
    results = {"context": tuple(context[:3]), "backend": context.backend}

    def ddp(module):
        return distributed.wrap_ddp(module, context.device)

    for name in CASES:
        for gather in (True, False):
            results[(name, gather)] = _evaluate(
                name, x[local], x_prime[local], gather=gather, wrap=ddp
            )
    results["estimators"] = _estimator_only(x[local], x_prime[local], True)

    # Uneven rows: process r contributes r + 1 rows.
    rows = torch.arange(rank + 1, dtype=torch.float64).reshape(-1, 1)
    rows.requires_grad_()
    gathered = distributed.all_gather(rows + 10.0 * rank)
    weights = torch.arange(1.0, gathered.shape[0] + 1, dtype=torch.float64)
    (gathered.squeeze(1) * weights).sum().backward()
    results["uneven"] = {"gathered": gathered.detach(), "grad": rows.grad}
    results["seed"] = distributed.synchronize_seed(100 + rank)
    results["mean"] = distributed.all_reduce_mean([float(rank)])
    results["shard"] = distributed.shard_batch(torch.arange(6), rank, world)
    torch.save(results, out / f"rank{rank}.pt")
    distributed.shutdown_distributed()


# ---------------------------------------------------------------------------
# Helpers of the test process.


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(args, cwd: Path, timeout: float = 120.0):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD_SIZE}",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, (
        completed.stdout[-3000:] + completed.stderr[-3000:]
    )
    return completed


@pytest.fixture(scope="module")
def worker_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("workers")
    _torchrun([str(Path(__file__).resolve()), "--worker", str(out)], cwd=ROOT)
    return [
        torch.load(out / f"rank{rank}.pt", weights_only=False)
        for rank in range(WORLD_SIZE)
    ]


def _shard(rank):
    size = SAMPLES // WORLD_SIZE
    return slice(rank * size, (rank + 1) * size)


def _assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# Two-process checks against the single-process reference.


def test_worker_joins_gloo_group(worker_results):
    for rank, results in enumerate(worker_results):
        assert results["context"] == (rank, WORLD_SIZE, rank)
        assert results["backend"] == "gloo"


@pytest.mark.parametrize("name", list(CASES))
def test_gather_loss_is_global_loss(worker_results, name):
    # Reference: the same objective in one process on the concatenated batch.
    x, x_prime = _global_batch()
    reference = _evaluate(name, x, x_prime)
    losses = torch.stack([r[(name, True)]["loss"] for r in worker_results])
    _assert_close(losses.mean(), reference["loss"])
    _assert_close(losses[1], losses[0])


@pytest.mark.parametrize("name", list(CASES))
def test_gather_gradients_match_single_process(worker_results, name):
    x, x_prime = _global_batch()
    reference = _evaluate(name, x, x_prime)
    for results in worker_results:
        averaged = results[(name, True)]
        for actual, expected in zip(
            averaged["encoder"], reference["encoder"], strict=True
        ):
            _assert_close(actual, expected)
        # Latent-model gradients: averaged over processes, not summed.
        for actual, expected in zip(
            averaged["latent"], reference["latent"], strict=True
        ):
            _assert_close(actual, expected)


@pytest.mark.parametrize("name", list(CASES))
def test_no_gather_loss_is_local_loss(worker_results, name):
    # Reference: one process on the rank's own samples; the DDP gradient is the
    # mean of the per-shard gradients.
    x, x_prime = _global_batch()
    per_shard = [
        _evaluate(name, x[_shard(rank)], x_prime[_shard(rank)])
        for rank in range(WORLD_SIZE)
    ]
    for rank, results in enumerate(worker_results):
        _assert_close(results[(name, False)]["loss"], per_shard[rank]["loss"])
        for index, actual in enumerate(results[(name, False)]["encoder"]):
            expected = sum(s["encoder"][index] for s in per_shard) / WORLD_SIZE
            _assert_close(actual, expected)


def test_estimator_gather_covers_overrides(worker_results):
    # KDE overrides marginal_sum (pooled views) and KNN overrides joint; the
    # base class gathers for both.
    x, x_prime = _global_batch()
    reference = _estimator_only(x, x_prime, gather=False)
    for results in worker_results:
        _assert_close(results["estimators"]["loss"], reference["loss"])
        for actual, expected in zip(
            results["estimators"]["encoder"], reference["encoder"], strict=True
        ):
            _assert_close(actual, expected)


def test_all_gather_uneven_rows(worker_results):
    # Hand computation: rank 0 has [0], rank 1 has [0, 1] + 10. The loss on
    # each rank is sum_i w_i g_i with w = 1, 2, 3, so the gradient of a row is
    # its weight summed over the two ranks.
    expected = torch.tensor([[0.0], [10.0], [11.0]], dtype=torch.float64)
    for results in worker_results:
        _assert_close(results["uneven"]["gathered"], expected)
    _assert_close(worker_results[0]["uneven"]["grad"], torch.tensor([[2.0]]))
    _assert_close(worker_results[1]["uneven"]["grad"], torch.tensor([[4.0], [6.0]]))


def test_collective_helpers(worker_results):
    assert [r["seed"] for r in worker_results] == [100, 100]
    assert [r["mean"] for r in worker_results] == [[0.5], [0.5]]
    assert worker_results[0]["shard"].tolist() == [0, 1, 2]
    assert worker_results[1]["shard"].tolist() == [3, 4, 5]


FIT_ARGS = [
    "fit",
    "simclr",
    "--no-progress",
    "--set",
    "training.batch_size=128",
    "--set",
    "encoder.hidden=[32]",
    "--set",
    "encoder.projector=[]",
    "--set",
    "encoder.latent_dim=8",
]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """Train two epochs with two processes: one epoch, then a resumed one."""
    root = tmp_path_factory.mktemp("fit")
    out = root / "two"
    cli = ["-m", "ldm_pyro.cli", *FIT_ARGS, "--out", str(out)]
    _torchrun([*cli, "--epochs", "1"], cwd=root)
    first_checkpoint = (out / "checkpoint.pt").is_file()
    _torchrun([*cli, "--epochs", "2", "--resume"], cwd=root)
    return root, out, first_checkpoint


def test_fit_two_processes_resumes(two_process_run):
    root, out, first_checkpoint = two_process_run
    assert first_checkpoint
    assert not list(out.glob("*.tmp"))
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["step"] == 2 * history[0]["step"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert (out / "embedding.png").stat().st_size > 0
    # Rank 1 writes nothing: no second run folder appears.
    assert [p.name for p in root.iterdir()] == ["two"]


@pytest.mark.slow
def test_fit_two_processes_match_one(two_process_run, tmp_path):
    from ldm_pyro.cli import main

    # Reference: the same run in one process for two epochs, in float32 like
    # the torchrun workers (the float64 default of the tests draws another
    # initialization).
    torch.set_default_dtype(torch.float32)
    single = tmp_path / "single"
    assert main([*FIT_ARGS, "--epochs", "2", "--out", str(single)]) == 0
    _, out, _ = two_process_run
    history = json.loads((out / "history.json").read_text())
    expected = json.loads((single / "history.json").read_text())
    for row, reference in zip(history, expected, strict=True):
        # float32 training: the gradients agree up to summation order.
        assert row["loss"] == pytest.approx(reference["loss"], rel=1e-4)
        assert row["step"] == reference["step"]


# ---------------------------------------------------------------------------
# Single-process behaviour.


def test_gather_without_group_is_identity():
    z = torch.randn(5, 3)
    assert distributed.all_gather(z) is z
    assert distributed.all_gather_rows([z, z]) == (z, z)
    assert not distributed.is_distributed()
    assert distributed.get_world_size() == 1
    assert distributed.is_main_process()


def test_estimator_gather_flag_without_group():
    # Reference: the same estimator without the flag.
    z, z_prime = torch.randn(10, 3), torch.randn(10, 3)
    plain = KDEEntropy(pool_views=True)
    flagged = KDEEntropy(pool_views=True)
    flagged.gather = True
    assert flagged(z, z_prime) == plain(z, z_prime)
    assert flagged.marginal_sum(z, z_prime) == plain.marginal_sum(z, z_prime)
    assert flagged(z_prime=z_prime, z=z) == plain(z, z_prime)


def test_estimator_gather_rejects_wrong_rank():
    estimator = KNNEntropy()
    estimator.gather = True
    with pytest.raises(ValueError, match="z must have 2 dimensions"):
        estimator(torch.randn(10))


def test_inputs_gathered_restores_flag():
    estimator = GaussianEntropy()
    with estimator.inputs_gathered():
        with estimator.inputs_gathered():
            assert estimator._inputs_global
        assert estimator._inputs_global
    assert not estimator._inputs_global


def test_shard_batch_nested():
    batch = {"views": (torch.arange(4), torch.arange(4) + 10), "scale": 2.0}
    shard = distributed.shard_batch(batch, 1, 2)
    assert shard["views"][0].tolist() == [2, 3]
    assert shard["views"][1].tolist() == [12, 13]
    assert shard["scale"] == 2.0


def test_shard_batch_uneven_message():
    with pytest.raises(ValueError, match="multiple of 2"):
        distributed.shard_batch(torch.arange(5), 0, 2)


def test_resolve_device_choices():
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        distributed.resolve_device("tpu")
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            distributed.resolve_device("cuda")


def test_resolve_gather_values():
    assert distributed.resolve_gather(True)
    assert not distributed.resolve_gather(False)
    assert not distributed.resolve_gather("auto")  # no process group here
    with pytest.raises(ValueError, match="training.gather must be"):
        distributed.resolve_gather("yes")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gather", 1, "training.gather must be"),
        ("device", "gpu", "training.device must be one of"),
        ("precision", "fp16", "training.precision must be one of"),
    ],
)
def test_train_config_rejects(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_spec_has_distributed_fields():
    training = load_spec("simclr")["training"]
    assert training["gather"] == "auto"
    assert training["device"] == "cpu"
    assert training["precision"] == "fp32"
    config = TrainConfig.from_spec(training)
    assert (config.gather, config.device, config.precision) == ("auto", "cpu", "fp32")


ESTIMATORS = {
    "gaussian": GaussianEntropy,
    "gaussian-expansion": GaussianExpansionEntropy,
    "kde": KDEEntropy,
    "kde-pooled": lambda: KDEEntropy(pool_views=True),
    "knn": KNNEntropy,
    "vicreg": VICRegEntropy,
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_bfloat16_input_estimated_in_float32(name):
    # Reference: the estimator on the bfloat16 values cast to float32 by hand.
    estimator = ESTIMATORS[name]()
    z = torch.randn(40, 4).to(torch.bfloat16)
    z_prime = (z.float() + 0.1 * torch.randn(40, 4)).to(torch.bfloat16)
    value = estimator(z, z_prime)
    assert value.dtype == torch.float32
    assert value == estimator(z.float(), z_prime.float())
    marginal = estimator.marginal_sum(z, z_prime)
    assert marginal == estimator.marginal_sum(z.float(), z_prime.float())


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_autocast_does_not_reach_estimators(name):
    # Reference: the same float32 call outside autocast.
    estimator = ESTIMATORS[name]()
    z = torch.randn(40, 4, dtype=torch.float32)
    z_prime = z + 0.1 * torch.randn(40, 4, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = estimator(z, z_prime)
    assert torch.isfinite(value)
    assert value == estimator(z, z_prime)


def test_objective_bf16_autocast_close_to_fp32():
    # Reference: the float32 objective; bfloat16 keeps about 3 significant
    # digits in the encoder, so the objective agrees to about 1e-2.
    objective = build_objective(load_spec("simclr"))
    encoder = nn.Linear(INPUT_DIM, 8).float()
    x = torch.randn(64, INPUT_DIM, dtype=torch.float32)
    x_prime = x + 0.1 * torch.randn(64, INPUT_DIM, dtype=torch.float32)

    def loss():
        z = functional.normalize(encoder(x), dim=-1)
        z_prime = functional.normalize(encoder(x_prime), dim=-1)
        return objective(z, z_prime)

    exact = loss()
    with distributed.autocast(torch.device("cpu"), "bf16"):
        low = loss()
    assert low.objective.dtype == torch.float32
    assert torch.isfinite(low.objective)
    assert low.objective.item() == pytest.approx(exact.objective.item(), abs=5e-2)
    low.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_objective_bf16():
    # Reference: the same objective on the CPU in float32.
    device = distributed.resolve_device("cuda")
    objective = build_objective(load_spec("simclr"))
    z = functional.normalize(torch.randn(64, 8, dtype=torch.float32), dim=-1)
    z_prime = functional.normalize(z + 0.1 * torch.randn_like(z), dim=-1)
    expected = objective(z, z_prime).objective
    with distributed.autocast(device, "bf16"):
        actual = objective.to(device)(
            z.to(device, torch.bfloat16), z_prime.to(device, torch.bfloat16)
        ).objective
    assert actual.item() == pytest.approx(expected.item(), abs=5e-2)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]))
    else:
        sys.exit("usage: python tests/test_distributed.py --worker OUT_DIR")
