import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from ldm_pyro import LDMWarning
from ldm_pyro.data import load_npz


@pytest.fixture
def labelled(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = np.repeat(np.arange(4), 10)
    path = tmp_path / "points.npz"
    np.savez(path, x=x, y=y)
    return path, x, y


def test_npz_matches_sklearn_split(labelled):
    path, x, y = labelled
    data = load_npz(path, test_size=0.25, seed=5)
    # Reference: the stratified index split written out with sklearn.
    train, test = train_test_split(
        np.arange(40), test_size=0.25, stratify=y, random_state=5
    )
    assert data.name == "points"
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64
    np.testing.assert_array_equal(data.x_train.numpy(), x[train].astype(np.float32))
    np.testing.assert_array_equal(data.x_test.numpy(), x[test].astype(np.float32))
    np.testing.assert_array_equal(data.y_train.numpy(), y[train])
    np.testing.assert_array_equal(data.y_test.numpy(), y[test])


def test_npz_custom_keys_and_images(tmp_path):
    path = tmp_path / "images.npz"
    images = np.zeros((12, 1, 4, 4), dtype=np.uint8)
    np.savez(path, pixels=images, classes=np.tile([0, 1, 2], 4))
    data = load_npz(path, x_key="pixels", y_key="classes")
    assert data.input_shape == (1, 4, 4)
    assert data.x_train.shape[0] + data.x_test.shape[0] == 12
    assert data.num_classes == 3


def test_npz_without_labels(tmp_path):
    path = tmp_path / "features.npz"
    np.savez(path, x=np.ones((10, 2)))
    data = load_npz(path, y_key=None)
    assert data.y_train is None
    assert data.y_test is None
    assert data.num_classes is None
    assert data.x_train.shape == (7, 2)


def test_npz_integral_float_labels(tmp_path):
    path = tmp_path / "floats.npz"
    np.savez(path, x=np.ones((8, 2)), y=np.array([0.0, 1.0] * 4))
    data = load_npz(path)
    assert data.y_train.dtype == torch.int64


def test_npz_missing_file(tmp_path):
    missing = tmp_path / "absent.npz"
    with pytest.raises(FileNotFoundError, match="absent.npz.*numpy.savez"):
        load_npz(missing)


def test_npz_missing_x_key_lists_keys(tmp_path):
    path = tmp_path / "keys.npz"
    np.savez(path, a=np.ones((4, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"x_key='x'.*keys \['a', 'y'\]"):
        load_npz(path)


def test_npz_missing_y_key_lists_keys(tmp_path):
    path = tmp_path / "nolabels.npz"
    np.savez(path, x=np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"y_key='y'.*\['x'\].*y_key=None"):
        load_npz(path)


def test_npz_rejects_non_finite(tmp_path):
    x = np.ones((6, 2))
    x[4, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match="1 non-finite values.*index 4"):
        load_npz(path)


def test_npz_rejects_single_sample(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x=np.ones((1, 3)), y=np.zeros(1, dtype=int))
    with pytest.raises(ValueError, match="at least 2 samples.*got 1"):
        load_npz(path)


def test_npz_rejects_one_dimensional_features(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.ones(5))
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        load_npz(path, y_key=None)


def test_npz_rejects_label_length_mismatch(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, x=np.ones((5, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"shape \(5,\).*got shape \(4,\)"):
        load_npz(path)


@pytest.mark.parametrize(
    "labels", [np.array([0.5, 1.0, 0.0, 1.0]), np.array(["a", "b", "a", "b"])]
)
def test_npz_rejects_non_integer_labels(tmp_path, labels):
    path = tmp_path / "labels.npz"
    np.savez(path, x=np.ones((4, 2)), y=labels)
    with pytest.raises(ValueError, match="integer class labels.*LabelEncoder"):
        load_npz(path)


def test_npz_rejects_negative_labels(tmp_path):
    path = tmp_path / "negative.npz"
    np.savez(path, x=np.ones((4, 2)), y=np.array([-1, 0, -1, 0]))
    with pytest.raises(ValueError, match="must be >= 0"):
        load_npz(path)


def test_npz_rejects_object_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, {"b": 2}], dtype=object))
    with pytest.raises(ValueError, match="object arrays"):
        load_npz(path, y_key=None)


def test_npz_rejects_single_array_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones((4, 2)))
    with pytest.raises(ValueError, match="single array"):
        load_npz(path)


def test_npz_rejects_other_file(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not an archive")
    with pytest.raises(ValueError, match="cannot read"):
        load_npz(path)


def test_npz_unstratified_fallback_warns(tmp_path):
    path = tmp_path / "rare.npz"
    np.savez(path, x=np.ones((8, 2)), y=np.array([0, 0, 0, 0, 1, 1, 1, 2]))
    with pytest.warns(LDMWarning, match="smallest class has 1"):
        data = load_npz(path)
    assert data.y_train.shape[0] + data.y_test.shape[0] == 8


def test_npz_rejects_bad_test_size(labelled):
    path, _, _ = labelled
    with pytest.raises(ValueError, match="test_size must be a fraction"):
        load_npz(path, test_size=1.5)
