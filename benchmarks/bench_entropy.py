"""Time the entropy estimators against straightforward baselines in one run.

Each row times the library's estimator and a baseline on the same batch and prints
the ratio (library time / baseline time, below 1 means the library is faster).
Torch rows time forward plus backward; the scipy and numpy baselines are forward
only, because they have no gradient.

    python benchmarks/bench_entropy.py --samples 256 --dim 128 --repeats 20
"""

from __future__ import annotations

import argparse
import math
import platform
import timeit

import numpy as np
import torch
from scipy import spatial, special
from torch.nn import functional

from ldm_pyro.entropy import (
    GaussianEntropy,
    GaussianExpansionEntropy,
    KDEEntropy,
    KNNEntropy,
    VICRegEntropy,
)


def time_call(function, repeats):
    function()  # warm-up
    return min(timeit.repeat(function, number=1, repeat=repeats))


def forward_backward(estimator, *inputs):
    def run():
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        estimator(*leaves).backward()

    return run


def torch_baseline(function, *inputs):
    def run():
        leaves = [x.detach().requires_grad_(True) for x in inputs]
        function(*leaves).backward()

    return run


def naive_gaussian_kde(z, bandwidth=1.0):
    # Direct log of a sum of exponentials, with the self pair, as in the
    # published plane loss.
    squared = torch.cdist(z, z).pow(2)
    return -torch.log(torch.exp(-squared / (2 * bandwidth**2)).sum(1) + 1e-8).mean()


def nt_xent(z, z_prime, temperature=0.2):
    # Standard NT-Xent through cross-entropy over 2N anchors.
    views = torch.cat([z, z_prime])
    samples = z.shape[0]
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(2 * samples, dtype=torch.bool), -math.inf)
    targets = torch.cat([torch.arange(samples, 2 * samples), torch.arange(samples)])
    return functional.cross_entropy(logits, targets)


def vicreg_reference(z):
    # VICReg pseudocode for one view: variance hinge and covariance penalty.
    samples, dim = z.shape
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    centered = z - z.mean(dim=0)
    covariance = centered.T @ centered / (samples - 1)
    off_diagonal = covariance.flatten()[:-1].view(dim - 1, dim + 1)[:, 1:].flatten()
    return 25.0 * functional.relu(1 - std).mean() + off_diagonal.pow(2).sum() / dim


def scipy_knn(points, k=3):
    distances = spatial.cKDTree(points).query(points, k=k + 1)[0][:, k]
    dim = points.shape[1]
    log_volume = 0.5 * dim * math.log(math.pi) - special.gammaln(0.5 * dim + 1)
    samples = len(points)
    return (
        special.digamma(samples)
        - special.digamma(k)
        + log_volume
        + dim * np.log(distances).mean()
    )


def numpy_log_det(points):
    return np.linalg.slogdet(np.cov(points, rowvar=False))[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="batch size N")
    parser.add_argument("--dim", type=int, default=128, help="latent dimension D")
    parser.add_argument("--repeats", type=int, default=20, help="timing repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    z = torch.randn(args.samples, args.dim)
    z_prime = z + 0.1 * torch.randn(args.samples, args.dim)
    sphere = functional.normalize(z, dim=1)
    sphere_prime = functional.normalize(z_prime, dim=1)
    points = z.numpy().astype(np.float64)

    rows = [
        (
            "KNNEntropy (fwd+bwd)",
            "scipy cKDTree (fwd)",
            forward_backward(KNNEntropy(clip_quantile=1.0), z),
            lambda: scipy_knn(points),
        ),
        (
            "KDEEntropy gaussian",
            "naive log-sum-exp",
            forward_backward(KDEEntropy(leave_one_out=False), z),
            torch_baseline(naive_gaussian_kde, z),
        ),
        (
            "KDEEntropy vmf pooled",
            "NT-Xent cross-entropy",
            forward_backward(
                KDEEntropy(
                    kernel="vmf", concentration=5.0, pool_views=True
                ).marginal_sum,
                sphere,
                sphere_prime,
            ),
            torch_baseline(nt_xent, sphere, sphere_prime),
        ),
        (
            "GaussianEntropy cholesky",
            "GaussianEntropy slogdet",
            forward_backward(GaussianEntropy(), z),
            forward_backward(GaussianEntropy(method="slogdet"), z),
        ),
        (
            "GaussianEntropy cholesky",
            "numpy slogdet (fwd)",
            forward_backward(GaussianEntropy(), z),
            lambda: numpy_log_det(points),
        ),
        (
            "GaussianExpansionEntropy",
            "GaussianEntropy cholesky",
            forward_backward(GaussianExpansionEntropy(), z),
            forward_backward(GaussianEntropy(), z),
        ),
        (
            "VICRegEntropy",
            "VICReg pseudocode",
            forward_backward(VICRegEntropy(), z),
            torch_baseline(vicreg_reference, z),
        ),
    ]

    print(
        f"N={args.samples} D={args.dim} float32, torch {torch.__version__}, "
        f"{args.threads} threads, {platform.machine()}, min of {args.repeats} runs"
    )
    header = f"{'estimator':<26} {'baseline':<26} {'ms':>8} {'base ms':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, baseline_name, run, baseline in rows:
        seconds = time_call(run, args.repeats)
        baseline_seconds = time_call(baseline, args.repeats)
        print(
            f"{name:<26} {baseline_name:<26} {1e3 * seconds:8.2f} "
            f"{1e3 * baseline_seconds:8.2f} {seconds / baseline_seconds:6.2f}"
        )


if __name__ == "__main__":
    main()
