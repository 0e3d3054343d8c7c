"""Pyro distributions that Pyro lacks."""

from .generalized_normal import GeneralizedNormal
from .hyperspherical_uniform import HypersphericalUniform
from .state_space import LinearGaussianStateSpace
from .von_mises_fisher import VonMisesFisher

__all__ = [
    "GeneralizedNormal",
    "HypersphericalUniform",
    "VonMisesFisher",
    "LinearGaussianStateSpace",
]
