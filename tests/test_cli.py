import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ldm_pyro.cli import main
from ldm_pyro.specs import available_specs, dump_spec, load_spec

ROOT = Path(__file__).resolve().parent.parent
FAST = [
    "--epochs",
    "2",
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


def test_list_prints_catalog(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert names == available_specs()
    assert all(len(line.split("\t")) == 2 for line in lines)


def test_fit_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "vicreg-ldm", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "random encoder" in printed
    assert "raw pixels" in printed
    for name in [
        "spec.toml",
        "checkpoint.pt",
        "metrics.json",
        "train.log",
        "history.json",
        "loss_terms.png",
        "embedding.png",
        "eigenspectrum.png",
    ]:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert {row["representation"] for row in metrics["probes"]} >= {
        "encoder",
        "random encoder",
        "raw pixels",
    }


def test_fit_resume_continues(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "simclr", "--out", str(out), *FAST]) == 0
    args = ["fit", "simclr", "--out", str(out), "--resume", *FAST]
    args[args.index("--epochs") + 1] = "3"
    assert main(args) == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_resume_rejects_other_spec_and_keeps_spec_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "simclr", "--out", str(out), *FAST]) == 0
    saved = (out / "spec.toml").read_text()
    code = main(["fit", "vicreg-ldm", "--out", str(out), "--resume", *FAST])
    assert code == 2
    assert "trained with spec 'simclr', not 'vicreg-ldm'" in capsys.readouterr().err
    assert (out / "spec.toml").read_text() == saved


def test_resume_uses_saved_spec(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", "simclr", "--out", str(out), *FAST]) == 0
    # No spec and no encoder overrides: the run folder's spec.toml is used.
    code = main(
        ["fit", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]
    )
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert load_spec(out / "spec.toml")["training"]["epochs"] == 3


def test_fit_wrong_value_type(tmp_path, capsys):
    code = main(["fit", "--out", str(tmp_path), "--set", "training.lr=abc"])
    assert code == 2
    assert "ldm-pyro: error:" in capsys.readouterr().err


def test_fit_npz_data(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    np.savez(path, x=rng.normal(size=(300, 6)), y=rng.integers(0, 3, size=300))
    out = tmp_path / "run"
    code = main(
        ["fit", "plane-logdet-ldm", "--data", str(path), "--out", str(out), *FAST]
    )
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["data"]


def test_fit_missing_data_file(tmp_path, capsys):
    code = main(["fit", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path)])
    assert code == 2
    assert "none.npz" in capsys.readouterr().err


def test_fit_unknown_spec(capsys):
    assert main(["fit", "simclr-v9"]) == 2
    assert "unknown spec 'simclr-v9'" in capsys.readouterr().err


def test_fit_unknown_field(capsys):
    assert main(["fit", "--set", "entropy.bandwith=2", "simclr"]) == 2
    assert "bandwith" in capsys.readouterr().err


def test_resume_without_checkpoint(tmp_path, capsys):
    code = main(["fit", "--out", str(tmp_path / "new"), "--resume", *FAST])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_corrupt_checkpoint_keeps_file(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "spec.toml").write_text(dump_spec(load_spec("vicreg-ldm")))
    (out / "checkpoint.pt").write_bytes(b"\x00garbage")
    code = main(["fit", "--out", str(out), "--resume", *FAST])
    assert code == 2
    assert "is corrupt" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == b"\x00garbage"


def test_catalog_ships_in_wheel(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("ldm_pyro-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
        names = archive.namelist()
    assert "ldm_pyro/_catalog/vicreg-ldm.toml" in names
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ldm_pyro.specs as s; "
            "print(s.catalog_dir()); print(len(s.available_specs()))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    folder, count = listed.stdout.split()
    assert Path(folder).is_relative_to(tmp_path / "site")
    assert int(count) == len(available_specs())


@pytest.mark.slow
def test_default_job_reaches_target(tmp_path):
    """The embedded default run: at least 0.95 linear-probe accuracy on digits."""
    out = tmp_path / "default"
    assert main(["fit", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    encoder = next(r for r in metrics["probes"] if r["representation"] == "encoder")
    assert encoder["linear_probe"] >= 0.95
