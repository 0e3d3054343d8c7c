import socket
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("aeon")

from ldm_pyro.data.sensors import load_sensor_series  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    def reject_connection(*args, **kwargs):
        raise AssertionError("load_sensor_series attempted a network connection")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)
    monkeypatch.setattr(socket, "create_connection", reject_connection)


def test_basicmotions_shapes_and_labels(no_network):
    data = load_sensor_series("BasicMotions")
    assert data.train.shape == (40, 100, 6)
    assert data.test.shape == (40, 100, 6)
    assert data.train.dtype == torch.float64
    assert data.classes == ("badminton", "running", "standing", "walking")
    assert data.train_labels.dtype == torch.int64
    # Reference: the UEA archive's BasicMotions split has 10 series per class.
    assert torch.bincount(data.train_labels).tolist() == [10, 10, 10, 10]
    assert torch.bincount(data.test_labels).tolist() == [10, 10, 10, 10]


def test_basicmotions_standardized_with_train_statistics(no_network):
    # Reference: numpy mean and std of the raw .ts file read by aeon directly,
    # taken per channel over series and steps.
    from pathlib import Path

    import aeon
    from aeon.datasets import load_from_ts_file

    root = Path(aeon.__file__).parent / "datasets" / "data" / "BasicMotions"
    raw_train, _ = load_from_ts_file(str(root / "BasicMotions_TRAIN.ts"))
    raw_test, _ = load_from_ts_file(str(root / "BasicMotions_TEST.ts"))
    mean = raw_train.mean(axis=(0, 2))
    std = raw_train.std(axis=(0, 2))
    data = load_sensor_series("BasicMotions")
    np.testing.assert_allclose(data.train.mean(dim=(0, 1)).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.train.std(dim=(0, 1), unbiased=False), 1.0)
    expected = (raw_test[3, :, 17] - mean) / std
    np.testing.assert_allclose(data.test[3, 17].numpy(), expected, rtol=1e-12)


def test_japanesevowels_equal_length_split(no_network):
    data = load_sensor_series("JapaneseVowels", dtype=torch.float32)
    assert data.train.shape == (270, 25, 12)
    assert data.test.shape == (370, 25, 12)
    assert data.train.dtype == torch.float32
    assert len(data.classes) == 9
    assert bool(torch.isfinite(data.test).all())


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="name must be one of"):
        load_sensor_series("GunPoint")


def test_missing_aeon_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(ImportError, match=r"pip install ldm_pyro\[timeseries\]"):
        load_sensor_series("BasicMotions")
