"""ldm_pyro: self-supervised learning as latent distribution matching in Pyro."""

from ._validation import LDMWarning
from .estimator import LDM
from .objective import LDMObjective, ObjectiveTerms

__version__ = "0.1.0"

__all__ = ["LDM", "LDMObjective", "LDMWarning", "ObjectiveTerms", "__version__"]
