"""Latent models written as Pyro programs.

A latent model scores given latents: every latent is a ``pyro.sample`` site
observed at the encoder output. :class:`ldm_pyro.objective.LDMObjective` runs the
program and sums the site log-densities to form the alignment term.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pyro
import torch
from pyro.nn import PyroModule

from .._validation import check_same_shape, check_tensor


class PairedViewModel(PyroModule):
    r"""Two-view latent model :math:`P_\theta(z, z') = P_\theta(z) P_\theta(z' | z)`.

    As a Pyro program::

        with pyro.plate("batch", N):
            pyro.sample("z", prior(z), obs=z)
            pyro.sample("z_prime", kernel(z), obs=z_prime)

    Args:
        prior: module mapping ``z`` to the prior distribution.
        kernel: module mapping ``z`` to the conditional distribution of ``z'``.

    Shapes:
        ``z`` and ``z_prime`` are ``(N, D)``.
    """

    def __init__(self, prior: PyroModule, kernel: PyroModule):
        super().__init__()
        self.prior = prior
        self.kernel = kernel

    def forward(self, z: torch.Tensor, z_prime: torch.Tensor) -> None:
        """Score the paired latents; the sites are ``"z"`` and ``"z_prime"``."""
        check_tensor("z", z, ndim=2)
        check_same_shape("z", z, "z_prime", z_prime)
        with pyro.plate("batch", z.shape[0]):
            pyro.sample("z", self.prior(z), obs=z)
            pyro.sample("z_prime", self.kernel(z), obs=z_prime)


class SingleViewModel(PyroModule):
    """One-view latent model ``P_theta(z)``, for example an ICA prior.

    Args:
        prior: module mapping ``z`` to the prior distribution.

    Shapes:
        ``z`` is ``(N, D)``.
    """

    def __init__(self, prior: PyroModule):
        super().__init__()
        self.prior = prior

    def forward(self, z: torch.Tensor) -> None:
        """Score the latents; the site is ``"z"``."""
        check_tensor("z", z, ndim=2)
        with pyro.plate("batch", z.shape[0]):
            pyro.sample("z", self.prior(z), obs=z)


def load_program(reference: str) -> Callable[..., None]:
    """Import a user's Pyro program from a ``"module:function"`` reference.

    The function receives the latents positionally, in the order of the
    objective's views (``z, z_prime`` for paired views), and must observe each of
    them in a ``pyro.sample`` site.

    Raises:
        ValueError: if the reference is not of the form ``module:function`` or the
            attribute is missing or not callable.
    """
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"model.program must be a catalog name or 'module:function', got "
            f"{reference!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} for model.program={reference!r}: "
            f"{error}; check that it is on PYTHONPATH"
        ) from error
    program = module
    for part in attribute.split("."):
        if not hasattr(program, part):
            raise ValueError(
                f"module {module_name!r} has no attribute {attribute!r} "
                f"(model.program={reference!r})"
            )
        program = getattr(program, part)
    if not callable(program):
        raise ValueError(f"model.program={reference!r} is not callable")
    return program
