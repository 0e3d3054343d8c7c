r"""Neural predictors inside latent models: BYOL/SimSiam kernels and sequence models.

A predictor ``p`` is a network that belongs to the latent model, so its parameters
are in the latent-model optimizer group, which learns at ``latent_lr_multiplier``
times the encoder's rate. Two uses:

* :class:`PredictorKernel`: a paired-view conditional centred on the predictor
  output, :math:`P_\theta(z' | z) = K(z'; p(z))` (BYOL, SimSiam, the toy
  identifiability task).
* :class:`SequencePredictiveModel`: a sequence model
  :math:`\prod_{t=2}^T K(z_t; p(z_{<t}))` with a recurrent predictor
  :class:`RNNPredictor` (JEPA, CPC, the RNN model of the wobbly task).

``K`` is any alignment kernel of :mod:`ldm_pyro.latents.kernels` (Gaussian or von
Mises-Fisher), called with the predictions in place of the conditioning latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.nn import PyroModule
from torch import nn

from .._validation import check_tensor

RNN_CELLS = ("lstm", "gru")


def _check_dim(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_hidden(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, int | str) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a list of positive integers, got {value!r}; pass for "
            f"example {name}=[64]"
        )
    return tuple(_check_dim(f"{name}[{i}]", width) for i, width in enumerate(value))


def make_mlp(in_features: int, out_features: int, hidden: Sequence[int]) -> nn.Module:
    """Return ``Linear``-``ReLU`` blocks of widths ``hidden`` and a final ``Linear``."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def check_prediction(prediction: torch.Tensor, target: torch.Tensor, where: str):
    """Raise ``ValueError`` unless the predictor output has the target's shape."""
    if not isinstance(prediction, torch.Tensor):
        raise TypeError(
            f"{where} must return a torch.Tensor, got {type(prediction).__name__}"
        )
    if prediction.shape != target.shape:
        raise ValueError(
            f"{where} output must have the shape of the latents it predicts, "
            f"{tuple(target.shape)}, got {tuple(prediction.shape)}; make the "
            "predictor's output width equal to the latent dimension D"
        )
    return prediction


def make_kernel(
    conditional: str, *, concentration: float, scale: float, normalized: bool = True
):
    """Build the alignment kernel named ``conditional``.

    ``"vmf"`` and ``"gaussian"`` are the kernels of :mod:`ldm_pyro.latents.kernels`;
    ``"infonce"`` is :class:`~ldm_pyro.entropy.infonce.InfoNCEKernel`. The vMF
    kernel projects the predictions onto the unit sphere, because a predictor
    output need not have unit norm; ``normalized`` adds its normalizer.
    """
    from .kernels import GaussianKernel, VonMisesFisherKernel

    if conditional == "vmf":
        return VonMisesFisherKernel(
            concentration, normalized=normalized, normalize_inputs=True
        )
    if conditional == "gaussian":
        return GaussianKernel(scale)
    if conditional == "infonce":
        from ..entropy.infonce import InfoNCEKernel

        return InfoNCEKernel(concentration)
    raise ValueError(
        f"conditional must be 'vmf', 'gaussian' or 'infonce', got {conditional!r}"
    )


class PredictorKernel(PyroModule):
    r"""Conditional :math:`P_\theta(z' | z) = K(z'; p(z))` centred on an MLP predictor.

    .. math::

        \log P_\theta(z' | z) = \tau\, \hat p(z)^\top z' + \text{const}
        \qquad \text{(vMF, } \hat p = p / \lVert p \rVert)

        \log P_\theta(z' | z) = -\frac{\lVert z' - p(z) \rVert^2}{2 \sigma^2}
            - \frac{D}{2} \log 2 \pi \sigma^2 \qquad \text{(Gaussian)}

    With the empirical prior, a stop-gradient target site ``z_prime`` and the
    zero-valued plug-in entropy, the vMF form is BYOL and SimSiam: since
    :math:`\lVert \hat p - z' \rVert^2 = 2 - 2 \hat p^\top z'` for unit ``z'``,
    :math:`-\log P = \frac{\tau}{2} (\lVert \hat p - SG[z'] \rVert^2 - 2)
    - \log C_D(\tau)`; the normalizer is a constant for a fixed ``tau``.

    Args:
        dim: latent dimension ``D``, the predictor's input and output width.
        hidden: hidden widths of the MLP predictor (BYOL uses one hidden layer).
        conditional: ``"vmf"`` (on the sphere) or ``"gaussian"`` (on the plane).
        concentration: vMF concentration ``tau``.
        scale: Gaussian standard deviation ``sigma``.
        normalized: include the vMF normalizer :math:`\log C_D(\tau)`.
        predictor: a module to use in place of the MLP; it must map ``(N, D)``
            to ``(N, D)``.

    Shapes:
        ``z``: ``(N, D)``; the returned distribution has batch shape ``(N,)`` and
        event shape ``(D,)``.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64,),
        conditional: str = "vmf",
        concentration: float = 5.0,
        scale: float = 1.0,
        normalized: bool = True,
        predictor: nn.Module | None = None,
    ):
        super().__init__()
        self.dim = _check_dim("dim", dim)
        self.predictor = (
            predictor
            if predictor is not None
            else make_mlp(dim, dim, _check_hidden("hidden", hidden))
        )
        self.kernel = make_kernel(
            conditional,
            concentration=concentration,
            scale=scale,
            normalized=normalized,
        )

    def forward(self, z: torch.Tensor) -> TorchDistribution:
        """Return the conditional distribution of ``z'`` centred on ``p(z)``."""
        check_tensor("z", z, ndim=2, last_dim=self.dim)
        prediction = check_prediction(self.predictor(z), z, "PredictorKernel.predictor")
        return self.kernel(prediction)


class RNNPredictor(nn.Module):
    r"""Recurrent predictor :math:`p(z_{<t})`: an LSTM or GRU, then an MLP head.

    Output ``t`` is the prediction of ``z_{t+1}`` from ``z_1 .. z_t``.

    Args:
        dim: latent dimension ``D``.
        hidden_size: units of the recurrent layer (10 in the wobbly experiment).
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked recurrent layers.
        head: hidden widths of the MLP head (``[20, 20]`` in the wobbly
            experiment); ``[]`` is one linear layer.

    Shapes:
        Input ``(B, t, D)``; output ``(B, t, D)``.
    """

    def __init__(
        self,
        dim: int,
        hidden_size: int = 10,
        cell: str = "lstm",
        num_layers: int = 1,
        head: Sequence[int] = (20, 20),
    ):
        super().__init__()
        self.dim = _check_dim("dim", dim)
        _check_dim("hidden_size", hidden_size)
        _check_dim("num_layers", num_layers)
        if cell not in RNN_CELLS:
            raise ValueError(f"cell must be one of {RNN_CELLS}, got {cell!r}")
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = make_mlp(hidden_size, dim, _check_hidden("head", head))

    def forward(self, past: torch.Tensor) -> torch.Tensor:
        """Return one prediction per step of ``past``."""
        check_tensor("past", past, ndim=3, last_dim=self.dim)
        states, _ = self.rnn(past)
        return self.head(states)


class SequencePredictiveModel(PyroModule):
    r"""Predictive sequence model :math:`\prod_{t=2}^T K(z_t; p(z_{<t}))`.

    .. math::

        \log P_\theta(z_{2:T} | z_1) = \sum_{t=2}^{T} \log K(z_t; p(z_{<t}))

    As a Pyro program::

        with pyro.plate("sequences", B, dim=-2), pyro.plate("steps", T - 1, dim=-1):
            pyro.sample("z_next", kernel(p(z[:, :-1])), obs=z[:, 1:])

    The first step is not scored: its prior is the empirical marginal
    :math:`R(z_1)`, whose log-density cancels its entropy. With
    ``LDMObjective(form="single")`` and the kNN estimator this is the loss
    :math:`-\langle \sum_{t=2}^T \log N(z_t; p_{t-1}, I) \rangle - T H_{kNN}[z]` of
    the RNN predictive model (the public implementation's ``T H``, where Eq. 13
    with the empirical first step gives ``(T - 1) H``). With
    ``stop_gradient=["z_next"]`` and the plug-in entropy it is the JEPA objective
    :math:`-\sum_t \lVert SG[z_t] - p(z_{<t}) \rVert^2 / 2 \sigma^2`: the encoder
    learns only through the predictor inputs.

    Args:
        predictor: maps past latents ``(B, t, D)`` to predictions ``(B, t, D)``,
            for example :class:`RNNPredictor`.
        kernel: alignment kernel called with the predictions, for example
            :class:`~ldm_pyro.latents.GaussianKernel` (JEPA, the RNN model) or a
            vMF kernel (CPC on the sphere).

    Shapes:
        ``z``: ``(B, T, D)`` with ``T >= 2``.
    """

    def __init__(self, predictor: nn.Module, kernel: nn.Module):
        super().__init__()
        self.predictor = predictor
        self.kernel = kernel

    def forward(self, z: torch.Tensor) -> None:
        """Score ``z_2 .. z_T`` at the site ``"z_next"``."""
        check_tensor("z", z, ndim=3)
        batch, steps, _ = z.shape
        if steps < 2:
            raise ValueError(
                f"z must hold sequences of at least 2 steps, because the predictor "
                f"needs one past step per target; got shape {tuple(z.shape)}. Use "
                "longer sequences (data sequence length >= 2)"
            )
        target = z[:, 1:]
        prediction = check_prediction(
            self.predictor(z[:, :-1]), target, "SequencePredictiveModel.predictor"
        )
        with (
            pyro.plate("sequences", batch, dim=-2),
            pyro.plate("steps", steps - 1, dim=-1),
        ):
            pyro.sample("z_next", self.kernel(prediction), obs=target)

    @torch.no_grad()
    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Return the predictions of ``z_2 .. z_T``, shape ``(B, T - 1, D)``."""
        check_tensor("z", z, ndim=3)
        return self.predictor(z[:, :-1])
