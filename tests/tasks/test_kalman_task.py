import json

import pytest
import torch

from ldm_pyro.cli import main
from ldm_pyro.specs import load_spec
from ldm_pyro.tasks.kalman import DATA_NAMES, build_dynamics, build_frame_encoder

TINY = [
    "--no-progress",
    "--set",
    "task_params.sequences=8",
    "--set",
    "task_params.test_sequences=2",
    "--set",
    "task_params.probe_sequences=4",
    "--set",
    "task_params.length=12",
    "--set",
    "training.batch_size=4",
]


def _fit(spec, out, *extra):
    return main(["fit", spec, "--out", str(out), *TINY, *extra])


def test_figure8_smoke_run_writes_folder_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert _fit("kalman-figure8", out, "--set", "training.epochs=1") == 0
    for name in ("spec.toml", "checkpoint.pt", "metrics.json", "train.log"):
        assert (out / name).is_file(), name
    for name in ("trajectory.png", "loss_terms.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "kalman"
    assert metrics["form"] == "stop-gradient"
    assert metrics["steps"] == 2  # 8 sequences in batches of 4
    assert set(metrics["coverage"]) == {"50", "90", "95"}
    for value in (*metrics["coverage"].values(), metrics["probe_r2"]):
        assert value == value  # not NaN
    # The plug-in entropy of the stop-gradient form is exactly zero.
    assert metrics["final"]["entropy"] == 0.0
    assert "probe R^2" in capsys.readouterr().out


def test_noise_task_reports_noise_correlation(tmp_path):
    out = tmp_path / "run"
    assert _fit("kalman-noise", out, "--set", "training.epochs=1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert -1.0 <= metrics["noise_correlation"] <= 1.0
    assert (out / "noise.png").stat().st_size > 0


def test_resume_continues_to_more_epochs(tmp_path):
    out = tmp_path / "run"
    assert _fit("kalman-square", out, "--set", "training.epochs=1") == 0
    assert _fit("kalman-square", out, "--set", "training.epochs=2", "--resume") == 0
    history = json.loads((out / "history.json").read_text())
    # The resumed run keeps epoch 1 and adds epoch 2: 2 steps per epoch.
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert [entry["step"] for entry in history] == [2, 4]


def test_unknown_data_name_is_rejected(tmp_path, capsys):
    assert _fit("kalman-figure8", tmp_path, "--data", "dots-spiral") == 2
    assert "unknown data.name 'dots-spiral' for task 'kalman'" in (
        capsys.readouterr().err
    )


def test_fixed_arguments_are_rejected_in_dynamics_table():
    spec = load_spec("kalman-figure8")
    settings = {"dynamics": {"state_dim": 10, "detach_targets": False}}
    settings["noise_network"] = None
    with pytest.raises(ValueError, match="must not set 'detach_targets'"):
        build_dynamics(spec, settings, detach_targets=True)


def test_noise_network_needs_input_noise():
    spec = load_spec("kalman-noise")
    settings = {
        "dynamics": {"state_dim": 2, "noise": "learned"},
        "noise_network": "detector",
        "noise_hidden": None,
    }
    with pytest.raises(ValueError, match="needs task_params.dynamics.noise = 'input'"):
        build_dynamics(spec, settings, detach_targets=True)
    settings["noise_network"] = "cnn"
    with pytest.raises(ValueError, match="noise_network must be one of"):
        build_frame_encoder(spec, settings, 100)


def test_frame_encoder_shapes():
    spec = load_spec("kalman-noise")
    settings = {"noise_network": "mlp", "noise_hidden": 8}
    encoder = build_frame_encoder(spec, settings, 100)
    z, noise_var = encoder(torch.randn(3, 5, 100))
    assert z.shape == (3, 5, 2)
    assert noise_var.shape == (3, 5, 2)
    assert bool((noise_var > 0).all())


@pytest.mark.parametrize(
    "name", ["kalman-figure8", "kalman-figure8-knn", "kalman-square", "kalman-noise"]
)
def test_catalog_specs_name_dot_data(name):
    spec = load_spec(name)
    assert spec["task"] == "kalman"
    assert spec["data"]["name"] in DATA_NAMES
    assert spec["training"]["latent_lr_multiplier"] == 100.0


def test_float32_dynamics_accept_clamped_transition():
    # Reference: the cap itself. A rescaled to spectral radius 1.02 must pass the
    # distribution's stability check, although float32 eigenvalues of the
    # rescaled matrix come back up to about 1e-5 above the cap.
    from ldm_pyro.latents import KalmanDynamics
    from ldm_pyro.latents.dynamics import spectral_radius

    generator = torch.Generator().manual_seed(0)
    dynamics = KalmanDynamics(5, 10, generator=generator).float()
    z = torch.randn(2, 4, 5, generator=generator, dtype=torch.float32)
    for _ in range(200):
        with torch.no_grad():
            A = torch.randn(10, 10, generator=generator, dtype=torch.float32)
            dynamics.A.copy_(2.0 * A / spectral_radius(A))
        dynamics.clamp_spectral_radius()
        dynamics.distribution(z.shape[1]).log_prob(z)


def test_basicmotions_smoke_run_reports_class_probes(tmp_path, capsys):
    pytest.importorskip("aeon")
    out = tmp_path / "run"
    args = ["--set", "training.epochs=1", "--set", "training.batch_size=20"]
    assert (
        main(["fit", "kalman-basicmotions", "--out", str(out), "--no-progress", *args])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "aeon-basicmotions"
    assert metrics["channels"] == 6
    assert metrics["steps"] == 2  # 40 series in batches of 20
    for key in ("probe_accuracy", "probe_accuracy_raw", "probe_accuracy_random"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert (out / "loss_terms.png").stat().st_size > 0
    assert "class probe" in capsys.readouterr().out


def test_sensor_data_rejects_dot_fields(tmp_path, capsys):
    pytest.importorskip("aeon")
    args = ["--set", "task_params.length=12"]
    assert main(["fit", "kalman-basicmotions", "--out", str(tmp_path), *args]) == 2
    assert "apply only to dot-motion data" in capsys.readouterr().err
