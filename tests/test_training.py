import pytest
import torch
from torch import nn

from ldm_pyro import LDMObjective
from ldm_pyro.entropy import EntropyEstimator
from ldm_pyro.latents import FlatPrior, GaussianKernel, PairedViewModel
from ldm_pyro.training import (
    TrainConfig,
    build_optimizer,
    fit,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
)


class LogVariance(EntropyEstimator):
    """Sum of per-dimension log variances: a tiny estimator for loop tests."""

    def estimate(self, z):
        return 0.5 * z.var(dim=0).log().sum()


def make_problem(seed=0, fail_at_epoch=None):
    torch.manual_seed(seed)
    x = torch.randn(64, 5)
    encoder = nn.Linear(5, 3)
    kernel = GaussianKernel(1.0, learnable=True)
    objective = LDMObjective(PairedViewModel(FlatPrior(), kernel), LogVariance())

    def batches(epoch, generator):
        if fail_at_epoch is not None and epoch == fail_at_epoch:
            yield (x[:16] * float("nan"), x[:16])
            return
        order = torch.randperm(64, generator=generator)
        for start in range(0, 64, 16):
            batch = x[order[start : start + 16]]
            noise = torch.randn(batch.shape, generator=generator)
            yield batch, batch + 0.1 * noise

    def encode(model, batch):
        return (model(batch[0]), model(batch[1])), {}

    return encoder, objective, batches, encode


def config(**changes):
    values = dict(epochs=4, lr=1e-2, progress=False, checkpoint_every=1)
    values.update(changes)
    return TrainConfig(**values)


def test_fit_is_deterministic():
    first = fit(*make_problem(), config())
    second = fit(*make_problem(), config())
    assert first.history == second.history


def test_fit_increases_objective():
    result = fit(*make_problem(), config(epochs=20))
    assert result.history[-1]["objective"] > result.history[0]["objective"]


def test_latent_group_gets_multiplier():
    encoder, objective, _, _ = make_problem()
    optimizer = build_optimizer(encoder, objective, config(latent_lr_multiplier=30.0))
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["encoder"]["lr"] == pytest.approx(1e-2)
    assert groups["latent_model"]["lr"] == pytest.approx(0.3)
    assert len(groups["latent_model"]["params"]) == 1


def test_resume_matches_uninterrupted_run(tmp_path):
    full = fit(*make_problem(), config(epochs=4), out_dir=tmp_path / "full")
    fit(*make_problem(), config(epochs=2), out_dir=tmp_path / "part")
    # Resuming with the full epoch count continues where the checkpoint stopped.
    resumed = fit(
        *make_problem(), config(epochs=4), out_dir=tmp_path / "part", resume=True
    )
    assert len(resumed.history) == 4
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["objective"] == pytest.approx(b["objective"], rel=1e-12)


def test_failed_run_keeps_last_checkpoint(tmp_path):
    problem = make_problem(fail_at_epoch=2)
    with pytest.raises(ValueError, match=r"latents 'z' contains .* at step 8"):
        fit(*problem, config(epochs=4), out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_corrupt_checkpoint_rejected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"is corrupt or not a checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=r"is corrupt"):
        fit(*make_problem(), config(), out_dir=tmp_path, resume=True)


def test_foreign_checkpoint_rejected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"not an ldm_pyro checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run without --resume"):
        load_checkpoint(tmp_path / "none.pt")


def test_checkpoint_with_code_is_not_executed(tmp_path):
    # weights_only=True refuses pickled objects such as modules.
    path = tmp_path / "checkpoint.pt"
    torch.save({"encoder": nn.Linear(2, 2)}, path)
    with pytest.raises(ValueError, match=r"is corrupt or not a checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, r"training.epochs must be an integer >= 1, got 0"),
        ("lr", -1.0, r"training.lr must be a number > 0, got -1.0"),
        ("optimizer", "lbfgs", r"training.optimizer must be one of"),
        ("lr_schedule", "warm", r"training.lr_schedule must be one of"),
        ("milestones", (1.5,), r"training.milestones must be fractions"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_schedules():
    cosine = TrainConfig(lr_schedule="cosine", min_lr_factor=0.1)
    assert lr_factor(cosine, 0, 100) == pytest.approx(1.0)
    assert lr_factor(cosine, 50, 100) == pytest.approx(0.55)
    assert lr_factor(cosine, 100, 100) == pytest.approx(0.1)
    step = TrainConfig(lr_schedule="step", milestones=(0.33, 0.66), gamma=0.5)
    assert lr_factor(step, 10, 100) == 1.0
    assert lr_factor(step, 40, 100) == 0.5
    assert lr_factor(step, 70, 100) == 0.25
    linear = TrainConfig(lr_schedule="linear", min_lr_factor=0.2)
    assert lr_factor(linear, 50, 100) == pytest.approx(0.6)
