"""Pure numerical functions: log-Bessel functions, Kalman filtering, linear algebra."""

from .bessel import bessel_ratio, log_bessel_iv, vmf_log_normalizer
from .kalman import (
    KalmanFilterResult,
    KalmanSmootherResult,
    kalman_filter,
    parallel_kalman_filter,
    rts_smoother,
)

__all__ = [
    "KalmanFilterResult",
    "KalmanSmootherResult",
    "bessel_ratio",
    "kalman_filter",
    "log_bessel_iv",
    "parallel_kalman_filter",
    "rts_smoother",
    "vmf_log_normalizer",
]
