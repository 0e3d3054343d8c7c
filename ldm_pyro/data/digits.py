"""The scikit-learn handwritten digits as a fixed train/test split of 8x8 images.

``sklearn.datasets.load_digits`` ships 1797 grey-scale 8x8 images of the digits 0-9
with integer intensities 0..16 (the UCI optical recognition of handwritten digits
test set) inside scikit-learn, so loading needs no download.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from .arrays import ArrayDataset, check_test_size, make_dataset

#: Largest pixel intensity of ``sklearn.datasets.load_digits``.
DIGITS_MAX_INTENSITY = 16.0


def load_digits_split(test_size: float = 0.25, seed: int = 0) -> ArrayDataset:
    """Load the scikit-learn digits and split them, stratified by digit.

    The split is ``train_test_split(..., stratify=y, random_state=seed)``, so a seed
    fixes it on every machine. Pixel intensities are divided by 16 to lie in
    ``[0, 1]``.

    Args:
        test_size: fraction of the 1797 images in the test split.
        seed: random state of the split.

    Returns:
        An :class:`~ldm_pyro.data.ArrayDataset` named ``"digits"``.

    Shapes:
        ``x_train``: ``(N_train, 1, 8, 8)`` float32 in ``[0, 1]``; ``y_train``:
        ``(N_train,)`` int64 in ``0..9``; likewise for the test split. With the
        default ``test_size=0.25``, ``N_train = 1347`` and ``N_test = 450``.
    """
    test_size = check_test_size(test_size)
    bunch = load_digits()
    images = (bunch.images / DIGITS_MAX_INTENSITY).astype(np.float32)[:, None]
    return make_dataset(
        images, bunch.target, name="digits", test_size=test_size, seed=seed
    )
