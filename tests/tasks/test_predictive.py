"""Smoke runs of the predictive, simplex and identifiability tasks (seconds each)."""

import json

import pytest
import torch

from ldm_pyro.runs import run_spec
from ldm_pyro.specs import load_spec
from ldm_pyro.tasks.predictive import same_class_pair_batches

SEQUENCE_SMOKE = [
    "task_params.sequences=8",
    "task_params.test_sequences=4",
    "task_params.length=6",
    "training.epochs=1",
    "training.batch_size=4",
    "encoder.hidden=[16]",
]


# One spec per task runs by default; the other catalog entries are marked slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name",
    [
        "rnn-wobbly",
        "jepa-wobbly",
        pytest.param("cpc-knn-wobbly", marks=SLOW),
        pytest.param("cpc-infonce-wobbly", marks=SLOW),
    ],
)
def test_sequence_specs_run(name, tmp_path):
    extra = ["task_params.gradient_cosine_every=1"] if name == "rnn-wobbly" else []
    spec = load_spec(name, SEQUENCE_SMOKE + extra)
    metrics = run_spec(spec, tmp_path, progress=False)
    assert metrics["task"] == "sequence"
    assert -10 < metrics["r2"] <= 1
    assert (tmp_path / "metrics.json").is_file()
    if extra:
        assert len(metrics["gradient_cosine"]) == 2


def test_sequence_full_flag_sets_paper_size():
    from ldm_pyro.tasks.predictive import resolve_sequence_spec

    spec = resolve_sequence_spec(load_spec("rnn-wobbly", ["task_params.full=true"]))
    assert spec["task_params"]["sequences"] == 10000
    assert spec["task_params"]["length"] == 100
    assert spec["training"]["epochs"] == 300
    assert spec["encoder"]["hidden"] == [200] * 10


def test_sequence_rejects_unknown_task_param(tmp_path):
    spec = load_spec("rnn-wobbly", ["task_params.colour=1"])
    with pytest.raises(ValueError, match="unknown spec field"):
        run_spec(spec, tmp_path, progress=False)


def test_toy_runs(tmp_path):
    spec = load_spec(
        "toy-knn-mi",
        [
            "task_params.latent_dims=[2]",
            "task_params.samples=128",
            "task_params.test_samples=64",
            "training.epochs=1",
            "training.batch_size=64",
        ],
    )
    metrics = run_spec(spec, tmp_path, progress=False)
    assert metrics["rows"][0]["latent_dim"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["task"] == "toy"


@pytest.mark.parametrize(
    "name",
    [
        "byol",
        pytest.param("simsiam", marks=SLOW),
        pytest.param("simplex-kde-mi", marks=SLOW),
    ],
)
def test_paired_target_specs_run(name, tmp_path):
    small = ["encoder.hidden=[32]", "encoder.projector=[16]", "encoder.feature_dim=16"]
    small += ["encoder.latent_dim=8", "training.epochs=1", "training.batch_size=128"]
    if name != "simplex-kde-mi":
        small.append("model.kernel_params.hidden=[8]")
    metrics = run_spec(load_spec(name, small), tmp_path, progress=False)
    assert metrics["task"] == "paired-target"
    assert len(metrics["probes"]) == 3


@pytest.mark.parametrize(
    "name", ["categorical-ldm", pytest.param("categorical-mi", marks=SLOW)]
)
def test_categorical_specs_run(name, tmp_path):
    spec = load_spec(name, ["training.epochs=1", "training.batch_size=128"])
    metrics = run_spec(spec, tmp_path, progress=False)
    assert 0 <= metrics["matched_accuracy"] <= 1
    assert 1 <= metrics["categories_used"] <= 10


def test_same_class_pairs_differ_and_share_class():
    x = torch.arange(12.0)[:, None]
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 1, 0])
    batches = same_class_pair_batches(x, y, 4)
    for anchors, partners in batches(0, torch.Generator().manual_seed(0)):
        anchor_index = anchors[:, 0].long()
        partner_index = partners[:, 0].long()
        assert torch.all(anchor_index != partner_index)
        assert torch.all(y[anchor_index] == y[partner_index])


def test_same_class_pairs_reject_singleton_class():
    with pytest.raises(ValueError, match="fewer than 2 samples"):
        same_class_pair_batches(torch.zeros(3, 1), torch.tensor([0, 0, 1]), 2)
