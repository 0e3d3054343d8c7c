r"""Encoders ``z = f(x)``: small backbones, projector heads and a factory.

An :class:`Encoder` chains a backbone ``g`` and an optional projector ``h``:

.. math::

    z = h(g(x)), \qquad \text{or} \qquad z = h(g(x)) / \lVert h(g(x)) \rVert_2

with the second form when ``normalize=True`` (latents on the unit sphere in
:math:`\mathbb{R}^D`). Probes read the backbone features :math:`g(x)`, the usual
input of a linear evaluation. :func:`build_encoder` takes only scalars and lists,
so a TOML method spec can describe the encoder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from ._validation import check_tensor

logger = logging.getLogger(__name__)

ENCODER_KINDS = ("mlp", "cnn")


def _check_width(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be a positive integer, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_widths(name: str, value: object, *, allow_empty: bool = True) -> tuple:
    if isinstance(value, int | str) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a list of positive integers, got "
            f"{type(value).__name__} {value!r}; pass for example {name}=[256, 256]"
        )
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{name} must list at least one width, got {list(value)}")
    return tuple(_check_width(f"{name}[{i}]", v) for i, v in enumerate(value))


def _mlp_layers(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    batch_norm: bool,
    final_activation: bool,
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU())
        width = size
    layers.append(nn.Linear(width, out_features))
    if final_activation:
        layers.append(nn.ReLU())
    return layers


class MLPEncoder(nn.Module):
    """Multilayer perceptron on flattened inputs: ``Linear``-``ReLU`` blocks.

    Args:
        in_features: number of input features after flattening, ``prod(x.shape[1:])``.
        out_features: output width.
        hidden: widths of the hidden layers, each followed by a ReLU.
        final_activation: apply a ReLU to the output, as for backbone features
            that feed a projector.

    Shapes:
        Input ``(N, ...)`` with ``in_features`` elements per sample; output
        ``(N, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (256, 256),
        final_activation: bool = False,
    ):
        super().__init__()
        self.in_features = _check_width("in_features", in_features)
        self.out_features = _check_width("out_features", out_features)
        self.hidden = _check_widths("hidden", hidden)
        self.net = nn.Sequential(
            *_mlp_layers(
                in_features,
                self.hidden,
                out_features,
                batch_norm=False,
                final_activation=final_activation,
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten each sample and apply the network."""
        check_tensor("x", x)
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(
                f"x must have shape (N, ...) with {self.in_features} features per "
                f"sample, got shape {tuple(x.shape)}; set in_features to "
                "prod(x.shape[1:])"
            )
        return self.net(x.reshape(x.shape[0], -1))


class SmallCNN(nn.Module):
    """Small convolutional network for small images such as 8x8 digits.

    Each entry of ``channels`` adds a 3x3 convolution (padding 1) and a ReLU. The
    first keeps the resolution and each later one halves it with stride 2, so
    ``channels=(32, 64)`` maps an 8x8 image to 4x4. An adaptive average pool
    reduces the maps to ``pool_size x pool_size``, so the output layer does not
    depend on the image size. A linear layer maps the
    flattened maps to ``out_features``.

    Args:
        in_channels: number of input channels ``C``.
        out_features: output width.
        channels: output channels of the convolution layers.
        pool_size: side of the pooled feature maps.
        final_activation: apply a ReLU to the output.

    Shapes:
        Input ``(N, C, H, W)``; output ``(N, out_features)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int = 128,
        *,
        channels: Sequence[int] = (32, 64),
        pool_size: int = 2,
        final_activation: bool = False,
    ):
        super().__init__()
        self.in_channels = _check_width("in_channels", in_channels)
        self.out_features = _check_width("out_features", out_features)
        self.channels = _check_widths("channels", channels, allow_empty=False)
        self.pool_size = _check_width("pool_size", pool_size)
        layers: list[nn.Module] = []
        width = in_channels
        for index, size in enumerate(self.channels):
            stride = 1 if index == 0 else 2
            layers.append(nn.Conv2d(width, size, 3, stride=stride, padding=1))
            layers.append(nn.ReLU())
            width = size
        layers.append(nn.AdaptiveAvgPool2d(pool_size))
        layers.append(nn.Flatten())
        layers.append(nn.Linear(width * pool_size * pool_size, out_features))
        if final_activation:
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolutions, the pooling and the output layer."""
        check_tensor("x", x, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels in dimension 1, got shape "
                f"{tuple(x.shape)}; set in_channels={x.shape[1]}"
            )
        return self.net(x)


class ProjectorHead(nn.Module):
    """MLP projector from backbone features to latents.

    ``Linear`` - optional ``BatchNorm1d`` - ``ReLU`` for each hidden width, then an
    output ``Linear`` without activation. VICReg uses ``batch_norm=True``; the
    plane and sphere projectors of the LDM image experiments use none.

    Args:
        in_features: width of the backbone features.
        out_features: latent dimension ``D``.
        hidden: widths of the hidden layers; empty for a single linear map.
        batch_norm: insert ``BatchNorm1d`` after each hidden linear layer.

    Shapes:
        Input ``(N, in_features)``; output ``(N, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (256,),
        batch_norm: bool = False,
    ):
        super().__init__()
        self.in_features = _check_width("in_features", in_features)
        self.out_features = _check_width("out_features", out_features)
        self.hidden = _check_widths("hidden", hidden)
        self.net = nn.Sequential(
            *_mlp_layers(
                in_features,
                self.hidden,
                out_features,
                batch_norm=bool(batch_norm),
                final_activation=False,
            )
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Map features ``h`` to latents."""
        check_tensor("h", h, ndim=2, last_dim=self.in_features)
        return self.net(h)


class Encoder(nn.Module):
    r"""Backbone, optional projector and optional projection onto the unit sphere.

    Args:
        backbone: module mapping inputs to features ``(N, F)``.
        projector: module mapping features to latents ``(N, D)``; ``None`` uses
            the features as latents.
        normalize: divide each latent by its Euclidean norm, so that it lies on the
            unit sphere in :math:`\mathbb{R}^D` (``D >= 2``).

    Shapes:
        :meth:`forward` returns ``(N, D)``; :meth:`features` returns ``(N, F)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module | None = None,
        *,
        normalize: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.normalize = bool(normalize)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the backbone features ``g(x)``, the input of linear probes."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the latents ``z``, unit-norm rows when ``normalize`` is set."""
        z = self.backbone(x)
        if self.projector is not None:
            z = self.projector(z)
        if self.normalize:
            if z.shape[-1] < 2:
                raise ValueError(
                    f"normalize=True needs latents of dimension D >= 2, got shape "
                    f"{tuple(z.shape)}; the unit sphere in R^1 is two points"
                )
            z = functional.normalize(z, dim=-1)
        return z


def build_encoder(
    kind: str,
    input_shape: Sequence[int],
    latent_dim: int,
    *,
    hidden: Sequence[int] | None = None,
    projector: Sequence[int] | None = None,
    feature_dim: int = 128,
    batch_norm: bool = False,
    normalize: bool = False,
) -> Encoder:
    """Build an :class:`Encoder` from simple settings, as a TOML spec gives them.

    Without a projector the backbone outputs the latents directly (no final
    activation) and :meth:`Encoder.features` returns the latents before
    normalization. With a projector the backbone outputs ReLU features of width
    ``feature_dim`` and a :class:`ProjectorHead` maps them to ``latent_dim``.

    Args:
        kind: ``"mlp"`` (:class:`MLPEncoder` on flattened inputs) or ``"cnn"``
            (:class:`SmallCNN`, which needs ``input_shape = (C, H, W)``).
        input_shape: shape of one sample without the batch dimension.
        latent_dim: latent dimension ``D``.
        hidden: hidden widths of the MLP (default ``[256, 256]``) or channels of
            the CNN (default ``[32, 64]``).
        projector: hidden widths of the projector head (``[]`` for one linear
            layer), or ``None`` for no projector.
        feature_dim: width of the backbone features when a projector is used.
        batch_norm: use ``BatchNorm1d`` in the projector's hidden layers.
        normalize: put the latents on the unit sphere.

    Returns:
        The encoder, with freshly initialized weights from the global torch
        random state.

    Raises:
        ValueError: for an unknown ``kind`` (the message lists the choices) or
            invalid shapes and widths.
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"kind must be one of {ENCODER_KINDS}, got {kind!r}")
    shape = _check_widths("input_shape", input_shape, allow_empty=False)
    latent_dim = _check_width("latent_dim", latent_dim)
    if normalize and latent_dim < 2:
        raise ValueError(
            f"normalize=True needs latent_dim >= 2, got {latent_dim}; the unit "
            "sphere in R^1 is two points"
        )
    has_projector = projector is not None
    if has_projector:
        out_features = _check_width("feature_dim", feature_dim)
    else:
        out_features = latent_dim

    if kind == "mlp":
        backbone: nn.Module = MLPEncoder(
            math.prod(shape),
            out_features,
            hidden=(256, 256) if hidden is None else hidden,
            final_activation=has_projector,
        )
    else:
        if len(shape) != 3:
            raise ValueError(
                f"kind='cnn' needs input_shape (C, H, W), got {list(shape)}; use "
                "kind='mlp' for feature vectors"
            )
        backbone = SmallCNN(
            shape[0],
            out_features,
            channels=(32, 64) if hidden is None else hidden,
            final_activation=has_projector,
        )

    head = None
    if has_projector:
        head = ProjectorHead(
            out_features,
            latent_dim,
            hidden=_check_widths("projector", projector),
            batch_norm=batch_norm,
        )
    encoder = Encoder(backbone, head, normalize=normalize)
    logger.debug(
        "built %s encoder for input %s with %d parameters",
        kind,
        shape,
        sum(p.numel() for p in encoder.parameters()),
    )
    return encoder
