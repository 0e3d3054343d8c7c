"""Evaluation of trained encoders: probes and identifiability metrics."""

from .calibration import (
    LinearProbe,
    PredictiveBands,
    empirical_coverage,
    fit_linear_probe,
    linear_readout_bands,
    sampled_readout_bands,
)
from .ica import amari_distance, mean_correlation_coefficient
from .identifiability import (
    AffineFit,
    affine_r2,
    identifiability_report,
    matched_category_accuracy,
)
from .probes import (
    ProbeRow,
    format_probe_table,
    knn_accuracy,
    linear_probe_accuracy,
    probe_report,
)

__all__ = [
    "amari_distance",
    "mean_correlation_coefficient",
    "AffineFit",
    "LinearProbe",
    "PredictiveBands",
    "ProbeRow",
    "affine_r2",
    "empirical_coverage",
    "fit_linear_probe",
    "format_probe_table",
    "identifiability_report",
    "knn_accuracy",
    "linear_probe_accuracy",
    "linear_readout_bands",
    "matched_category_accuracy",
    "probe_report",
    "sampled_readout_bands",
]
