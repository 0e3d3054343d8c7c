r"""Kalman-filter latent dynamics and observation-noise networks.

:class:`KalmanDynamics` is a Pyro program that scores encoder outputs
``z`` of shape ``(B, T, L)`` under a learned linear-Gaussian state-space model. It
observes one site, ``"z"``, so :class:`~ldm_pyro.objective.LDMObjective` with
``form="single"`` averages the sequence log-likelihood over the ``B`` sequences.

- Stop-gradient (LDM) form: ``KalmanDynamics(..., detach_targets=True)`` with
  :class:`~ldm_pyro.entropy.PlugInEntropy`, whose entropy term is zero.
- kNN (MI) form: ``detach_targets=False`` with a kNN entropy estimator; the
  objective's ``"single"`` form multiplies the single-step entropy by ``T``.

:class:`NoiseDetector` and :class:`NoiseMLP` map frames to per-step observation
noise variances ``g_t`` that the encode step passes to the program as the keyword
argument ``noise_var``.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional

from .._validation import check_finite, check_positive, check_tensor
from ..distributions.state_space import LinearGaussianStateSpace

NOISE_MODES = ("fixed", "learned", "input")


class KalmanDynamics(PyroModule):
    r"""Linear-Gaussian latent dynamics, scored with a Kalman filter.

    .. math::

        h_0 \sim N(0, I), \quad
        h_t = A (h_{t-1} - b) + b + \epsilon_t, \quad
        \epsilon_t \sim N(0, e^{s} \operatorname{diag}(e^{a})),

        z_t = D h_t + \eta_t, \quad
        \eta_t \sim N(0, \Sigma_{D,t}), \quad D = [I_L \mid 0],

    with :math:`\Sigma_D = e^{s} \operatorname{diag}(e^{q})` (``noise="fixed"``
    keeps ``q = 0``; ``"learned"`` learns ``q``) or, with ``noise="input"``,
    :math:`\Sigma_{D,t} = e^{s} (\operatorname{diag}(g_t) + 10^{-5} I)` for the
    per-step variances ``g_t`` passed as ``noise_var``. The distribution of
    :math:`h_0` describes the state BEFORE the first transition (Pyro's
    ``GaussianHMM`` convention), so :math:`z_1` is scored under the prediction
    from :math:`h_0`. The site log-density is
    :math:`\sum_{t=1}^T \log N(z_t; D h_{t|t-1}, \Sigma_{e,t})`, with
    :math:`SG[z_t]` as the scored value when ``detach_targets`` is true.

    ``A`` starts at :math:`I + 0.1 N(0, 1)` divided by :math:`1.1 \rho(A)`
    (spectral radius ``1/1.1``). Before each forward pass, an ``A`` with spectral
    radius above ``spectral_radius_cap`` is rescaled to the cap without gradient.
    ``b``, ``a`` and ``q`` start at zero and ``s`` at one. Every parameter is an
    ``nn.Parameter`` of this module, so the training loop puts them in the
    latent-model group with its learning-rate multiplier.

    Args:
        latent_dim: observation dimension ``L`` (the encoder output size).
        state_dim: hidden state dimension ``S >= L``.
        noise: ``"fixed"``, ``"learned"`` or ``"input"`` (see above).
        detach_targets: score ``SG[z_t]`` (the stop-gradient LDM form).
        spectral_radius_cap: largest spectral radius that ``A`` keeps.
        method: ``"parallel"`` or ``"sequential"`` Kalman filter.
        generator: random generator for the initial ``A``.

    Shapes:
        ``z``: ``(B, T, L)`` with ``T >= 2``; ``noise_var``: ``(B, T, L)``.

    References:
        F. A. Mikulasch and F. Zenke, "Understanding Self-Supervised Learning via
        Latent Distribution Matching", ICML 2026, arXiv:2605.03517, Eq. 14-15.
    """

    def __init__(
        self,
        latent_dim: int,
        state_dim: int,
        *,
        noise: str = "fixed",
        detach_targets: bool = True,
        spectral_radius_cap: float = 1.02,
        method: str = "parallel",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if int(latent_dim) != latent_dim or latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
        if int(state_dim) != state_dim or state_dim < latent_dim:
            raise ValueError(
                f"state_dim must be an integer >= latent_dim = {latent_dim} because "
                f"D = [I_L | 0] observes the first L states, got {state_dim!r}"
            )
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        self.spectral_radius_cap = check_positive(
            "spectral_radius_cap", spectral_radius_cap
        )
        self.latent_dim, self.state_dim = int(latent_dim), int(state_dim)
        self.noise = noise
        self.detach_targets = bool(detach_targets)
        self.method = method
        dtype = torch.get_default_dtype()
        A = torch.eye(state_dim) + 0.1 * torch.randn(
            state_dim, state_dim, generator=generator
        )
        A = A / (1.1 * spectral_radius(A))
        self.A = nn.Parameter(A.to(dtype))
        self.b = nn.Parameter(torch.zeros(state_dim, dtype=dtype))
        self.log_scale = nn.Parameter(torch.ones((), dtype=dtype))
        self.log_transition_var = nn.Parameter(torch.zeros(state_dim, dtype=dtype))
        observation = torch.zeros(latent_dim, dtype=dtype)
        if noise == "learned":
            self.log_observation_var = nn.Parameter(observation)
        else:
            self.register_buffer("log_observation_var", observation)
        self.register_buffer(
            "D", torch.eye(latent_dim, state_dim, dtype=dtype), persistent=False
        )

    @torch.no_grad()
    def clamp_spectral_radius(self) -> float:
        """Rescale ``A`` in place to the cap if its spectral radius exceeds it.

        Returns:
            The spectral radius before rescaling.
        """
        A = self.A
        radius = float(spectral_radius(A))
        if radius > self.spectral_radius_cap:
            A.mul_(self.spectral_radius_cap / radius)
        return radius

    def distribution(
        self, num_steps: int, noise_var: torch.Tensor | None = None
    ) -> LinearGaussianStateSpace:
        """Return the state-space distribution over ``z_{1:T}``.

        Args:
            num_steps: sequence length ``T``.
            noise_var: per-step variances ``g_t`` of shape ``(B, T, L)``; required
                when ``noise="input"`` and rejected otherwise.
        """
        scale = self.log_scale.exp()
        A = self.A
        dtype, device = A.dtype, A.device
        Sigma_A = torch.diag_embed(scale * self.log_transition_var.exp())
        init_mean = torch.zeros(self.state_dim, dtype=dtype, device=device)
        init_cov = torch.eye(self.state_dim, dtype=dtype, device=device)
        D = self.D.to(dtype)
        if self.noise == "input":
            if noise_var is None:
                raise ValueError(
                    "noise='input' needs the per-step variances: call the model "
                    "with noise_var of shape (B, T, L)"
                )
            check_tensor("noise_var", noise_var, ndim=3, last_dim=self.latent_dim)
            if noise_var.shape[1] != num_steps:
                raise ValueError(
                    f"noise_var must have T = {num_steps} steps, got shape "
                    f"{tuple(noise_var.shape)}"
                )
            check_finite("noise_var", noise_var.detach())
            if bool((noise_var.detach() < 0).any()):
                raise ValueError(
                    "noise_var must be >= 0; end the noise network with a "
                    "non-negative activation (ReLU or Softplus)"
                )
            Sigma_D = scale * torch.diag_embed(noise_var + 1e-5)
            return LinearGaussianStateSpace(
                A,
                self.b,
                D,
                Sigma_A,
                Sigma_D,
                init_mean,
                init_cov,
                num_steps,
                per_step_noise=True,
                detach_targets=self.detach_targets,
                method=self.method,
                max_spectral_radius=self.spectral_radius_cap,
            )
        if noise_var is not None:
            raise ValueError(
                f"noise_var is only used with noise='input', but noise={self.noise!r}"
            )
        Sigma_D = torch.diag_embed(scale * self.log_observation_var.exp())
        return LinearGaussianStateSpace(
            A,
            self.b,
            D,
            Sigma_A,
            Sigma_D,
            init_mean,
            init_cov,
            num_steps,
            detach_targets=self.detach_targets,
            method=self.method,
            max_spectral_radius=self.spectral_radius_cap,
        )

    def forward(self, z: torch.Tensor, noise_var: torch.Tensor | None = None) -> None:
        """Score the latent sequences ``z`` in the site ``"z"``.

        Args:
            z: encoder outputs of shape ``(B, T, L)``.
            noise_var: per-step observation variances ``(B, T, L)`` for
                ``noise="input"``.
        """
        check_tensor("z", z, ndim=3, last_dim=self.latent_dim)
        self.clamp_spectral_radius()
        dist = self.distribution(z.shape[1], noise_var)
        with pyro.plate("sequences", z.shape[0]):
            pyro.sample("z", dist, obs=z)

    def filter(self, z: torch.Tensor, noise_var: torch.Tensor | None = None):
        """Run the Kalman filter on ``z`` and return all its outputs.

        Returns:
            A :class:`~ldm_pyro.ops.kalman.KalmanFilterResult` whose
            ``filtered_mean`` ``h_{t|t}`` is the state used by probes.
        """
        check_tensor("z", z, ndim=3, last_dim=self.latent_dim)
        return self.distribution(z.shape[1], noise_var).filter(z)


def spectral_radius(matrix: torch.Tensor) -> torch.Tensor:
    """Return the largest absolute eigenvalue of a square matrix, without gradient."""
    return torch.linalg.eigvals(matrix.detach()).abs().amax()


class _PositiveLinear(nn.Module):
    """Linear layer with weights ``softplus(w) > 0``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.raw_weight = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.linear(x, functional.softplus(self.raw_weight), self.bias)


class NoiseDetector(nn.Module):
    r"""Frame-variance detector of the per-step observation noise.

    .. math::

        g(x) = W_2^{+} \operatorname{ReLU}(W_1^{+} (w \odot (x - \bar x))^2 + c_1)
            + c_2

    with an elementwise weight ``w``, the frame mean :math:`\bar x` over pixels,
    and positive weights :math:`W^{+} = \operatorname{softplus}(W)`. The output
    can be negative only through the bias ``c_2``, so it is passed through a
    ReLU to give variances ``g >= 0``.

    Args:
        num_pixels: pixels per frame.
        latent_dim: number of output variances ``L``.
        hidden: width of the hidden layer.

    Shapes:
        ``x``: ``(..., num_pixels)``; output ``(..., L)``.
    """

    def __init__(self, num_pixels: int, latent_dim: int, hidden: int = 16):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_pixels))
        self.hidden = _PositiveLinear(num_pixels, hidden)
        self.output = _PositiveLinear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-frame variances ``g >= 0`` of shape ``(..., L)``."""
        deviation = self.weight * (x - x.mean(-1, keepdim=True))
        return functional.relu(self.output(functional.relu(self.hidden(deviation**2))))


class NoiseMLP(nn.Module):
    """MLP of the per-step observation noise with a Softplus(beta=10) head.

    Two hidden ReLU layers, then a linear layer and ``softplus(., beta=10)`` so
    that the variances are positive.

    Args:
        num_pixels: pixels per frame.
        latent_dim: number of output variances ``L``.
        hidden: width of both hidden layers.

    Shapes:
        ``x``: ``(..., num_pixels)``; output ``(..., L)``.
    """

    def __init__(self, num_pixels: int, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_pixels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-frame variances ``g > 0`` of shape ``(..., L)``."""
        return functional.softplus(self.net(x), beta=10.0)
