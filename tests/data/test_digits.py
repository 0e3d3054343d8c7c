import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ldm_pyro.data import ArrayDataset, load_digits_split


def test_digits_shapes_and_dtypes():
    data = load_digits_split()
    assert isinstance(data, ArrayDataset)
    assert data.name == "digits"
    assert data.x_train.shape == (1347, 1, 8, 8)
    assert data.x_test.shape == (450, 1, 8, 8)
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64
    assert data.y_test.shape == (450,)
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10


def test_digits_scaled_to_unit_interval():
    data = load_digits_split()
    pixels = torch.cat([data.x_train, data.x_test])
    assert pixels.min() == 0.0
    assert pixels.max() == 1.0


def test_digits_match_sklearn_split():
    # Reference: the split written out with sklearn, intensities divided by 16.
    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.images,
        bunch.target,
        test_size=0.25,
        stratify=bunch.target,
        random_state=3,
    )
    data = load_digits_split(seed=3)
    np.testing.assert_array_equal(data.x_train[:, 0].numpy(), x_train / 16.0)
    np.testing.assert_array_equal(data.x_test[:, 0].numpy(), x_test / 16.0)
    np.testing.assert_array_equal(data.y_train.numpy(), y_train)
    np.testing.assert_array_equal(data.y_test.numpy(), y_test)


def test_digits_split_is_stratified():
    data = load_digits_split()
    train_counts = np.bincount(data.y_train.numpy(), minlength=10)
    test_counts = np.bincount(data.y_test.numpy(), minlength=10)
    total = train_counts + test_counts
    # Stratification keeps each class share within one sample of 25 %.
    assert np.all(np.abs(test_counts - 0.25 * total) <= 1)


def test_digits_seed_fixes_split():
    first = load_digits_split(seed=1)
    again = load_digits_split(seed=1)
    other = load_digits_split(seed=2)
    assert torch.equal(first.y_train, again.y_train)
    assert torch.equal(first.x_test, again.x_test)
    assert not torch.equal(first.y_train, other.y_train)


def test_digits_test_size():
    data = load_digits_split(test_size=0.5)
    assert data.x_test.shape[0] + data.x_train.shape[0] == 1797
    assert data.x_test.shape[0] in (898, 899)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, float("nan")])
def test_digits_rejects_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size must be a fraction"):
        load_digits_split(test_size=test_size)
