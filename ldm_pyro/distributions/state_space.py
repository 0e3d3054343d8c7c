r"""Linear-Gaussian state-space distribution over observed sequences ``z_{1:T}``."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints

from .._validation import check_tensor
from ..ops.kalman import KalmanFilterResult, kalman_filter, parallel_kalman_filter

METHODS = {"parallel": parallel_kalman_filter, "sequential": kalman_filter}


class LinearGaussianStateSpace(TorchDistribution):
    r"""Distribution of ``z_{1:T}`` under a linear-Gaussian state-space model.

    .. math::

        h_0 \sim N(\mu_0, P_0), \quad
        h_t = A (h_{t-1} - b) + b + \epsilon_t, \quad
        z_t = D h_t + \eta_t,

        \log p(z_{1:T}) = \sum_{t=1}^{T} \log N(z_t;\ D h_{t|t-1}, \Sigma_{e,t}),

    with :math:`\epsilon_t \sim N(0, \Sigma_A)` and
    :math:`\eta_t \sim N(0, \Sigma_{D,t})`. The initial distribution describes
    :math:`h_0` BEFORE the first transition, so :math:`z_1` is scored under the
    prediction from :math:`h_0` (the convention of Pyro's ``GaussianHMM``).
    ``log_prob`` is the exact sequence log-likelihood, computed by the Kalman
    filter of :mod:`ldm_pyro.ops.kalman`.

    With ``detach_targets=True``, ``log_prob`` returns the stop-gradient LDM
    alignment :math:`\sum_t \log N(SG[z_t];\ D h_{t|t-1}, \Sigma_{e,t})`: its value
    equals the log-likelihood, but no gradient flows through the scored
    :math:`z_t`. Gradients still reach every :math:`z_s` with :math:`s < t`
    through the filtered states, and the model parameters through the predictive
    means and covariances.

    Args:
        A: transition matrix, ``(..., S, S)``.
        b: fixed point of the mean dynamics, ``(..., S)``.
        D: observation matrix, ``(..., L, S)``.
        Sigma_A: transition noise covariance, ``(..., S, S)``.
        Sigma_D: observation noise covariance, ``(..., L, L)``, or per step
            ``(..., T, L, L)`` when ``per_step_noise`` is true.
        init_mean: mean of ``h_0`` before the first transition, ``(..., S)``.
        init_cov: covariance of ``h_0`` before the first transition,
            ``(..., S, S)``.
        num_steps: sequence length ``T >= 2``; may be left out when
            ``per_step_noise`` is true.
        per_step_noise: read the third-to-last axis of ``Sigma_D`` as time.
        detach_targets: score ``SG[z_t]`` (the stop-gradient form).
        method: ``"parallel"`` (associative scan, the default) or
            ``"sequential"`` (one step at a time); both compute the same values.
        max_spectral_radius: reject ``A`` whose spectral radius exceeds this
            value, because the predicted covariances then grow without bound over
            long sequences; ``None`` disables the check.
        validate_args: check the support of values passed to ``log_prob``.

    Raises:
        ValueError: for NaN or Inf parameters, ``T < 2``, shapes that do not
            match, noise covariances that are not positive definite, or ``A``
            with spectral radius above ``max_spectral_radius``; and in
            ``log_prob`` for values with NaN or the wrong latent dimension.

    Shapes:
        ``event_shape == (T, L)``. ``batch_shape`` is the broadcast batch shape of
        all parameters (``Sigma_D``'s without its time axis). ``log_prob`` takes
        values of shape ``sample_shape + batch_shape + (T, L)`` (batch dimensions
        broadcast) and returns ``sample_shape + batch_shape``.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(
        self,
        A: torch.Tensor,
        b: torch.Tensor,
        D: torch.Tensor,
        Sigma_A: torch.Tensor,
        Sigma_D: torch.Tensor,
        init_mean: torch.Tensor,
        init_cov: torch.Tensor,
        num_steps: int | None = None,
        *,
        per_step_noise: bool = False,
        detach_targets: bool = False,
        method: str = "parallel",
        max_spectral_radius: float | None = 1.02,
        validate_args=None,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        names = ("A", "b", "D", "Sigma_A", "Sigma_D", "init_mean", "init_cov")
        values = (A, b, D, Sigma_A, Sigma_D, init_mean, init_cov)
        for name, value in zip(names, values, strict=True):
            check_tensor(name, value)
            if not bool(torch.isfinite(value.detach()).all()):
                raise ValueError(
                    f"{name} contains NaN or Inf; check the parameters (lower the "
                    "learning rate or enable gradient clipping when they are learned)"
                )
        for name, value in zip(names, values, strict=True):
            need = 1 if name in ("b", "init_mean") else 2
            if value.dim() < need:
                raise ValueError(
                    f"{name} needs at least {need} dimensions, got shape "
                    f"{tuple(value.shape)}"
                )
        state_dim = D.shape[-1]
        obs_dim = D.shape[-2]
        if per_step_noise:
            if Sigma_D.dim() < 3:
                raise ValueError(
                    "per_step_noise=True needs Sigma_D of shape (..., T, L, L), got "
                    f"shape {tuple(Sigma_D.shape)}"
                )
            steps_in_noise = Sigma_D.shape[-3]
            if num_steps is not None and num_steps != steps_in_noise:
                raise ValueError(
                    f"num_steps={num_steps} does not match the time axis of the "
                    f"per-step Sigma_D of shape {tuple(Sigma_D.shape)}"
                )
            num_steps = steps_in_noise
            noise_batch = Sigma_D.shape[:-3]
        else:
            if num_steps is None:
                raise ValueError(
                    "num_steps is missing; pass the sequence length T, or a per-step "
                    "Sigma_D with per_step_noise=True"
                )
            noise_batch = Sigma_D.shape[:-2]
        if int(num_steps) != num_steps or num_steps < 2:
            raise ValueError(
                f"the sequence length T must be an integer >= 2, got {num_steps!r}; "
                "a single step has no dynamics to score, so use a MultivariateNormal"
            )
        expected = {
            "A": (state_dim, state_dim),
            "Sigma_A": (state_dim, state_dim),
            "init_cov": (state_dim, state_dim),
            "Sigma_D": (obs_dim, obs_dim),
        }
        for name, value in zip(names, values, strict=True):
            if name in expected and value.shape[-2:] != expected[name]:
                raise ValueError(
                    f"{name} must end in shape {expected[name]} (S = {state_dim}, "
                    f"L = {obs_dim} from D of shape {tuple(D.shape)}), got shape "
                    f"{tuple(value.shape)}"
                )
            if name in ("b", "init_mean") and value.shape[-1] != state_dim:
                raise ValueError(
                    f"{name} must have last dimension S = {state_dim} (the columns "
                    f"of D), got shape {tuple(value.shape)}"
                )
        for name, value in (("Sigma_A", Sigma_A), ("Sigma_D", Sigma_D)):
            _check_positive_definite(name, value)
        _check_positive_definite("init_cov", init_cov, allow_singular=True)
        if max_spectral_radius is not None:
            _check_spectral_radius(A, float(max_spectral_radius))
        try:
            batch_shape = torch.broadcast_shapes(
                A.shape[:-2],
                b.shape[:-1],
                D.shape[:-2],
                Sigma_A.shape[:-2],
                noise_batch,
                init_mean.shape[:-1],
                init_cov.shape[:-2],
            )
        except RuntimeError as error:
            raise ValueError(
                "the batch dimensions of the parameters do not broadcast: "
                + ", ".join(
                    f"{name} {tuple(value.shape)}"
                    for name, value in zip(names, values, strict=True)
                )
            ) from error
        self.A, self.b, self.D = A, b, D
        self.Sigma_A, self.Sigma_D = Sigma_A, Sigma_D
        self.init_mean, self.init_cov = init_mean, init_cov
        self.per_step_noise = bool(per_step_noise)
        self.detach_targets = bool(detach_targets)
        self.method = method
        self.max_spectral_radius = max_spectral_radius
        self.state_dim, self.obs_dim = state_dim, obs_dim
        super().__init__(
            batch_shape,
            torch.Size((int(num_steps), obs_dim)),
            validate_args=validate_args,
        )

    @property
    def num_steps(self) -> int:
        """The sequence length ``T``."""
        return self.event_shape[0]

    def filter(self, value: torch.Tensor) -> KalmanFilterResult:
        """Run the Kalman filter on ``value`` and return all its outputs.

        The initial distribution describes ``h_0`` before the first transition.

        Args:
            value: sequences of shape ``sample_shape + batch_shape + (T, L)``.

        Returns:
            The :class:`~ldm_pyro.ops.kalman.KalmanFilterResult`, with batch shape
            ``sample_shape + batch_shape``.
        """
        self._check_value(value)
        batch = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        value = value.expand(batch + self.event_shape)
        Sigma_D = self.Sigma_D
        if self.per_step_noise:
            # The filter reads Sigma_D as per step when it has one more
            # dimension than the observations.
            Sigma_D = Sigma_D.expand(batch + Sigma_D.shape[-3:])
        return METHODS[self.method](
            value,
            self.A,
            self.b,
            self.D,
            self.Sigma_A,
            Sigma_D,
            self.init_mean,
            self.init_cov,
            detach_targets=self.detach_targets,
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Return the sum over steps of the one-step log predictive densities.

        Args:
            value: sequences of shape ``sample_shape + batch_shape + (T, L)``.

        Returns:
            Log-densities in nats, shape ``sample_shape + batch_shape``.
        """
        return self.filter(value).log_prob.sum(-1)

    def _check_value(self, value) -> None:
        check_tensor("value", value)
        if value.dim() < 2 or value.shape[-2:] != self.event_shape:
            raise ValueError(
                f"value must have shape (..., T, L) = (..., {self.num_steps}, "
                f"{self.obs_dim}), got shape {tuple(value.shape)}; the latent "
                "dimension L must match the rows of D"
            )
        if not bool(torch.isfinite(value.detach()).all()):
            bad = int((~torch.isfinite(value.detach())).sum())
            raise ValueError(
                f"value contains {bad} NaN or Inf entries; check the encoder "
                "outputs (lower the learning rate or enable gradient clipping)"
            )
        if self._validate_args:
            self._validate_sample(value)

    def expand(self, batch_shape, _instance=None):
        """Return the distribution with its parameters broadcast to ``batch_shape``.

        The parameters were validated when this distribution was built, so the
        expanded copy (views, no new memory) skips the checks. Pyro expands the
        distribution of every observed site inside a plate, once per call.
        """
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(LinearGaussianStateSpace, _instance)

        def grow(value, event_dims):
            return value.expand(batch_shape + value.shape[value.dim() - event_dims :])

        new.A, new.b, new.D = grow(self.A, 2), grow(self.b, 1), grow(self.D, 2)
        new.Sigma_A = grow(self.Sigma_A, 2)
        new.Sigma_D = grow(self.Sigma_D, 3 if self.per_step_noise else 2)
        new.init_mean = grow(self.init_mean, 1)
        new.init_cov = grow(self.init_cov, 2)
        for name in (
            "per_step_noise",
            "detach_targets",
            "method",
            "max_spectral_radius",
            "state_dim",
            "obs_dim",
        ):
            setattr(new, name, getattr(self, name))
        super(LinearGaussianStateSpace, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Draw sequences ``z_{1:T}`` by simulating the model forward."""
        shape = torch.Size(sample_shape) + self.batch_shape
        return _simulate(self, shape)


def _simulate(dist: LinearGaussianStateSpace, shape: torch.Size) -> torch.Tensor:
    """Simulate ``z_{1:T}`` with batch ``shape`` from the model."""
    with torch.no_grad():
        state_dim = dist.state_dim
        dtype, device = dist.A.dtype, dist.A.device
        # init_cov may be singular (a known h_0), so draw through its eigenvectors.
        eigenvalues, eigenvectors = torch.linalg.eigh(dist.init_cov)
        init_scale = eigenvectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(-2)
        noise = torch.randn(shape + (state_dim,), dtype=dtype, device=device)
        h = dist.init_mean + (init_scale @ noise.unsqueeze(-1)).squeeze(-1)
        transition_scale = torch.linalg.cholesky(dist.Sigma_A)
        observation_scale = torch.linalg.cholesky(dist.Sigma_D)
        steps = []
        for t in range(dist.num_steps):
            noise = torch.randn(shape + (state_dim,), dtype=dtype, device=device)
            h = (dist.A @ (h - dist.b).unsqueeze(-1)).squeeze(-1) + dist.b
            h = h + (transition_scale @ noise.unsqueeze(-1)).squeeze(-1)
            scale = observation_scale
            if dist.per_step_noise:
                scale = observation_scale[..., t, :, :]
            noise = torch.randn(shape + (dist.obs_dim,), dtype=dtype, device=device)
            z = (dist.D @ h.unsqueeze(-1)).squeeze(-1)
            steps.append(z + (scale @ noise.unsqueeze(-1)).squeeze(-1))
        return torch.stack(steps, dim=-2)


def _check_positive_definite(
    name: str, matrix: torch.Tensor, allow_singular: bool = False
) -> None:
    """Raise ``ValueError`` unless ``matrix`` is symmetric positive (semi)definite."""
    matrix = matrix.detach()
    scale = matrix.abs().amax().clamp_min(torch.finfo(matrix.dtype).tiny)
    asymmetry = (matrix - matrix.transpose(-1, -2)).abs().amax()
    if bool(asymmetry > 1e-6 * scale):
        raise ValueError(
            f"{name} must be symmetric, got a maximum asymmetry of "
            f"{float(asymmetry):.3g}; pass (M + M^T) / 2"
        )
    if allow_singular:
        smallest = torch.linalg.eigvalsh(matrix).amin()
        tolerance = -1e-10 * float(scale)
        if float(smallest) < tolerance:
            raise ValueError(
                f"{name} must be positive semidefinite, got a smallest eigenvalue "
                f"of {float(smallest):.3g}"
            )
        return
    _, info = torch.linalg.cholesky_ex(matrix)
    if bool((info != 0).any()):
        raise ValueError(
            f"{name} must be positive definite (all noise variances > 0), but "
            f"{int((info != 0).sum())} of its matrices are not; check for zero or "
            "negative variances"
        )


def _check_spectral_radius(A: torch.Tensor, cap: float) -> None:
    """Raise ``ValueError`` if a transition matrix has spectral radius above ``cap``."""
    radius = torch.linalg.eigvals(A.detach()).abs().amax()
    # A relative slack accepts matrices rescaled exactly to the cap, whose
    # eigenvalues come back with round-off of about 1e3 eps in float32.
    slack = max(1e-6, 1e3 * torch.finfo(radius.dtype).eps)
    if float(radius) > cap * (1 + slack):
        raise ValueError(
            f"A has spectral radius {float(radius):.4g}, above "
            f"max_spectral_radius={cap}; the dynamics are unstable. Rescale A "
            "(KalmanDynamics does so before each forward pass) or raise the cap"
        )
