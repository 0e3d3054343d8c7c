"""Building blocks of latent models as Pyro programs: priors, kernels, programs."""

from .dynamics import KalmanDynamics, NoiseDetector, NoiseMLP
from .factorized import (
    PRIORS,
    FactorizedPrior,
    GaussianPrior,
    GeneralizedNormalPrior,
    LaplacePrior,
    LogisticPrior,
    StudentTPrior,
    make_prior,
)
from .kernels import GaussianKernel, UnnormalizedVonMisesFisher, VonMisesFisherKernel
from .predictors import PredictorKernel, RNNPredictor, SequencePredictiveModel
from .priors import (
    EmpiricalPrior,
    EmpiricalPriorDistribution,
    FlatPrior,
    SphereUniformPrior,
)
from .programs import PairedViewModel, SingleViewModel, load_program
from .simplex import (
    CategoricalMatchKernel,
    CategoricalUniformPrior,
    DirichletKernel,
    SimplexUniformPrior,
)

__all__ = [
    "CategoricalMatchKernel",
    "CategoricalUniformPrior",
    "DirichletKernel",
    "EmpiricalPrior",
    "EmpiricalPriorDistribution",
    "FactorizedPrior",
    "FlatPrior",
    "GaussianKernel",
    "GaussianPrior",
    "GeneralizedNormalPrior",
    "KalmanDynamics",
    "LaplacePrior",
    "LogisticPrior",
    "NoiseDetector",
    "NoiseMLP",
    "PRIORS",
    "PairedViewModel",
    "PredictorKernel",
    "RNNPredictor",
    "SequencePredictiveModel",
    "SimplexUniformPrior",
    "SingleViewModel",
    "SphereUniformPrior",
    "StudentTPrior",
    "UnnormalizedVonMisesFisher",
    "VonMisesFisherKernel",
    "load_program",
    "make_prior",
]
