"""Entropy estimators, one concept per module."""

from .base import EntropyEstimator
from .categorical import CategoricalEntropy
from .dirichlet import DirichletKDEEntropy
from .gaussian import GaussianEntropy, GaussianExpansionEntropy
from .kde import KDEEntropy
from .knn import KNNEntropy
from .linear import LinearJacobianEntropy, RotationLinear, UnmixingLinear
from .plugin import PlugInEntropy
from .vicreg import (
    VICRegEntropy,
    vicreg_covariance,
    vicreg_invariance,
    vicreg_variance,
)

# Estimator classes by spec name; a spec's fields are the constructor's keyword
# arguments.
ESTIMATORS = {
    "categorical": CategoricalEntropy,
    "dirichlet-kde": DirichletKDEEntropy,
    "gaussian": GaussianEntropy,
    "gaussian-expansion": GaussianExpansionEntropy,
    "kde": KDEEntropy,
    "knn": KNNEntropy,
    "plugin": PlugInEntropy,
    "vicreg": VICRegEntropy,
}

__all__ = [
    "ESTIMATORS",
    "CategoricalEntropy",
    "DirichletKDEEntropy",
    "EntropyEstimator",
    "GaussianEntropy",
    "GaussianExpansionEntropy",
    "KDEEntropy",
    "KNNEntropy",
    "LinearJacobianEntropy",
    "PlugInEntropy",
    "RotationLinear",
    "UnmixingLinear",
    "VICRegEntropy",
    "vicreg_covariance",
    "vicreg_invariance",
    "vicreg_variance",
]
