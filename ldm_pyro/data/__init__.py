"""Real-data loaders, synthetic generators and view augmentations for SSL."""

from .arrays import ArrayDataset, load_npz
from .digits import load_digits_split
from .dots import DotMotion, DotMotionSplits, make_dot_motion, make_dot_motion_splits
from .ica import (
    ICAData,
    make_image_mixtures,
    make_laplace_mixtures,
    make_ou_mixtures,
    make_uniform_mixtures,
    mix_sources,
)
from .sensors import SensorSeries, load_sensor_series
from .views import NoiseAugmentation, ViewAugmentation, make_views

__all__ = [
    "ICAData",
    "make_image_mixtures",
    "make_laplace_mixtures",
    "make_ou_mixtures",
    "make_uniform_mixtures",
    "mix_sources",
    "ArrayDataset",
    "DotMotion",
    "DotMotionSplits",
    "NoiseAugmentation",
    "ViewAugmentation",
    "load_digits_split",
    "load_npz",
    "make_dot_motion",
    "make_dot_motion_splits",
    "make_views",
    "SensorSeries",
    "load_sensor_series",
]
