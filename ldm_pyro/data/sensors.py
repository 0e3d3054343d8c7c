r"""Multivariate sensor series with class labels from the files bundled in aeon.

aeon (``pip install ldm_pyro[timeseries]``, tested with aeon 1.6.0) ships a few
classification problems of the UEA archive as ``.ts`` files inside its wheel,
under ``aeon/datasets/data``. :func:`load_sensor_series` reads those files with
``aeon.datasets.load_from_ts_file`` and never downloads:

- ``"BasicMotions"``: 3-D accelerometer and 3-D gyroscope of a smart watch,
  ``C = 6`` channels, ``T = 100`` steps at 10 Hz, 4 activities (badminton,
  running, standing, walking), 40 train and 40 test series.
- ``"JapaneseVowels"``: 12 LPC cepstrum coefficients of spoken vowels, 9
  speakers, 270 train and 370 test series. The raw series have unequal lengths,
  so the loader reads the equal-length copy ``JapaneseVowels_eq`` (``T = 25``)
  that aeon ships beside them.

Each channel ``c`` is standardized with the training statistics,
:math:`x_{b,t,c} \leftarrow (x_{b,t,c} - m_c) / s_c`, where :math:`m_c` and
:math:`s_c` are the mean and standard deviation of channel ``c`` over all
training series and steps.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

#: Dataset name, folder under ``aeon/datasets/data`` and file stem of each problem.
SENSOR_DATASETS = {
    "BasicMotions": ("BasicMotions", "BasicMotions"),
    "JapaneseVowels": ("JapaneseVowels", "JapaneseVowels_eq"),
}


class SensorSeries(NamedTuple):
    """Standardized train and test series of one classification problem.

    Shapes:
        ``train``: ``(B_train, T, C)``; ``train_labels``: ``(B_train,)`` int64 in
        ``0..K-1``; likewise for the test split. ``classes`` has ``K`` entries.
    """

    #: Training series, standardized per channel.
    train: torch.Tensor
    #: Class indices of the training series into ``classes``.
    train_labels: torch.Tensor
    #: Test series, standardized with the training statistics.
    test: torch.Tensor
    #: Class indices of the test series into ``classes``.
    test_labels: torch.Tensor
    #: Class names as written in the ``.ts`` files, sorted.
    classes: tuple[str, ...]
    #: Dataset name, a key of :data:`SENSOR_DATASETS`.
    name: str


def _import_aeon():
    try:
        return importlib.import_module("aeon.datasets")
    except ImportError as error:
        raise ImportError(
            "load_sensor_series needs the optional dependency aeon; install it "
            "with `pip install ldm_pyro[timeseries]`"
        ) from error


def _read_split(datasets, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder, stem = SENSOR_DATASETS[name]
    path = Path(datasets.__file__).parent / "data" / folder / f"{stem}_{split}.ts"
    if not path.is_file():
        raise FileNotFoundError(
            f"the aeon package at {Path(datasets.__file__).parent} does not contain "
            f"{path.name}; install aeon 1.6.0, whose wheel bundles it"
        )
    series, labels = datasets.load_from_ts_file(str(path))
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 3 or not np.isfinite(series).all():
        raise ValueError(
            f"{path.name} must contain finite equal-length series (N, C, T), got "
            f"shape {series.shape}"
        )
    return series, np.asarray(labels)


def load_sensor_series(
    name: str = "BasicMotions", dtype: torch.dtype | None = None
) -> SensorSeries:
    """Load a bundled aeon classification problem as standardized series.

    Args:
        name: ``"BasicMotions"`` or ``"JapaneseVowels"``.
        dtype: floating dtype of the series; ``None`` uses
            ``torch.get_default_dtype()``.

    Returns:
        A :class:`SensorSeries` with the time axis before the channel axis.

    Raises:
        ImportError: aeon is not installed.
        ValueError: ``name`` is not a key of :data:`SENSOR_DATASETS`, or a test
            label does not occur in the training split.

    Shapes:
        ``train``: ``(B_train, T, C)``; ``test``: ``(B_test, T, C)``; labels
        ``(B,)``. BasicMotions: ``(40, 100, 6)`` and ``(40, 100, 6)``;
        JapaneseVowels: ``(270, 25, 12)`` and ``(370, 25, 12)``.
    """
    if name not in SENSOR_DATASETS:
        raise ValueError(f"name must be one of {sorted(SENSOR_DATASETS)}, got {name!r}")
    datasets = _import_aeon()
    x_train, y_train = _read_split(datasets, name, "TRAIN")
    x_test, y_test = _read_split(datasets, name, "TEST")

    classes = np.unique(y_train)
    unknown = sorted(set(np.unique(y_test).tolist()) - set(classes.tolist()))
    if unknown:
        raise ValueError(
            f"the test split of {name} has labels {unknown} that the training "
            "split lacks; the bundled files may be damaged, reinstall aeon"
        )
    # Standardize per channel with statistics over training series and steps.
    mean = x_train.mean(axis=(0, 2), keepdims=True)
    std = x_train.std(axis=(0, 2), keepdims=True)
    dtype = torch.get_default_dtype() if dtype is None else dtype

    def to_tensor(series: np.ndarray) -> torch.Tensor:
        standardized = (series - mean) / std
        return torch.as_tensor(standardized.transpose(0, 2, 1).copy(), dtype=dtype)

    def to_labels(labels: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.searchsorted(classes, labels), dtype=torch.int64)

    return SensorSeries(
        train=to_tensor(x_train),
        train_labels=to_labels(y_train),
        test=to_tensor(x_test),
        test_labels=to_labels(y_test),
        classes=tuple(str(label) for label in classes),
        name=name,
    )
