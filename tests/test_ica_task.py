import json

import pytest

from ldm_pyro.cli import main
from ldm_pyro.specs import dump_spec, load_spec


def test_ica_laplace_from_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", "ica-laplace", "--out", str(out), "--no-progress"]
    args += ["--set", "task_params.data.samples=3000"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["amari_distance"] < 0.05
    assert metrics["mcc"] > 0.99
    assert (out / "sources.png").stat().st_size > 0
    assert "Amari distance" in capsys.readouterr().out


def test_ica_unknown_fit_option(tmp_path, capsys):
    args = ["fit", "ica-laplace", "--out", str(tmp_path), "--no-progress"]
    args += ["--set", "task_params.fit.max_iters=3"]
    assert main(args) == 2
    assert "unknown spec field(s) ['max_iters'] in [task_params.fit]" in (
        capsys.readouterr().err
    )


def test_ica_unknown_data(tmp_path, capsys):
    args = ["fit", "ica-laplace", "--data", "ica-cauchy", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "unknown data.name 'ica-cauchy'" in capsys.readouterr().err


def test_ica_resume_rejected(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(dump_spec(load_spec("ica-laplace")))
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    args = ["fit", "ica-laplace", "--out", str(tmp_path), "--resume"]
    assert main(args) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


def test_learned_beta_spec_trains_concentration():
    from ldm_pyro.builders import build_objective

    objective = build_objective(load_spec("simclr-ldm-learned-beta"))
    names = [name for name, _ in objective.named_parameters()]
    assert names == ["model.kernel.raw_concentration"]
    kernel = objective.model.kernel
    assert kernel.concentration.item() == pytest.approx(5.0)
    assert kernel.max_concentration == 50.0
