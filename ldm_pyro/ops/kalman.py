r"""Kalman filter and Rauch-Tung-Striebel smoother, sequential and parallel-in-time.

The linear-Gaussian state-space model is

.. math::

    h_0 \sim N(\mu_0, P_0), \qquad
    h_t = A (h_{t-1} - b) + b + \epsilon_t, \quad \epsilon_t \sim N(0, \Sigma_A),

    z_t = D h_t + \eta_t, \quad \eta_t \sim N(0, \Sigma_{D,t}), \qquad t = 1, \dots, T.

The initial distribution describes :math:`h_0` BEFORE the first transition, so the
first observation :math:`z_1` is scored under the prediction from :math:`h_0` (the
convention of Pyro's ``GaussianHMM``). With :math:`h_{0|0} = \mu_0` and
:math:`P_{0|0} = P_0`, each step computes

.. math::

    h_{t|t-1} = A (h_{t-1|t-1} - b) + b, \qquad
    P_{t|t-1} = A P_{t-1|t-1} A^T + \Sigma_A,

    \hat z_t = D h_{t|t-1}, \qquad
    \Sigma_{e,t} = D P_{t|t-1} D^T + \Sigma_{D,t}, \qquad
    K_t = P_{t|t-1} D^T \Sigma_{e,t}^{-1},

    h_{t|t} = h_{t|t-1} + K_t (z_t - \hat z_t), \qquad
    P_{t|t} = (I - K_t D) P_{t|t-1} (I - K_t D)^T + K_t \Sigma_{D,t} K_t^T,

and the one-step log predictive density
:math:`\log N(z_t; \hat z_t, \Sigma_{e,t})`. The covariance update is the Joseph
form, and every covariance is symmetrized after each update, so that covariances
stay positive definite over long sequences with nearly singular noise. Innovation
covariances are factored with Cholesky; no function forms an explicit inverse.

Shapes:
    ``S`` is the state dimension, ``L`` the observation dimension, ``T`` the number
    of steps and ``...`` batch dimensions, usually ``(B,)`` for ``B`` sequences.

    - ``z``: ``(..., T, L)``.
    - ``A``: ``(..., S, S)``; ``b``: ``(..., S)``; ``D``: ``(..., L, S)``.
    - ``Sigma_A``: ``(..., S, S)``.
    - ``Sigma_D``: constant ``(..., L, L)``, or per step ``(..., T, L, L)``. A
      ``Sigma_D`` with exactly ``z.dim() + 1`` dimensions is read as per step, so
      give ``z`` the full batch shape when the per-step noise has batch dimensions
      that ``z`` lacks. Diagonal noise is passed as ``torch.diag_embed(variances)``.
    - ``init_mean``: ``(..., S)``; ``init_cov``: ``(..., S, S)``, the distribution
      of ``h_0`` before the first transition.

    Batch dimensions broadcast. Means and log-densities have the broadcast batch
    shape of all inputs. Covariances do not depend on ``z``, so they are computed
    for the broadcast batch shape of the covariance-related inputs only. They are
    returned expanded (without copying) to the full batch shape.

References:
    S. Sarkka and A. F. Garcia-Fernandez, "Temporal Parallelization of Bayesian
    Smoothers", IEEE Transactions on Automatic Control 66(1), 2021,
    arXiv:1905.13002.

    H. E. Rauch, F. Tung and C. T. Striebel, "Maximum likelihood estimates of
    linear dynamic systems", AIAA Journal 3(8), 1965.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_tensor
from .linalg import check_cholesky_info, mvn_log_prob_cholesky, symmetrize


class KalmanFilterResult(NamedTuple):
    """Outputs of a Kalman filter over ``t = 1..T``.

    The initial distribution of ``h_0`` is given before the first transition, so
    index ``0`` along the time axis is step ``t = 1``.

    Shapes:
        ``...`` is the broadcast batch shape of all inputs.
    """

    #: Filtered state means ``h_{t|t}``, shape ``(..., T, S)``.
    filtered_mean: torch.Tensor
    #: Filtered state covariances ``P_{t|t}``, shape ``(..., T, S, S)``.
    filtered_cov: torch.Tensor
    #: Predicted state means ``h_{t|t-1}``, shape ``(..., T, S)``.
    predicted_mean: torch.Tensor
    #: Predicted state covariances ``P_{t|t-1}``, shape ``(..., T, S, S)``.
    predicted_cov: torch.Tensor
    #: Predictive observation means ``D h_{t|t-1}``, shape ``(..., T, L)``.
    predictive_mean: torch.Tensor
    #: Innovation covariances ``D P_{t|t-1} D^T + Sigma_D,t``, shape ``(..., T, L, L)``.
    innovation_cov: torch.Tensor
    #: One-step log predictive densities ``log N(z_t; D h_{t|t-1}, Sigma_e,t)`` in
    #: nats, shape ``(..., T)``; with ``detach_targets`` the scored value is
    #: ``SG[z_t]``.
    log_prob: torch.Tensor


class KalmanSmootherResult(NamedTuple):
    """Outputs of the Rauch-Tung-Striebel smoother over ``t = 1..T``."""

    #: Smoothed state means ``h_{t|T}``, shape ``(..., T, S)``.
    smoothed_mean: torch.Tensor
    #: Smoothed state covariances ``P_{t|T}``, shape ``(..., T, S, S)``.
    smoothed_cov: torch.Tensor
    #: Smoother gains ``G_t = P_{t|t} A^T P_{t+1|t}^{-1}`` for ``t = 1..T-1``,
    #: shape ``(..., T - 1, S, S)``.
    gain: torch.Tensor


class _Model(NamedTuple):
    """Validated inputs with the batch shapes that the filters need."""

    z: torch.Tensor
    A: torch.Tensor
    b: torch.Tensor
    D: torch.Tensor
    Sigma_A: torch.Tensor
    Sigma_D: torch.Tensor  # (..., L, L), or (..., T, L, L) when per_step
    init_mean: torch.Tensor
    init_cov: torch.Tensor
    per_step: bool
    batch_shape: torch.Size
    cov_batch_shape: torch.Size


def _broadcast(names: tuple[str, ...], shapes: tuple[torch.Size, ...]) -> torch.Size:
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError as error:
        listed = ", ".join(
            f"{name}: {tuple(shape)}" for name, shape in zip(names, shapes, strict=True)
        )
        raise ValueError(
            f"batch dimensions of the Kalman filter inputs do not broadcast "
            f"({listed}); "
            "give every input the same leading batch shape or leave it out"
        ) from error


def _prepare(z, A, b, D, Sigma_A, Sigma_D, init_mean, init_cov) -> _Model:
    check_tensor("z", z)
    if z.dim() < 2 or z.shape[-2] < 1:
        raise ValueError(
            f"z must have shape (..., T, L) with T >= 1, got shape {tuple(z.shape)}"
        )
    num_steps, obs_dim = z.shape[-2:]
    check_tensor("D", D)
    if D.dim() < 2 or D.shape[-2] != obs_dim:
        raise ValueError(
            f"D must have shape (..., L, S) with L = {obs_dim} (the last dimension "
            f"of z), got shape {tuple(D.shape)}"
        )
    state_dim = D.shape[-1]
    for name, value in (("A", A), ("Sigma_A", Sigma_A), ("init_cov", init_cov)):
        check_tensor(name, value)
        if value.dim() < 2 or value.shape[-2:] != (state_dim, state_dim):
            raise ValueError(
                f"{name} must have shape (..., S, S) with S = {state_dim} (the "
                f"columns of D), got shape {tuple(value.shape)}"
            )
    for name, value in (("b", b), ("init_mean", init_mean)):
        check_tensor(name, value)
        if value.dim() < 1 or value.shape[-1] != state_dim:
            raise ValueError(
                f"{name} must have shape (..., S) with S = {state_dim} (the columns "
                f"of D), got shape {tuple(value.shape)}"
            )
    check_tensor("Sigma_D", Sigma_D)
    if Sigma_D.dim() < 2 or Sigma_D.shape[-2:] != (obs_dim, obs_dim):
        raise ValueError(
            f"Sigma_D must have shape (..., L, L) or (..., T, L, L) with L = "
            f"{obs_dim}, got shape {tuple(Sigma_D.shape)}"
        )
    per_step = Sigma_D.dim() == z.dim() + 1
    if per_step and Sigma_D.shape[-3] != num_steps:
        raise ValueError(
            f"per-step Sigma_D must have shape (..., T, L, L) with T = {num_steps} "
            f"(the steps of z), got shape {tuple(Sigma_D.shape)}"
        )
    noise_batch = Sigma_D.shape[:-3] if per_step else Sigma_D.shape[:-2]
    cov_names = ("A", "D", "Sigma_A", "Sigma_D", "init_cov")
    cov_shapes = (
        A.shape[:-2],
        D.shape[:-2],
        Sigma_A.shape[:-2],
        noise_batch,
        init_cov.shape[:-2],
    )
    cov_batch_shape = _broadcast(cov_names, cov_shapes)
    batch_shape = _broadcast(
        cov_names + ("z", "b", "init_mean"),
        cov_shapes + (z.shape[:-2], b.shape[:-1], init_mean.shape[:-1]),
    )
    return _Model(
        z,
        A,
        b,
        D,
        Sigma_A,
        Sigma_D,
        init_mean,
        init_cov,
        per_step,
        batch_shape,
        cov_batch_shape,
    )


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def _update(mean, cov, D, Sigma_D, z):
    """Run one measurement update; return filtered mean, covariance and status."""
    cov_Dt = cov @ D.transpose(-1, -2)
    innovation_cov = symmetrize(D @ cov_Dt + Sigma_D)
    factor, info = torch.linalg.cholesky_ex(innovation_cov)
    # K^T = Sigma_e^{-1} D P, solved with the Cholesky factor of Sigma_e.
    gain = torch.cholesky_solve(cov_Dt.transpose(-1, -2), factor).transpose(-1, -2)
    filtered_mean = mean + _matvec(gain, z - _matvec(D, mean))
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    residual_map = eye - gain @ D
    filtered_cov = symmetrize(
        residual_map @ cov @ residual_map.transpose(-1, -2)
        + gain @ Sigma_D @ gain.transpose(-1, -2)
    )
    return filtered_mean, filtered_cov, info


def _predict_all(m: _Model, filtered_mean, filtered_cov):
    """Predict ``h_{t|t-1}`` and ``P_{t|t-1}`` for all steps from the filtered ones."""
    previous_mean = torch.cat(
        [
            m.init_mean.unsqueeze(-2).expand(filtered_mean.shape[:-2] + (1, -1)),
            filtered_mean[..., :-1, :],
        ],
        dim=-2,
    )
    previous_cov = torch.cat(
        [
            m.init_cov.unsqueeze(-3).expand(filtered_cov.shape[:-3] + (1, -1, -1)),
            filtered_cov[..., :-1, :, :],
        ],
        dim=-3,
    )
    A = m.A.unsqueeze(-3)
    b = m.b.unsqueeze(-2)
    predicted_mean = _matvec(A, previous_mean - b) + b
    predicted_cov = symmetrize(
        A @ previous_cov @ A.transpose(-1, -2) + m.Sigma_A.unsqueeze(-3)
    )
    return predicted_mean, predicted_cov


def _observation_noise(m: _Model) -> torch.Tensor:
    """Return ``Sigma_D`` with a time axis: ``(..., T, L, L)`` or ``(..., 1, L, L)``."""
    return m.Sigma_D if m.per_step else m.Sigma_D.unsqueeze(-3)


def _score(m: _Model, predicted_mean, predicted_cov, detach_targets: bool):
    """Return predictive means, innovation covariances and log predictive densities."""
    D = m.D.unsqueeze(-3)
    predictive_mean = _matvec(D, predicted_mean)
    innovation_cov = symmetrize(
        D @ predicted_cov @ D.transpose(-1, -2) + _observation_noise(m)
    )
    factor, info = torch.linalg.cholesky_ex(innovation_cov)
    _check_steps("innovation covariance", info)
    target = m.z.detach() if detach_targets else m.z
    log_prob = mvn_log_prob_cholesky(target - predictive_mean, factor)
    return predictive_mean, innovation_cov, log_prob


def _check_steps(name: str, info: torch.Tensor, first_step: int = 1) -> None:
    """Raise with the first failing step when ``info`` has a time axis last.

    ``first_step`` is the step ``t`` of index 0 along that axis.
    """
    failed = info != 0
    if bool(failed.any()):
        index = int(failed.reshape(-1, failed.shape[-1]).any(0).nonzero()[0])
        step = index + first_step
        check_cholesky_info(name, info, context=f"(first at step t = {step})")


def _result(m, filtered_mean, filtered_cov, predicted_mean, predicted_cov, scored):
    predictive_mean, innovation_cov, log_prob = scored
    batch = m.batch_shape
    num_steps = m.z.shape[-2]

    def expand(cov):
        return cov.expand(batch + (num_steps,) + cov.shape[-2:])

    def expand_vector(vector):
        return vector.expand(batch + vector.shape[-2:])

    return KalmanFilterResult(
        expand_vector(filtered_mean),
        expand(filtered_cov),
        expand_vector(predicted_mean),
        expand(predicted_cov),
        expand_vector(predictive_mean),
        expand(innovation_cov),
        log_prob.expand(batch + (num_steps,)),
    )


def kalman_filter(
    z: torch.Tensor,
    A: torch.Tensor,
    b: torch.Tensor,
    D: torch.Tensor,
    Sigma_A: torch.Tensor,
    Sigma_D: torch.Tensor,
    init_mean: torch.Tensor,
    init_cov: torch.Tensor,
    *,
    detach_targets: bool = False,
) -> KalmanFilterResult:
    r"""Run the Kalman filter step by step.

    The model and the recursion are given in the module docstring. ``init_mean``
    and ``init_cov`` describe ``h_0`` BEFORE the first transition (the convention of
    Pyro's ``GaussianHMM``), so ``z_1`` is scored under
    ``N(D (A (mu_0 - b) + b), D (A P_0 A^T + Sigma_A) D^T + Sigma_D,1)``.

    With ``detach_targets=True`` step ``t`` scores the stop-gradient target

    .. math::

        \log N(SG[z_t];\ D h_{t|t-1}, \Sigma_{e,t}),

    while the filter update still uses the undetached ``z_t``, so gradients reach
    the encoder through the past observations and the filter parameters through
    the predictive mean and covariance. Summed over ``t`` this is the
    stop-gradient LDM alignment of a Kalman latent model.

    The covariance recursion runs on the batch shape of the covariance-related
    inputs only, so a batch of ``B`` sequences that share parameters pays for one
    covariance recursion.

    Args:
        z: observations ``z_{1:T}``.
        A: transition matrix.
        b: fixed point of the mean dynamics.
        D: observation matrix.
        Sigma_A: transition noise covariance.
        Sigma_D: observation noise covariance, constant or per step.
        init_mean: mean of ``h_0``, before the first transition.
        init_cov: covariance of ``h_0``, before the first transition.
        detach_targets: score ``SG[z_t]`` in the log-densities.

    Returns:
        A :class:`KalmanFilterResult`.

    Raises:
        TypeError: if an input is not a tensor.
        ValueError: if the shapes do not match (see the module docstring), or an
            innovation covariance is not positive definite.

    Shapes:
        See the module docstring.
    """
    m = _prepare(z, A, b, D, Sigma_A, Sigma_D, init_mean, init_cov)
    num_steps = z.shape[-2]
    A_t = A.transpose(-1, -2)
    state_dim = A.shape[-1]
    mean = init_mean.expand(m.batch_shape + (state_dim,))
    cov = init_cov.expand(m.cov_batch_shape + (state_dim, state_dim))
    means, covs, predicted_means, predicted_covs = [], [], [], []
    for t in range(num_steps):
        predicted_mean = _matvec(A, mean - b) + b
        predicted_cov = symmetrize(A @ cov @ A_t + Sigma_A)
        noise = Sigma_D[..., t, :, :] if m.per_step else Sigma_D
        mean, cov, _ = _update(predicted_mean, predicted_cov, D, noise, z[..., t, :])
        means.append(mean)
        covs.append(cov)
        predicted_means.append(predicted_mean)
        predicted_covs.append(predicted_cov)
    # The innovation Cholesky factors are recomputed for all steps at once in
    # _score, which also reports the first step whose covariance is not PD.
    predicted_mean = torch.stack(predicted_means, dim=-2)
    predicted_cov = torch.stack(predicted_covs, dim=-3)
    scored = _score(m, predicted_mean, predicted_cov, detach_targets)
    return _result(
        m,
        torch.stack(means, dim=-2),
        torch.stack(covs, dim=-3),
        predicted_mean,
        predicted_cov,
        scored,
    )


def _elements(m: _Model):
    r"""Build the scan elements ``(A_k, b_k, C_k, eta_k, J_k)`` of each step.

    Element 1 is the exact filtered distribution of ``h_1`` (``A_1 = 0``,
    ``J_1 = 0``, ``eta_1 = 0``). Element ``k > 1`` is the conditional of ``h_k``
    given ``h_{k-1}`` and ``z_k`` (``A_k``, ``b_k``, ``C_k``) together with the
    information form of the likelihood of ``z_k`` given ``h_{k-1}`` (``eta_k``,
    ``J_k``), following Sarkka and Garcia-Fernandez (2021).
    """
    z, A, b, D = m.z, m.A, m.b, m.D
    Sigma_A = m.Sigma_A
    state_dim = A.shape[-1]
    num_steps = z.shape[-2]
    batch, cov_batch = m.batch_shape, m.cov_batch_shape
    noise = _observation_noise(m)
    eye = torch.eye(state_dim, dtype=z.dtype, device=z.device)

    # Element 1: predict from h_0, then update with z_1.
    predicted_mean = _matvec(A, m.init_mean - b) + b
    predicted_cov = symmetrize(A @ m.init_cov @ A.transpose(-1, -2) + Sigma_A)
    first_mean, first_cov, _ = _update(
        predicted_mean, predicted_cov, D, noise[..., 0, :, :], z[..., 0, :]
    )

    # Contiguous copies: batched matmul and LU are much slower on expanded
    # (stride 0) batch dimensions.
    def matrices(value, steps):
        return value.expand(cov_batch + (steps, state_dim, state_dim)).contiguous()

    def vectors(value, steps):
        return value.expand(batch + (steps, state_dim)).contiguous()

    zero_matrix = z.new_zeros(()).expand(cov_batch + (1, state_dim, state_dim))
    zero_vector = z.new_zeros(()).expand(batch + (1, state_dim))
    first = (
        zero_matrix,
        vectors(first_mean.unsqueeze(-2), 1),
        matrices(first_cov.unsqueeze(-3), 1),
        zero_vector,
        zero_matrix,
    )
    if num_steps == 1:
        return first

    # Elements 2..T. Their matrices are the same for every step unless Sigma_D
    # varies per step; only b_k and eta_k depend on the observations.
    rest = num_steps - 1
    step_noise = noise[..., 1:, :, :] if m.per_step else noise
    A_ = A.unsqueeze(-3)
    D_ = D.unsqueeze(-3)
    Sigma_A_ = Sigma_A.unsqueeze(-3)
    offset = b - _matvec(A, b)  # u = (I - A) b, so that h_k = A h_{k-1} + u + eps
    innovation_cov = symmetrize(D_ @ Sigma_A_ @ D_.transpose(-1, -2) + step_noise)
    factor, info = torch.linalg.cholesky_ex(innovation_cov)
    _check_steps("innovation covariance of the parallel scan elements", info, 2)
    gain = torch.cholesky_solve(D_ @ Sigma_A_, factor).transpose(-1, -2)
    residual_map = eye - gain @ D_
    transition = residual_map @ A_
    cov = symmetrize(
        residual_map @ Sigma_A_ @ residual_map.transpose(-1, -2)
        + gain @ step_noise @ gain.transpose(-1, -2)
    )
    DA = D_ @ A_
    common = torch.broadcast_shapes(factor.shape[:-2], DA.shape[:-2])
    whitened = torch.linalg.solve_triangular(
        factor.expand(common + factor.shape[-2:]),
        DA.expand(common + DA.shape[-2:]),
        upper=False,
    )
    information = whitened.transpose(-1, -2) @ whitened
    residual = z[..., 1:, :] - _matvec(D, offset).unsqueeze(-2)
    mean = offset.unsqueeze(-2) + _matvec(gain, residual)
    precision_residual = torch.cholesky_solve(residual.unsqueeze(-1), factor)
    precision_residual = precision_residual.squeeze(-1)
    information_vector = _matvec(DA.transpose(-1, -2), precision_residual)
    rest_elements = (
        matrices(transition, rest),
        vectors(mean, rest),
        matrices(cov, rest),
        vectors(information_vector, rest),
        matrices(information, rest),
    )
    return tuple(
        torch.cat([head, tail], dim=_time_dim(i))
        for i, (head, tail) in enumerate(zip(first, rest_elements, strict=True))
    )


def _time_dim(index: int) -> int:
    """Time axis of scan component ``index``: matrices at -3, vectors at -2."""
    return -3 if index % 2 == 0 else -2


def _slice(elements, start=None, stop=None, step=None):
    window = slice(start, stop, step)
    return tuple(
        value[..., window, :, :] if _time_dim(i) == -3 else value[..., window, :]
        for i, value in enumerate(elements)
    )


def _concat(first, second):
    return tuple(
        torch.cat([a, b], dim=_time_dim(i))
        for i, (a, b) in enumerate(zip(first, second, strict=True))
    )


def _interleave(even, odd):
    """Merge ``even`` (indices 0, 2, ...) and ``odd`` (1, 3, ...) along time."""
    num_odd = odd[0].shape[-3]
    extra = even[0].shape[-3] - num_odd
    paired = _slice(even, stop=num_odd)
    merged = []
    for i, (a, b) in enumerate(zip(paired, odd, strict=True)):
        dim = _time_dim(i)
        stacked = torch.stack([a, b], dim=dim)
        merged.append(stacked.flatten(dim - 1, dim))
    merged = tuple(merged)
    if extra:
        merged = _concat(merged, _slice(even, start=num_odd))
    return merged


def _combine(earlier, later):
    r"""Compose two filtering elements: ``earlier`` applies first.

    With :math:`M = I + C_i J_j` (Sarkka and Garcia-Fernandez, 2021):

    .. math::

        A_{ij} = A_j M^{-1} A_i, \quad
        b_{ij} = A_j M^{-1} (b_i + C_i \eta_j) + b_j, \quad
        C_{ij} = A_j M^{-1} C_i A_j^T + C_j,

        \eta_{ij} = A_i^T M^{-T} (\eta_j - J_j b_i) + \eta_i, \quad
        J_{ij} = A_i^T M^{-T} J_j A_i + J_i.

    ``M`` is not symmetric; one batched solve with ``M^T`` and ``M`` gives both
    products. Only matrices are solved, on the batch shape of the covariances.
    """
    A_i, b_i, C_i, eta_i, J_i = earlier
    A_j, b_j, C_j, eta_j, J_j = later
    eye = torch.eye(A_i.shape[-1], dtype=A_i.dtype, device=A_i.device)
    M = eye + C_i @ J_j
    # One batched solve of M^T X = A_j^T and M Y = A_i gives forward = A_j M^{-1}
    # and backward = A_i^T M^{-T}. For small S the cost per call dominates, so one
    # call (and one backward) is faster than an LU factorization and two solves.
    shape = torch.broadcast_shapes(M.shape, A_i.shape, A_j.shape)
    solved = torch.linalg.solve(
        torch.stack([M.transpose(-1, -2).expand(shape), M.expand(shape)]),
        torch.stack([A_j.transpose(-1, -2).expand(shape), A_i.expand(shape)]),
    ).transpose(-1, -2)
    forward, backward = solved[0], solved[1]
    A_ij = forward @ A_i
    C_ij = symmetrize(forward @ C_i @ A_j.transpose(-1, -2) + C_j)
    J_ij = symmetrize(backward @ J_j @ A_i + J_i)
    b_ij = _matvec(forward, b_i + _matvec(C_i, eta_j)) + b_j
    eta_ij = _matvec(backward, eta_j - _matvec(J_j, b_i)) + eta_i
    return A_ij, b_ij, C_ij, eta_ij, J_ij


def _associative_scan(elements):
    """Return all prefix compositions ``e_1 * ... * e_k`` along time.

    The odd-even recursion combines pairs, scans the half-length sequence and
    fills in the even positions, so it performs about ``2 T`` combinations in
    ``2 log2(T)`` batched calls.
    """
    num_steps = elements[0].shape[-3]
    if num_steps < 2:
        return elements
    pairs = _combine(
        _slice(elements, stop=num_steps - 1, step=2), _slice(elements, 1, None, 2)
    )
    odd = _associative_scan(pairs)
    even_later = _slice(elements, 2, None, 2)
    num_even_later = even_later[0].shape[-3]
    even = _combine(_slice(odd, stop=num_even_later), even_later)
    even = _concat(_slice(elements, stop=1), even)
    return _interleave(even, odd)


def parallel_kalman_filter(
    z: torch.Tensor,
    A: torch.Tensor,
    b: torch.Tensor,
    D: torch.Tensor,
    Sigma_A: torch.Tensor,
    Sigma_D: torch.Tensor,
    init_mean: torch.Tensor,
    init_cov: torch.Tensor,
    *,
    detach_targets: bool = False,
) -> KalmanFilterResult:
    r"""Run the Kalman filter as a parallel-in-time associative scan.

    Same model, arguments and outputs as :func:`kalman_filter`: ``init_mean`` and
    ``init_cov`` describe ``h_0`` BEFORE the first transition (Pyro's
    ``GaussianHMM`` convention), and ``detach_targets=True`` scores ``SG[z_t]``
    while the filtered states use the undetached ``z_t``. Each step becomes an
    element of an associative operation (Sarkka and Garcia-Fernandez, 2021),
    and the filtered means and covariances are its prefix
    compositions, computed in ``O(log T)`` batched calls instead of ``T`` Python
    steps. The predicted states, innovation covariances and log-densities are
    then computed for all steps at once.

    The elements for ``t >= 2`` need only ``D Sigma_A D^T + Sigma_D,t`` to be
    positive definite, so a singular ``Sigma_A`` is allowed as in the sequential
    filter. The scan performs about twice the floating-point work of the
    sequential filter. It is faster when per-step Python overhead dominates, as
    for small ``S`` and ``L`` (see ``benchmarks/bench_kalman.py``).

    Args:
        z: observations ``z_{1:T}``.
        A: transition matrix.
        b: fixed point of the mean dynamics.
        D: observation matrix.
        Sigma_A: transition noise covariance.
        Sigma_D: observation noise covariance, constant or per step.
        init_mean: mean of ``h_0``, before the first transition.
        init_cov: covariance of ``h_0``, before the first transition.
        detach_targets: score ``SG[z_t]`` in the log-densities.

    Returns:
        A :class:`KalmanFilterResult`.

    Raises:
        TypeError: if an input is not a tensor.
        ValueError: if the shapes do not match, or an innovation covariance is not
            positive definite.

    Shapes:
        See the module docstring.
    """
    m = _prepare(z, A, b, D, Sigma_A, Sigma_D, init_mean, init_cov)
    _, filtered_mean, filtered_cov, _, _ = _associative_scan(_elements(m))
    predicted_mean, predicted_cov = _predict_all(m, filtered_mean, filtered_cov)
    scored = _score(m, predicted_mean, predicted_cov, detach_targets)
    return _result(
        m, filtered_mean, filtered_cov, predicted_mean, predicted_cov, scored
    )


def rts_smoother(filtered: KalmanFilterResult, A: torch.Tensor) -> KalmanSmootherResult:
    r"""Run the Rauch-Tung-Striebel smoother backwards over a filter's output.

    .. math::

        G_t = P_{t|t} A^T P_{t+1|t}^{-1}, \qquad
        h_{t|T} = h_{t|t} + G_t (h_{t+1|T} - h_{t+1|t}),

        P_{t|T} = P_{t|t} + G_t (P_{t+1|T} - P_{t+1|t}) G_t^T,

    starting from :math:`h_{T|T}, P_{T|T}`. The offset ``b`` and the noise
    covariances enter only through the filter's predicted states, so the
    smoother needs ``A`` alone. The initial distribution of the filter describes
    ``h_0`` before the first transition; the smoother returns ``t = 1..T`` and not
    ``h_0``. The gains are computed for all steps at once with Cholesky solves of
    ``P_{t+1|t}``; only the backward recursion loops over time.

    Args:
        filtered: output of :func:`kalman_filter` or
            :func:`parallel_kalman_filter`.
        A: the transition matrix that the filter used, shape ``(..., S, S)``.

    Returns:
        A :class:`KalmanSmootherResult`.

    Raises:
        ValueError: if ``A`` does not match the state dimension, or a predicted
            covariance is not positive definite (for example a singular
            ``Sigma_A``).
    """
    check_tensor("A", A)
    state_dim = filtered.filtered_mean.shape[-1]
    if A.dim() < 2 or A.shape[-2:] != (state_dim, state_dim):
        raise ValueError(
            f"A must have shape (..., S, S) with S = {state_dim} (the state "
            f"dimension of the filter output), got shape {tuple(A.shape)}"
        )
    means = filtered.filtered_mean
    covs = filtered.filtered_cov
    num_steps = means.shape[-2]
    if num_steps == 1:
        return KalmanSmootherResult(means, covs, covs[..., :0, :, :])
    next_predicted_cov = filtered.predicted_cov[..., 1:, :, :]
    factor, info = torch.linalg.cholesky_ex(next_predicted_cov)
    _check_steps("predicted state covariance P_{t+1|t}", info)
    # G_t^T = P_{t+1|t}^{-1} A P_{t|t}
    cross = A.unsqueeze(-3) @ covs[..., :-1, :, :]
    gain = torch.cholesky_solve(cross, factor).transpose(-1, -2)
    predicted_mean = filtered.predicted_mean
    smoothed_mean = [means[..., -1, :]]
    smoothed_cov = [covs[..., -1, :, :]]
    for t in range(num_steps - 2, -1, -1):
        gain_t = gain[..., t, :, :]
        mean_change = smoothed_mean[-1] - predicted_mean[..., t + 1, :]
        cov_change = smoothed_cov[-1] - next_predicted_cov[..., t, :, :]
        smoothed_mean.append(means[..., t, :] + _matvec(gain_t, mean_change))
        smoothed_cov.append(
            symmetrize(
                covs[..., t, :, :] + gain_t @ cov_change @ gain_t.transpose(-1, -2)
            )
        )
    return KalmanSmootherResult(
        torch.stack(smoothed_mean[::-1], dim=-2),
        torch.stack(smoothed_cov[::-1], dim=-3),
        gain,
    )
