r"""Linear independent component analysis as latent distribution matching.

With a linear encoder ``z = W x`` and a factorized prior, the LDM objective is

.. math::

    F_{ICA}(W) = \langle \log P_\theta(W x) \rangle_x + \tfrac12 \log |W W^\top|
        + H[x],

the log-likelihood of maximum-likelihood ICA (Mikulasch and Zenke, "Understanding
Self-Supervised Learning via Latent Distribution Matching", ICML 2026, arXiv
2605.03517, Eq. 3). :func:`fit_ica` maximizes it with
:class:`~ldm_pyro.objective.LDMObjective`, a :class:`~ldm_pyro.latents.SingleViewModel`
around the prior and the exact entropy term
:class:`~ldm_pyro.entropy.LinearJacobianEntropy`. It drops the constant ``H[x]``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .entropy.linear import LinearJacobianEntropy, RotationLinear, UnmixingLinear
from .latents import SingleViewModel
from .latents.factorized import make_prior
from .objective import LDMObjective

logger = logging.getLogger(__name__)

LINEAR_MAPS = ("unmixing", "rotation")
ICA_OPTIMIZERS = ("newton", "lbfgs", "adam", "sgd")
_DEFAULT_LR = {"newton": 1.0, "lbfgs": 1.0, "adam": 0.01, "sgd": 0.01}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# L-BFGS runs in chunks of this many iterations, with a convergence and progress
# check between chunks.
_LBFGS_CHUNK = 5
# Settings of optimizer="newton": halvings of the step in the line search, floor
# on the eigenvalues of the approximate Hessian (Picard's default), the
# finite-difference step of psi' relative to the root mean square of each latent,
# and the rows that estimate psi' (the preconditioner only; F and its gradient
# use every sample).
_NEWTON_HALVINGS = 10
_NEWTON_FLOOR = 1e-2
_SCORE_STEP = 0.1
_CURVATURE_ROWS = 4096


class ICAResult(NamedTuple):
    """Result of :func:`fit_ica`.

    Attributes:
        unmixing: full unmixing ``W_total = W K`` of shape ``(D, n)``, which maps
            centred mixtures to sources (``K`` is the whitening matrix, or the
            identity without whitening). Pass it to
            :func:`~ldm_pyro.evaluation.ica.amari_distance` with the mixing matrix.
        weight: learned ``W`` of shape ``(D, D_in)`` acting on the (whitened)
            inputs.
        whitening: whitening matrix ``K`` of shape ``(D, n)``, or ``None``.
        mean: ``(n,)`` mean subtracted from the mixtures (zeros without centring).
        sources: recovered sources ``(X - mean) W_total^T`` of shape ``(N, D)``.
        history: ``"objective"``, ``"alignment"`` and ``"entropy"`` in nats per
            sample at every objective evaluation. For Newton and L-BFGS this
            includes the line-search trials. With Newton the last entry is the
            value at the returned ``W``. With mini-batches each entry is an epoch mean.
        iterations: optimizer iterations (epochs for mini-batches) run.
        converged: whether the stopping tolerance was met before ``max_iter``.
        seconds: wall time of the optimization.
    """

    unmixing: torch.Tensor
    weight: torch.Tensor
    whitening: torch.Tensor | None
    mean: torch.Tensor
    sources: torch.Tensor
    history: dict[str, list[float]]
    iterations: int
    converged: bool
    seconds: float


def fit_ica(
    X: np.ndarray | torch.Tensor,
    prior: str | nn.Module = "laplace",
    *,
    prior_options: dict[str, Any] | None = None,
    components: int | None = None,
    center: bool = True,
    whiten: bool = True,
    linear: str = "unmixing",
    optimizer: str | None = None,
    lr: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    batch_size: int | None = None,
    eps: float = 0.0,
    seed: int = 0,
    dtype: str = "float64",
    progress: bool = False,
) -> ICAResult:
    r"""Fit linear ICA by maximizing ``<log P(W x)> + 1/2 log|W W^T|`` (LDM objective).

    Whitening (``whiten=True``) centres the mixtures and maps them with
    :math:`K = \Lambda^{-1/2} U^\top` from the top ``D`` eigenpairs of their
    covariance, then learns ``W`` on the whitened data, starting at the identity.
    This is the usual preconditioning of ICA: the remaining ``W`` is close to a
    rotation, so the optimizer needs far fewer steps. It leaves the optimum of
    the likelihood unchanged, because ``log|det K|`` is a constant. The Amari
    distance must then be computed for the full unmixing ``W_total = W K``
    (:attr:`ICAResult.unmixing`), not for ``W`` alone. Whitening removes all
    second-order information, so fits that rely on variances (a Gaussian prior
    with known variances and a rotation ``W``) need ``whiten=False``.

    The Newton optimizer updates ``W <- (I + t E) W``. ``E`` solves the
    block-diagonal approximation of the Hessian of Picard (Ablin, Cardoso and
    Gramfort, IEEE Trans. Signal Processing 66(15), 2018, arXiv 1706.08171),
    :math:`h_{ij} = \langle\psi'(z_i)\rangle\langle z_j^2\rangle` with
    :math:`\psi = -d\log p/dz`, and ``t`` halves from ``lr`` until the exact
    LDM objective rises. The score :math:`\psi` comes from the autograd
    gradient of the objective with respect to ``z``, so every prior works;
    :math:`\psi'` is a finite difference of it, which smooths the kink of the
    Laplace density. Each iteration evaluates the objective once when the first
    step is accepted.

    Args:
        X: ``(N, n)`` mixtures, one sample per row.
        prior: a name in :data:`~ldm_pyro.latents.factorized.PRIORS` or a prior
            module (called with ``z`` of shape ``(N, D)``).
        prior_options: keyword arguments of the named prior, for example
            ``{"beta": 4.0, "scale": 0.47}``.
        components: number of sources ``D`` (default ``n``). With whitening
            ``D <= n`` keeps the top principal components. Without whitening a
            non-square ``W`` of shape ``(D, n)`` is learned.
        center: subtract the mean of every mixture.
        whiten: whiten before learning ``W`` (requires ``center``).
        linear: ``"unmixing"`` (unconstrained ``W``, starting at the identity) or
            ``"rotation"`` (``W = exp(K - K^T)``, volume preserving).
        optimizer: ``"newton"`` (full batch, relative Newton steps with the ICA
            Hessian approximation and a backtracking line search, see below),
            ``"lbfgs"`` (full batch, strong-Wolfe line search), ``"adam"`` or
            ``"sgd"``. ``None`` takes ``"newton"`` where it applies (square
            unconstrained ``W`` and a prior without trainable parameters) and
            ``"lbfgs"`` otherwise.
        lr: learning rate; default 0.01 for Adam and SGD. For Newton and L-BFGS
            it is the first step of the line search, default 1.
        max_iter: maximum optimizer iterations (epochs with ``batch_size``).
        tol: relative tolerance of early stopping. Newton stops when one step
            raises the objective by less than ``tol * max(1, |F|)``, or when no
            step raises it. L-BFGS stops when the objective rises by less than
            ``tol * max(1, |F|)`` over 5 iterations.
            Adam and SGD stop when it changes by less than that between
            iterations (epochs with ``batch_size``) 10 times in a row.
        batch_size: mini-batch size for Adam and SGD; ``None`` is full batch.
        eps: ridge of :class:`~ldm_pyro.entropy.LinearJacobianEntropy`.
        seed: seed of the rotation initialization and the mini-batch order.
        dtype: ``"float64"`` or ``"float32"``.
        progress: show a tqdm progress bar.

    Returns:
        :class:`ICAResult`.

    Raises:
        ValueError: on invalid arguments, non-finite data, fewer samples than
            mixtures, rank-deficient mixtures with whitening, or a ``W`` that
            becomes singular or non-finite during training (lower ``lr``).
    """
    if optimizer is not None and optimizer not in ICA_OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {ICA_OPTIMIZERS} or None, got {optimizer!r}"
        )
    options = _check_options(
        optimizer=optimizer,
        linear=linear,
        dtype=dtype,
        max_iter=max_iter,
        tol=tol,
        batch_size=batch_size,
        center=center,
        whiten=whiten,
        lr=lr,
    )
    data = _as_data(X, options["dtype"])
    samples, features = data.shape
    components = _check_components(components, features, whiten)

    mean = data.mean(dim=0) if center else data.new_zeros(features)
    centred = data - mean
    whitening = _whitening_matrix(centred, components) if whiten else None
    inputs = centred @ whitening.T if whitening is not None else centred
    input_dim = inputs.shape[1]

    generator = torch.Generator().manual_seed(int(seed))
    if linear == "rotation":
        if components != input_dim:
            raise ValueError(
                f"linear='rotation' needs a square W, but components={components} "
                f"and the inputs have {input_dim} dimensions; set components to "
                f"{input_dim} or use linear='unmixing'"
            )
        unmixing_map: nn.Module = RotationLinear(input_dim, generator=generator)
    else:
        unmixing_map = UnmixingLinear(input_dim, components)
    unmixing_map = unmixing_map.to(options["dtype"])
    prior_module = make_prior(prior, **(prior_options or {})).to(options["dtype"])
    objective = LDMObjective(
        SingleViewModel(prior_module),
        LinearJacobianEntropy(unmixing_map, eps=eps),
        form="single",
    )
    parameters = [p for p in objective.parameters() if p.requires_grad]
    optimizer = _choose_optimizer(optimizer, linear, unmixing_map, prior_module)

    logger.info(
        "fit_ica: N=%d samples, n=%d mixtures, D=%d components, prior=%s, "
        "optimizer=%s, whiten=%s",
        samples,
        features,
        components,
        type(prior_module).__name__,
        optimizer,
        whiten,
    )
    history: dict[str, list[float]] = {"objective": [], "alignment": [], "entropy": []}
    step_lr = _DEFAULT_LR[optimizer] if lr is None else float(lr)
    start = time.perf_counter()
    with tqdm(total=max_iter, disable=not progress, desc="fit_ica") as bar:
        if optimizer == "newton":
            iterations, converged = _run_newton(
                objective,
                unmixing_map,
                prior_module,
                inputs,
                step_lr,
                max_iter,
                tol,
                history,
                bar,
            )
        elif optimizer == "lbfgs":
            iterations, converged = _run_lbfgs(
                objective,
                unmixing_map,
                inputs,
                parameters,
                step_lr,
                max_iter,
                tol,
                history,
                bar,
            )
        else:
            iterations, converged = _run_gradient(
                objective,
                unmixing_map,
                inputs,
                parameters,
                optimizer,
                step_lr,
                max_iter,
                tol,
                batch_size,
                generator,
                history,
                bar,
            )
    seconds = time.perf_counter() - start

    with torch.no_grad():
        weight = unmixing_map.weight.detach().clone()
        total = weight @ whitening if whitening is not None else weight
        sources = centred @ total.T
    if converged:
        logger.info(
            "fit_ica converged after %d iterations in %.2f s, objective %.6g",
            iterations,
            seconds,
            history["objective"][-1],
        )
    else:
        logger.warning(
            "fit_ica stopped at max_iter=%d without meeting tol=%g (%.2f s); "
            "increase max_iter or tol",
            max_iter,
            tol,
            seconds,
        )
    return ICAResult(
        unmixing=total,
        weight=weight,
        whitening=whitening,
        mean=mean,
        sources=sources,
        history=history,
        iterations=iterations,
        converged=converged,
        seconds=seconds,
    )


def _evaluate(objective, unmixing_map, batch, history=None):
    terms = objective(unmixing_map(batch))
    if history is not None:
        _record(history, terms)
    return terms


def _record(history, terms):
    history["objective"].append(float(terms.objective.detach()))
    history["alignment"].append(float(terms.alignment.detach()))
    history["entropy"].append(float(terms.entropy.detach()))


# NOTE: L-BFGS needs 10 to 65 iterations on the non-smooth Laplace likelihood,
# where FastICA's fixed point needs 3 to 10, so fit_ica took 4x to 90x FastICA's
# time in benchmarks/bench_ica.py (2-core CPU, see docs/benchmarks.md).
def _run_lbfgs(
    objective, unmixing_map, inputs, parameters, lr, max_iter, tol, history, bar
):
    optimizer = torch.optim.LBFGS(
        parameters,
        lr=lr,
        max_iter=_LBFGS_CHUNK,
        history_size=20,
        tolerance_grad=0.0,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    cache: dict[str, Any] = {"versions": None}

    def closure():
        # Every call of optimizer.step starts by evaluating the closure at the
        # point where the previous call ended; reuse that evaluation.
        versions = [p._version for p in parameters]
        if versions == cache["versions"]:
            for parameter, grad in zip(parameters, cache["grads"], strict=True):
                parameter.grad = grad.clone()
            return cache["loss"]
        optimizer.zero_grad()
        loss = -_evaluate(objective, unmixing_map, inputs, history).objective
        loss.backward()
        cache["versions"] = [p._version for p in parameters]
        cache["grads"] = [p.grad.clone() for p in parameters]
        cache["loss"] = loss.detach()
        return loss

    iterations = 0
    previous = None
    while iterations < max_iter:
        chunk = min(_LBFGS_CHUNK, max_iter - iterations)
        optimizer.param_groups[0]["max_iter"] = chunk
        optimizer.param_groups[0]["max_eval"] = 10 * chunk
        before = optimizer.state[parameters[0]].get("n_iter", 0)
        optimizer.step(closure)
        done = optimizer.state[parameters[0]]["n_iter"] - before
        iterations += done
        bar.update(done)
        if done == 0:
            # The gradient is exactly zero at the current point.
            return iterations, True
        # The last recorded value may be a line-search trial; evaluate the accepted
        # point, which the next step then takes from the cache.
        current = -float(closure().detach())
        if previous is not None and current - previous < tol * max(1.0, abs(current)):
            return iterations, True
        previous = current
    return iterations, False


class _NewtonPoint(NamedTuple):
    """Objective terms, latents, prior score and relative gradient at one ``W``."""

    weight: torch.Tensor
    terms: tuple[float, float, float]
    latents: torch.Tensor
    score: torch.Tensor
    gradient: torch.Tensor


def _run_newton(
    objective, unmixing_map, prior_module, inputs, lr, max_iter, tol, history, bar
):
    r"""Maximize the LDM objective by relative Newton steps ``W <- (I + t E) W``.

    Every evaluation runs :class:`~ldm_pyro.objective.LDMObjective` forward and
    backward once, on ``z = x W^T`` as a leaf tensor. The gradient with respect
    to ``z`` is the prior score ``d log P / dz`` over ``N``, and the gradient with
    respect to ``W`` is that of the entropy term, so the relative gradient is

    .. math::

        G = \frac{\partial F}{\partial W} W^\top
          = -\langle \psi(z)\, z^\top \rangle
            + \frac{\partial \hat H}{\partial W} W^\top,
        \qquad \psi = -\frac{d \log p}{d z}.

    ``E`` solves the block-diagonal approximation of the Hessian of ``-F`` used
    by Picard (Ablin, Cardoso and Gramfort, "Faster independent component
    analysis by preconditioning with Hessian approximations", IEEE Trans. Signal
    Processing 66(15), 2018, arXiv 1706.08171): for ``i != j`` the pair
    ``(E_ij, E_ji)`` has the block ``[[h_ij, 1], [1, h_ji]]`` with
    :math:`h_{ij} = \langle\psi'(z_i)\rangle \langle z_j^2\rangle`, its smaller
    eigenvalue raised to ``1e-2``. The diagonal takes a Newton step on
    ``log(<psi(z_i) z_i> / q_i)`` in the log-scale of row ``i`` (``q_i`` is the
    entropy part of ``G_ii``, 1 for a square ``W`` without ridge), which is exact
    in one step for the power-law priors (Laplace, Gaussian, generalized normal).
    ``psi'`` is a one-sided finite difference of the prior score with step 0.1
    times the root mean square of each latent, on at most
    :data:`_CURVATURE_ROWS` evenly spaced rows, so a non-smooth prior such as the
    Laplace density gets a smoothed curvature. A backtracking line search halves
    ``t`` from ``lr`` until the exact objective rises.
    """
    parameter = unmixing_map.weight
    identity = torch.eye(parameter.shape[0], dtype=parameter.dtype)
    samples = inputs.shape[0]
    stride = max(1, math.ceil(samples / _CURVATURE_ROWS))

    def evaluate(weight: torch.Tensor) -> _NewtonPoint:
        with torch.no_grad():
            parameter.copy_(weight)
        parameter.grad = None
        latents = (inputs @ weight.T).requires_grad_()
        terms = objective(latents)
        _record(history, terms)
        terms.objective.backward()
        with torch.no_grad():
            gradient = latents.grad.T @ latents.detach() + parameter.grad @ weight.T
        return _NewtonPoint(
            weight,
            tuple(float(term.detach()) for term in terms),
            latents.detach(),
            latents.grad * samples,
            gradient,
        )

    # NOTE: fit_ica with this optimizer takes 5x to 11x FastICA's time in
    # benchmarks/bench_ica.py (2-core CPU, float64, docs/benchmarks.md): one
    # LDMObjective evaluation costs 2 to 4 FastICA iterations, and D=50 needs 23
    # iterations where FastICA needs 10.
    current = evaluate(parameter.detach().clone())
    iterations = 0
    converged = False
    while iterations < max_iter:
        if not bool(current.gradient.abs().max() > 0):
            # The relative gradient is exactly zero at the current point.
            converged = True
            break
        search = _newton_direction(current, prior_module, stride)
        accepted = _line_search(evaluate, current, search, identity, lr)
        if accepted is None:
            # No step along the Newton direction raises F in floating point, so
            # the fit sits at a maximum (for the Laplace prior, on a kink).
            logger.info("fit_ica: the line search found no ascent step; stopping")
            converged = True
            break
        rise = accepted.terms[0] - current.terms[0]
        current = accepted
        iterations += 1
        bar.update(1)
        if rise < tol * max(1.0, abs(current.terms[0])):
            converged = True
            break

    with torch.no_grad():
        parameter.copy_(current.weight)
    if history["objective"][-1] != current.terms[0]:
        # The last evaluation was a rejected line-search trial; end the history
        # with the terms at the returned W.
        for key, value in zip(
            ("objective", "alignment", "entropy"), current.terms, strict=True
        ):
            history[key].append(value)
    return iterations, converged


def _newton_direction(point, prior_module, stride):
    """Return the approximate Newton direction ``E`` of :func:`_run_newton`."""
    latents = point.latents[::stride]
    score = point.score[::stride]
    squares = latents.square()
    mean_squares = point.latents.square().mean(dim=0)
    step = _SCORE_STEP * mean_squares.sqrt().clamp_min(1e-12)
    shifted = (latents + step).requires_grad_()
    with torch.enable_grad():
        log_density = prior_module(shifted).log_prob(shifted).sum()
        (shifted_score,) = torch.autograd.grad(log_density, shifted)
    # psi' = -(d score / dz), from the score at z and at z + step.
    slope = (score - shifted_score) / step
    off_diagonal = slope.mean(dim=0).unsqueeze(1) * mean_squares
    transposed = off_diagonal.T

    # Solve [[h_ij, 1], [1, h_ji]] [e_ij, e_ji] = [g_ij, g_ji] for every pair
    # after raising the smaller eigenvalue of the block to the floor.
    smallest = 0.5 * (
        off_diagonal + transposed - ((off_diagonal - transposed).square() + 4.0).sqrt()
    )
    shift = (_NEWTON_FLOOR - smallest).clamp_min(0.0)
    first = off_diagonal + shift
    second = transposed + shift
    gradient = point.gradient
    search = (second * gradient - gradient.T) / (first * second - 1.0)

    # Diagonal: Newton step on log(<psi z> / q) in the log-scale of each row.
    moment = -(point.score * point.latents).mean(dim=0)
    entropy_part = gradient.diagonal() + moment
    bend = (slope * squares).mean(dim=0)
    valid = (moment > 0) & (entropy_part > 0)
    log_step = (
        -torch.log(moment.clamp_min(1e-300) / entropy_part.clamp_min(1e-300))
        * moment
        / (bend + moment).clamp_min(_NEWTON_FLOOR)
    )
    fallback = gradient.diagonal() / (bend + 1.0).clamp_min(_NEWTON_FLOOR)
    search.diagonal().copy_(torch.where(valid, torch.expm1(log_step), fallback))
    return search


def _line_search(evaluate, current, search, identity, lr):
    """Return the first ``(I + t E) W`` with a higher objective, halving ``t``.

    Starts at ``t = lr`` and returns ``None`` after :data:`_NEWTON_HALVINGS`
    trials without a rise. Trials with a singular or non-finite ``W`` count as
    failed.
    """
    size = lr
    for _ in range(_NEWTON_HALVINGS):
        update = identity + size * search
        sign, _ = torch.linalg.slogdet(update)
        if float(sign) != 0.0:
            weight = update @ current.weight
            if bool(torch.isfinite(weight).all()):
                candidate = evaluate(weight)
                if candidate.terms[0] > current.terms[0]:
                    return candidate
        size *= 0.5
    return None


def _run_gradient(
    objective,
    unmixing_map,
    inputs,
    parameters,
    name,
    lr,
    max_iter,
    tol,
    batch_size,
    generator,
    history,
    bar,
):
    if name == "adam":
        optimizer = torch.optim.Adam(parameters, lr=lr)
    else:
        optimizer = torch.optim.SGD(parameters, lr=lr)
    # Halve the step size when the objective stops rising for 20 iterations.
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=20
    )
    samples = inputs.shape[0]
    patience = 10
    quiet = 0
    previous = -math.inf
    for iteration in range(1, max_iter + 1):
        if batch_size is None:
            optimizer.zero_grad()
            terms = _evaluate(objective, unmixing_map, inputs, history)
            (-terms.objective).backward()
            optimizer.step()
            value = float(terms.objective.detach())
        else:
            order = torch.randperm(samples, generator=generator)
            totals = torch.zeros(3, dtype=torch.float64)
            batches = 0
            for begin in range(0, samples, batch_size):
                batch = inputs[order[begin : begin + batch_size]]
                optimizer.zero_grad()
                terms = _evaluate(objective, unmixing_map, batch)
                (-terms.objective).backward()
                optimizer.step()
                totals += torch.tensor(
                    [float(t.detach()) for t in terms], dtype=torch.float64
                )
                batches += 1
            means = (totals / batches).tolist()
            for key, mean in zip(
                ("objective", "alignment", "entropy"), means, strict=True
            ):
                history[key].append(mean)
            value = means[0]
        schedule.step(value)
        bar.update(1)
        small = abs(value - previous) < tol * max(1.0, abs(value))
        quiet = quiet + 1 if small else 0
        previous = value
        if quiet >= patience:
            return iteration, True
    return max_iter, False


def _choose_optimizer(optimizer, linear, unmixing_map, prior_module) -> str:
    """Resolve ``optimizer=None`` and check that Newton applies to this fit."""
    reasons = []
    if linear != "unmixing":
        reasons.append(f"linear={linear!r} (Newton needs linear='unmixing')")
    if unmixing_map.in_features != unmixing_map.out_features:
        reasons.append(
            f"a non-square {unmixing_map.out_features}x{unmixing_map.in_features} W "
            "(relative steps cannot leave its row space)"
        )
    trainable = [
        name for name, value in prior_module.named_parameters() if value.requires_grad
    ]
    if trainable:
        reasons.append(
            f"trainable prior parameters {trainable} (Newton updates W only)"
        )
    if optimizer is None:
        return "lbfgs" if reasons else "newton"
    if optimizer == "newton" and reasons:
        raise ValueError(
            f"optimizer='newton' does not apply to {'; '.join(reasons)}; pass "
            "optimizer='lbfgs' or optimizer=None"
        )
    return optimizer


def _check_options(
    *, optimizer, linear, dtype, max_iter, tol, batch_size, center, whiten, lr
):
    if linear not in LINEAR_MAPS:
        raise ValueError(f"linear must be one of {LINEAR_MAPS}, got {linear!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if lr is not None and (not math.isfinite(lr) or lr <= 0):
        raise ValueError(f"lr must be a finite number > 0 or None, got {lr!r}")
    if batch_size is not None:
        if optimizer not in ("adam", "sgd"):
            raise ValueError(
                f"batch_size applies to optimizer='adam' or 'sgd', got "
                f"optimizer={optimizer!r}; Newton and L-BFGS are full batch, so "
                "drop batch_size or pass optimizer='adam' or 'sgd'"
            )
        if (
            isinstance(batch_size, bool)
            or int(batch_size) != batch_size
            or batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer or None, got {batch_size!r}"
            )
    if whiten and not center:
        raise ValueError(
            "whiten=True needs centred data; set center=True or whiten=False"
        )
    return {"dtype": _DTYPES[dtype]}


def _as_data(X, dtype) -> torch.Tensor:
    data = torch.as_tensor(
        X.detach() if isinstance(X, torch.Tensor) else np.asarray(X), dtype=dtype
    )
    if data.dim() != 2:
        raise ValueError(
            f"X must have 2 dimensions (N samples, n mixtures), got shape "
            f"{tuple(data.shape)}"
        )
    if not bool(torch.isfinite(data).all()):
        bad = int((~torch.isfinite(data)).sum())
        raise ValueError(
            f"X contains {bad} non-finite values (NaN or Inf); clean or drop those "
            "samples"
        )
    samples, features = data.shape
    if samples <= features:
        raise ValueError(
            f"X has {samples} samples for {features} mixtures; ICA needs more "
            "samples than mixtures"
        )
    return data


def _check_components(components, features, whiten) -> int:
    if components is None:
        return features
    if isinstance(components, bool) or int(components) != components or components < 1:
        raise ValueError(
            f"components must be a positive integer or None, got {components!r}"
        )
    if whiten and components > features:
        raise ValueError(
            f"components={components} exceeds the {features} mixtures; whitening "
            "keeps at most n principal components, so lower components or set "
            "whiten=False"
        )
    return int(components)


def _whitening_matrix(centred: torch.Tensor, components: int) -> torch.Tensor:
    covariance = centred.T @ centred / centred.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = torch.argsort(eigenvalues, descending=True)[:components]
    kept = eigenvalues[order]
    floor = 1e-12 * float(eigenvalues.abs().max())
    if float(kept.min()) <= floor:
        raise ValueError(
            f"the mixtures are rank deficient: the covariance has "
            f"{int((eigenvalues > floor).sum())} nonzero eigenvalues but "
            f"components={components}; lower components"
        )
    return eigenvectors[:, order].T / kept.sqrt().unsqueeze(1)


def plot_ica(
    mixtures: np.ndarray | torch.Tensor,
    recovered: np.ndarray | torch.Tensor,
    true: np.ndarray | torch.Tensor | None = None,
    *,
    image_shape: tuple[int, int] | None = None,
    samples: int = 500,
):
    """Plot mixed, recovered and (optionally) true sources side by side.

    With ``true`` the recovered sources are reordered and sign-flipped to their
    best match (largest absolute correlation, Hungarian matching) and scaled to
    the true standard deviation, so the columns are comparable. The figure is
    built without pyplot and so works with any backend, including Agg.

    Args:
        mixtures: ``(N, n)`` mixtures.
        recovered: ``(N, D)`` recovered sources.
        true: ``(N, D)`` true sources, or ``None``.
        image_shape: ``(height, width)`` with ``height * width == N`` to show each
            signal as an image; otherwise the first ``samples`` values are plotted
            as time series.
        samples: number of leading samples in the time-series plots.

    Returns:
        ``matplotlib.figure.Figure`` with one row per signal and one column per
        kind of signal.
    """
    from matplotlib.figure import Figure
    from scipy.optimize import linear_sum_assignment

    columns = {"mixed": _as_array(mixtures), "recovered": _as_array(recovered)}
    if true is not None:
        reference = _as_array(true)
        estimate = columns["recovered"]
        if reference.shape != estimate.shape:
            raise ValueError(
                f"true and recovered must have the same shape, got "
                f"{reference.shape} and {estimate.shape}"
            )
        correlation = np.corrcoef(estimate.T, reference.T)[
            : estimate.shape[1], estimate.shape[1] :
        ]
        rows, matched = linear_sum_assignment(np.abs(correlation), maximize=True)
        aligned = np.empty_like(reference)
        for row, column in zip(rows, matched, strict=True):
            sign = np.sign(correlation[row, column]) or 1.0
            signal = estimate[:, row] - estimate[:, row].mean()
            scale = reference[:, column].std() / max(signal.std(), 1e-300)
            aligned[:, column] = sign * scale * signal
        columns["recovered"] = aligned
        columns["true"] = reference
    length = columns["mixed"].shape[0]
    if image_shape is not None and image_shape[0] * image_shape[1] != length:
        raise ValueError(
            f"image_shape {tuple(image_shape)} has {image_shape[0] * image_shape[1]} "
            f"pixels but there are {length} samples; pass the crop shape"
        )
    rows_count = max(array.shape[1] for array in columns.values())
    figure = Figure(
        figsize=(3.2 * len(columns), 2.4 * rows_count), layout="constrained"
    )
    axes = figure.subplots(rows_count, len(columns), squeeze=False)
    for column_index, (title, array) in enumerate(columns.items()):
        for row_index in range(rows_count):
            axis = axes[row_index, column_index]
            if row_index >= array.shape[1]:
                axis.set_axis_off()
                continue
            signal = array[:, row_index]
            if image_shape is not None:
                axis.imshow(signal.reshape(image_shape), cmap="gray")
                axis.set_axis_off()
            else:
                axis.plot(signal[:samples], linewidth=0.8)
            axis.set_title(f"{title} {row_index + 1}", fontsize=9)
    return figure


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"signals must have shape (N, D), got shape {array.shape}")
    return array
