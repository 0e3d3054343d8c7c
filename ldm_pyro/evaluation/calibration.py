r"""Linear probes from filtered states and calibration of their uncertainty bands.

A Kalman latent model gives a Gaussian state posterior
:math:`N(h_{t|t}, P_{t|t})` at every step. For a linear readout
:math:`y = W h + c` the predictive distribution is

.. math::

    y_t \sim N(W h_{t|t} + c,\ W P_{t|t} W^T),

and for a nonlinear readout (an MLP trained on the mean) posterior samples are
pushed through the readout. Empirical coverage counts how often the true target
falls inside the central interval of each nominal level, per output coordinate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from scipy.stats import norm

from .._validation import check_finite, check_tensor

LEVELS = (0.5, 0.9, 0.95)


class LinearProbe(NamedTuple):
    """Least-squares readout ``y = W h + c`` and its held-out R^2."""

    #: Readout matrix ``W``, shape ``(n, S)``.
    weight: torch.Tensor
    #: Readout offset ``c``, shape ``(n,)``.
    bias: torch.Tensor
    #: Test R^2 averaged uniformly over the ``n`` outputs.
    r2: float
    #: Test R^2 of each output, shape ``(n,)``.
    r2_per_output: torch.Tensor
    #: Mean squared training residual of each output, shape ``(n,)``.
    residual_var: torch.Tensor


class PredictiveBands(NamedTuple):
    """Central predictive intervals of a readout, one pair per nominal level."""

    #: Predictive mean, ``(..., n)``.
    mean: torch.Tensor
    #: Lower interval bounds, ``(len(levels), ..., n)``.
    lower: torch.Tensor
    #: Upper interval bounds, ``(len(levels), ..., n)``.
    upper: torch.Tensor
    #: Nominal levels of the intervals.
    levels: tuple[float, ...]


def _rows(name: str, value: torch.Tensor) -> torch.Tensor:
    check_tensor(name, value, ndim=(2, 3))
    check_finite(name, value.detach())
    return value.detach().reshape(-1, value.shape[-1])


def fit_linear_probe(
    train_states: torch.Tensor,
    train_targets: torch.Tensor,
    test_states: torch.Tensor,
    test_targets: torch.Tensor,
) -> LinearProbe:
    r"""Fit ``y = W h + c`` by least squares on train sequences, score R^2 on test.

    All time steps of all sequences are pooled into one regression. The R^2 of
    output ``j`` is :math:`1 - \sum (y_j - \hat y_j)^2 / \sum (y_j - \bar y_j)^2`
    with the test mean :math:`\bar y_j`, and ``r2`` averages it uniformly over
    outputs (scikit-learn's ``multioutput="uniform_average"``).

    Args:
        train_states: filtered states ``h_{t|t}``, ``(B, T, S)`` or ``(M, S)``.
        train_targets: targets, ``(B, T, n)`` or ``(M, n)``.
        test_states: held-out states.
        test_targets: held-out targets.

    Returns:
        A :class:`LinearProbe`.

    Raises:
        ValueError: for NaN or Inf, mismatched sample counts, or fewer training
            samples than ``S + 1``.
    """
    x_train = _rows("train_states", train_states)
    y_train = _rows("train_targets", train_targets)
    x_test = _rows("test_states", test_states)
    y_test = _rows("test_targets", test_targets)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{split}_states and {split}_targets must have the same number of "
                f"samples, got {x.shape[0]} and {y.shape[0]}"
            )
    if x_test.shape[-1] != x_train.shape[-1] or y_test.shape[-1] != y_train.shape[-1]:
        raise ValueError(
            "train and test arrays must have the same last dimensions, got states "
            f"{x_train.shape[-1]} and {x_test.shape[-1]}, targets "
            f"{y_train.shape[-1]} and {y_test.shape[-1]}"
        )
    if x_train.shape[0] < x_train.shape[-1] + 1:
        raise ValueError(
            f"the probe needs at least S + 1 = {x_train.shape[-1] + 1} training "
            f"samples, got {x_train.shape[0]}"
        )
    design = torch.cat([x_train, x_train.new_ones(x_train.shape[0], 1)], dim=-1)
    solution = torch.linalg.lstsq(design, y_train).solution
    weight, bias = solution[:-1].T, solution[-1]
    residual_var = (y_train - design @ solution).square().mean(0)
    prediction = x_test @ weight.T + bias
    total = (y_test - y_test.mean(0)).square().sum(0)
    r2_per_output = 1.0 - (y_test - prediction).square().sum(0) / total
    return LinearProbe(
        weight, bias, float(r2_per_output.mean()), r2_per_output, residual_var
    )


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(float(level) for level in levels)
    if not levels or not all(0 < level < 1 for level in levels):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels}")
    return levels


def linear_readout_bands(
    mean: torch.Tensor,
    cov: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    levels: Sequence[float] = LEVELS,
    extra_var: torch.Tensor | None = None,
) -> PredictiveBands:
    r"""Analytic central intervals of ``W h + c`` under ``h ~ N(mean, cov)``.

    The marginal of output ``j`` is :math:`N((W m + c)_j, (W P W^T)_{jj} +
    \text{extra}_j)`, and the interval of level ``p`` is the mean plus or minus
    :math:`\Phi^{-1}((1 + p) / 2)` standard deviations.

    Args:
        mean: state means ``h_{t|t}``, ``(..., S)``.
        cov: state covariances ``P_{t|t}``, ``(..., S, S)``.
        weight: readout ``W``, ``(n, S)``.
        bias: readout offset ``c``, ``(n,)``.
        levels: nominal coverage levels.
        extra_var: variance added to each output, for example the probe's
            training residual variance; ``(n,)``.

    Returns:
        :class:`PredictiveBands`.
    """
    levels = _check_levels(levels)
    check_tensor("weight", weight, ndim=2, last_dim=mean.shape[-1])
    predictive_mean = mean @ weight.T + bias
    variance = ((weight @ cov) * weight).sum(-1)
    if extra_var is not None:
        variance = variance + extra_var
    std = variance.clamp_min(0).sqrt()
    quantiles = torch.tensor(
        [norm.ppf(0.5 * (1 + level)) for level in levels],
        dtype=mean.dtype,
        device=mean.device,
    ).reshape((-1,) + (1,) * std.dim())
    return PredictiveBands(
        predictive_mean,
        predictive_mean - quantiles * std,
        predictive_mean + quantiles * std,
        levels,
    )


def sampled_readout_bands(
    mean: torch.Tensor,
    cov: torch.Tensor,
    readout: Callable[[torch.Tensor], torch.Tensor],
    *,
    num_samples: int = 1000,
    levels: Sequence[float] = LEVELS,
    generator: torch.Generator | None = None,
) -> PredictiveBands:
    """Empirical central intervals of a nonlinear readout under the state posterior.

    Draws ``num_samples`` states from ``N(mean, cov)``, applies ``readout`` and
    takes the ``(1 - p) / 2`` and ``(1 + p) / 2`` sample quantiles per output. The
    returned mean is the readout of the posterior mean.

    Args:
        mean: state means, ``(..., S)``.
        cov: state covariances, ``(..., S, S)``; a small ridge of ``1e-9`` times
            its mean diagonal is added before the Cholesky factorization.
        readout: maps states ``(..., S)`` to outputs ``(..., n)``, for example an
            MLP trained on filtered means.
        num_samples: Monte Carlo samples per state.
        levels: nominal coverage levels.
        generator: random generator of the samples.

    Returns:
        :class:`PredictiveBands`.
    """
    levels = _check_levels(levels)
    with torch.no_grad():
        size = cov.shape[-1]
        ridge = 1e-9 * cov.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None]
        eye = torch.eye(size, dtype=cov.dtype, device=cov.device)
        factor = torch.linalg.cholesky(cov + ridge * eye)
        noise = torch.randn(
            (num_samples,) + mean.shape,
            generator=generator,
            dtype=mean.dtype,
            device=mean.device,
        )
        samples = mean + (factor @ noise.unsqueeze(-1)).squeeze(-1)
        outputs = readout(samples)
        probabilities = [0.5 * (1 - level) for level in levels]
        probabilities += [0.5 * (1 + level) for level in levels]
        quantiles = torch.quantile(
            outputs,
            torch.tensor(probabilities, dtype=outputs.dtype, device=outputs.device),
            dim=0,
        )
        count = len(levels)
        return PredictiveBands(
            readout(mean), quantiles[:count], quantiles[count:], levels
        )


def empirical_coverage(
    bands: PredictiveBands, targets: torch.Tensor
) -> dict[float, float]:
    """Return the fraction of target coordinates inside each interval.

    Args:
        bands: intervals from :func:`linear_readout_bands` or
            :func:`sampled_readout_bands`.
        targets: true values, the shape of ``bands.mean``.

    Returns:
        A dictionary from each nominal level to its empirical coverage, pooled
        over all samples and output coordinates. A calibrated readout gives
        coverage close to the level.
    """
    if targets.shape != bands.mean.shape:
        raise ValueError(
            f"targets must have the shape of the bands' mean "
            f"{tuple(bands.mean.shape)}, got {tuple(targets.shape)}"
        )
    inside = (targets >= bands.lower) & (targets <= bands.upper)
    fractions = inside.reshape(len(bands.levels), -1).double().mean(-1)
    return {
        level: float(fraction)
        for level, fraction in zip(bands.levels, fractions, strict=True)
    }
