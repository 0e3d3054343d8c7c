"""Bayesian model comparison of latent models.

Pointwise log-likelihood of frozen encodings, posterior inference over latent-model
parameters, ArviZ export, LOO, WAIC and comparison plots. ``docs/model-comparison.md``
walks through the workflow.
"""

from .export import (
    INFERENCE_DATA_FILE,
    check_log_likelihood,
    compare_models,
    compare_runs,
    load_inference_data,
    plot_comparison,
    to_inference_data,
    write_inference_data,
)
from .inference import PosteriorSamples, sample_posterior
from .likelihood import (
    draws_log_likelihood,
    linear_log_jacobian,
    pointwise_log_likelihood,
)

__all__ = [
    "INFERENCE_DATA_FILE",
    "PosteriorSamples",
    "check_log_likelihood",
    "compare_models",
    "compare_runs",
    "draws_log_likelihood",
    "linear_log_jacobian",
    "load_inference_data",
    "plot_comparison",
    "pointwise_log_likelihood",
    "sample_posterior",
    "to_inference_data",
    "write_inference_data",
]
