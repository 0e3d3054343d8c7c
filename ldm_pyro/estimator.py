"""A scikit-learn style estimator around the training loop, for array data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from .builders import build_objective
from .runs import (
    build_augmentation,
    build_encoder_checked,
    encode_pair,
    extract_features,
    extract_latents,
    paired_batches,
)
from .specs import load_spec
from .training import TrainConfig, fit

OUTPUTS = ("features", "latents")


class LDM(BaseEstimator, TransformerMixin):
    """Self-supervised encoder trained by latent distribution matching.

    The constructor stores its arguments; :meth:`fit` validates them, trains an
    encoder on two augmented views of each sample and sets the fitted attributes,
    whose names end in an underscore.

    Args:
        spec: catalog name or path of a paired-view spec.
        epochs: training epochs; ``None`` keeps the spec's value.
        batch_size: batch size; ``None`` keeps the spec's value.
        latent_dim: latent dimension; ``None`` keeps the spec's value.
        seed: random seed of initialization, shuffling and augmentation.
        overrides: extra ``"field=value"`` overrides of the spec.
        output: what :meth:`transform` returns: backbone ``"features"`` or the
            ``"latents"`` that the objective receives.
        progress: show a progress bar while fitting.

    Attributes:
        encoder_: the trained encoder.
        objective_: the trained objective with its latent model.
        history_: per-epoch means of the objective terms.
        spec_: the resolved spec.
        n_features_in_: number of input features (flattened).

    Shapes:
        ``X`` is ``(N, F)`` for feature vectors or ``(N, C, H, W)`` for images.
    """

    def __init__(
        self,
        spec: str = "vicreg-ldm",
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        latent_dim: int | None = None,
        seed: int = 0,
        overrides: Sequence[str] = (),
        output: str = "features",
        progress: bool = False,
    ):
        self.spec = spec
        self.epochs = epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.seed = seed
        self.overrides = overrides
        self.output = output
        self.progress = progress

    def _resolved_spec(self) -> dict[str, Any]:
        overrides = [f"training.seed={int(self.seed)}", *self.overrides]
        if self.epochs is not None:
            overrides.append(f"training.epochs={int(self.epochs)}")
        if self.batch_size is not None:
            overrides.append(f"training.batch_size={int(self.batch_size)}")
        if self.latent_dim is not None:
            overrides.append(f"encoder.latent_dim={int(self.latent_dim)}")
        spec = load_spec(self.spec, overrides)
        if spec["task"] != "paired":
            raise ValueError(
                f"LDM takes paired-view specs; spec {spec['name']!r} has task "
                f"{spec['task']!r}"
            )
        return spec

    @staticmethod
    def _as_tensor(X, name: str = "X") -> torch.Tensor:
        array = np.asarray(X, dtype=np.float64)
        if array.ndim not in (2, 4):
            raise ValueError(
                f"{name} must have shape (N, F) or (N, C, H, W), got {array.shape}"
            )
        if array.shape[0] == 0:
            raise ValueError(
                f"{name} must contain at least one sample, got shape {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(
                f"{name} contains NaN or Inf values; remove or impute them first"
            )
        return torch.from_numpy(array).to(torch.get_default_dtype())

    def fit(self, X, y=None) -> LDM:
        """Train the encoder on ``X``; ``y`` is ignored."""
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        spec = self._resolved_spec()
        x = self._as_tensor(X)
        pyro.clear_param_store()
        sample_shape = tuple(x.shape[1:])
        config = TrainConfig.from_spec(spec["training"], progress=self.progress)
        torch.manual_seed(config.seed)
        encoder = build_encoder_checked(
            {"normalize": spec["space"] == "sphere", **spec["encoder"]}, sample_shape
        )
        objective = build_objective(spec)
        augment = build_augmentation(spec, sample_shape)
        batches = paired_batches(x, config.batch_size, augment)
        result = fit(encoder, objective, batches, encode_pair, config)
        self.encoder_ = encoder
        self.objective_ = objective
        self.history_ = result.history
        self.spec_ = spec
        self.n_features_in_ = int(np.prod(sample_shape))
        self._sample_shape = sample_shape
        return self

    def transform(self, X) -> np.ndarray:
        """Return the representation of ``X``: features or latents, shape ``(N, K)``."""
        if not hasattr(self, "encoder_"):
            raise ValueError("this LDM instance is not fitted yet; call fit(X) first")
        x = self._as_tensor(X)
        if tuple(x.shape[1:]) != self._sample_shape:
            raise ValueError(
                f"X must have sample shape {self._sample_shape} as in fit, got "
                f"{tuple(x.shape[1:])}"
            )
        if self.output == "latents":
            return extract_latents(self.encoder_, x)
        return extract_features(self.encoder_, x)

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and return its representation."""
        return self.fit(X, y).transform(X)
