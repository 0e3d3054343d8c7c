"""Fixed train/test splits of array data: the dataset container and ``.npz`` loading.

Every loader in :mod:`ldm_pyro.data` returns an :class:`ArrayDataset`. The split is
drawn once from ``seed`` and stratified by label where the labels allow it, so the
same seed gives the same split on every machine.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .._validation import LDMWarning

logger = logging.getLogger(__name__)


class ArrayDataset(NamedTuple):
    """A labelled or unlabelled dataset with a fixed train/test split.

    Shapes:
        ``x_train``: ``(N_train, ...)`` float32; ``x_test``: ``(N_test, ...)``
        float32, with the same trailing shape (``(N, C, H, W)`` for images,
        ``(N, F)`` for feature vectors). ``y_train`` and ``y_test``: ``(N_train,)``
        and ``(N_test,)`` int64 class labels, or ``None`` for unlabelled data.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Number of classes (largest label + 1), or ``None`` without labels."""
        if self.y_train is None or self.y_test is None:
            return None
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def check_test_size(test_size: float) -> float:
    """Raise ``ValueError`` unless ``test_size`` is a fraction strictly in (0, 1)."""
    if isinstance(test_size, bool) or not isinstance(test_size, int | float):
        raise TypeError(
            f"test_size must be a float in (0, 1), got {type(test_size).__name__}"
        )
    value = float(test_size)
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ValueError(
            f"test_size must be a fraction strictly between 0 and 1, got "
            f"{test_size!r}; pass for example test_size=0.25"
        )
    return value


def split_indices(
    num_samples: int,
    labels: np.ndarray | None,
    test_size: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_samples)`` into train and test indices.

    The split is stratified by ``labels`` when every class has at least two samples
    and the test set can hold one sample of each class. Otherwise it falls back to
    a plain random split and emits an :class:`~ldm_pyro.LDMWarning`.

    Returns:
        ``(train_indices, test_indices)`` in the order that
        ``sklearn.model_selection.train_test_split`` returns them.
    """
    indices = np.arange(num_samples)
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        num_test = math.ceil(test_size * num_samples)
        num_train = num_samples - num_test
        if counts.min() >= 2 and min(num_test, num_train) >= len(counts):
            stratify = labels
        else:
            warnings.warn(
                f"cannot stratify the split: the smallest class has {counts.min()} "
                f"sample(s) and there are {len(counts)} classes for {num_test} test "
                f"and {num_train} train samples; using an unstratified random split",
                LDMWarning,
                stacklevel=4,
            )
    train, test = train_test_split(
        indices, test_size=test_size, stratify=stratify, random_state=seed
    )
    return train, test


def make_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    name: str,
    test_size: float,
    seed: int,
) -> ArrayDataset:
    """Split checked arrays into float32 feature and int64 label tensors."""
    train, test = split_indices(x.shape[0], y, test_size, seed)
    features = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    labels = None if y is None else torch.as_tensor(y.astype(np.int64))
    dataset = ArrayDataset(
        x_train=features[train],
        y_train=None if labels is None else labels[train],
        x_test=features[test],
        y_test=None if labels is None else labels[test],
        name=name,
    )
    logger.info(
        "dataset %s: %d train and %d test samples of shape %s",
        name,
        len(train),
        len(test),
        dataset.input_shape,
    )
    return dataset


def load_npz(
    path: str | Path,
    x_key: str = "x",
    y_key: str | None = "y",
    test_size: float = 0.25,
    seed: int = 0,
) -> ArrayDataset:
    """Load user arrays from an ``.npz`` archive and split them into train and test.

    The archive contains the features under ``x_key`` with shape ``(N, ...)`` (for
    example ``(N, F)`` feature vectors or ``(N, C, H, W)`` images) and, unless
    ``y_key`` is ``None``, integer class labels of shape ``(N,)`` under ``y_key``.
    Write one with ``numpy.savez(path, x=features, y=labels)``. Object arrays are
    rejected, because loading them would unpickle untrusted data.

    Args:
        path: the ``.npz`` file.
        x_key: name of the feature array in the archive.
        y_key: name of the label array, or ``None`` for unlabelled data.
        test_size: fraction of the samples in the test split.
        seed: random state of the split.

    Returns:
        An :class:`ArrayDataset` named after the file stem, with float32 features
        and int64 labels (``None`` when ``y_key`` is ``None``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not an ``.npz`` archive, a key is missing (the
            message lists the keys present), the features are not numeric or not
            finite, there are fewer than 2 samples, or the labels are not integers
            or do not match the number of samples.
    """
    path = Path(path)
    test_size = check_test_size(test_size)
    if not path.is_file():
        raise FileNotFoundError(
            f"npz file not found: {str(path)!r}; pass the path of an archive written "
            "with numpy.savez(path, x=features, y=labels)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"cannot read {str(path)!r} as a NumPy archive ({error}); write it with "
            "numpy.savez(path, x=features, y=labels)"
        ) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{str(path)!r} contains a single array, not an .npz archive of named "
            "arrays; "
            "write it with numpy.savez(path, x=features, y=labels)"
        )
    with archive:
        keys = list(archive.files)
        x = _read_array(archive, path, x_key, "x_key", keys)
        y = None if y_key is None else _read_array(archive, path, y_key, "y_key", keys)

    x = _check_features(x, path, x_key)
    if y is not None:
        y = _check_labels(y, path, y_key, x.shape[0])
    return make_dataset(x, y, name=path.stem, test_size=test_size, seed=seed)


def _read_array(archive, path: Path, key: str, argument: str, keys: list[str]):
    if key not in keys:
        hint = (
            " or y_key=None for unlabelled data (--set data.y_key= on the command line)"
            if argument == "y_key"
            else ""
        )
        raise ValueError(
            f"{argument}={key!r} is not in {str(path)!r}; the archive contains the "
            f"keys {keys}; pass one of them as {argument}{hint}"
        )
    try:
        return archive[key]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"cannot read array {key!r} from {str(path)!r} ({error}); object arrays "
            "are not loaded, so save numeric arrays"
        ) from error


def _check_features(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(
            f"features {key!r} in {str(path)!r} must be numeric, got dtype {x.dtype}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"features {key!r} in {str(path)!r} must have shape (N, ...) with at "
            f"least 2 dimensions, got shape {x.shape}; reshape a single feature "
            "with x.reshape(-1, 1)"
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"features {key!r} in {str(path)!r} must have at least 2 samples to "
            f"split into train and test, got {x.shape[0]}"
        )
    if np.issubdtype(x.dtype, np.inexact):
        finite = np.isfinite(x)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.reshape(x.shape[0], -1).all(axis=1))
            raise ValueError(
                f"features {key!r} in {str(path)!r} contain {int((~finite).sum())} "
                f"non-finite values (NaN or Inf) in {len(bad_rows)} samples, the "
                f"first at index {int(bad_rows[0])}; drop or impute them"
            )
    return x


def _check_labels(y: np.ndarray, path: Path, key: str, num_samples: int) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] != num_samples:
        raise ValueError(
            f"labels {key!r} in {str(path)!r} must have shape ({num_samples},) to "
            f"match the {num_samples} feature samples, got shape {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
            raise ValueError(
                f"labels {key!r} in {str(path)!r} must be integer class labels, got "
                "non-integer floats; encode classes with "
                "sklearn.preprocessing.LabelEncoder"
            )
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels {key!r} in {str(path)!r} must be integer class labels, got dtype "
            f"{y.dtype}; encode classes with sklearn.preprocessing.LabelEncoder"
        )
    if y.min() < 0:
        raise ValueError(
            f"labels {key!r} in {str(path)!r} must be >= 0, got minimum {y.min()}; "
            "encode classes with sklearn.preprocessing.LabelEncoder"
        )
    return y
