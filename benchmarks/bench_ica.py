"""Benchmark fit_ica (LDM objective) against scikit-learn's FastICA.

Both run on the same mixtures with the same thread count. Each time is the best
of --repeats runs after one warm-up run. Ratios are fit_ica / FastICA: an Amari
ratio below 1 and a time ratio below 3 meet the target.

    python benchmarks/bench_ica.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from sklearn.decomposition import FastICA
from threadpoolctl import threadpool_limits

from ldm_pyro.data.ica import (
    make_image_mixtures,
    make_laplace_mixtures,
    make_ou_mixtures,
)
from ldm_pyro.evaluation.ica import amari_distance, mean_correlation_coefficient
from ldm_pyro.ica import fit_ica
from ldm_pyro.latents.factorized import GaussianPrior

IMAGE_PRIOR = {"beta": 4.0, "scale": 20**-0.25}


def best_time(function, repeats):
    function()
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_fastica(mixtures, components, seed):
    model = FastICA(
        components, whiten="unit-variance", random_state=seed, max_iter=1000, tol=1e-4
    )
    sources = model.fit_transform(mixtures)
    return model.components_, sources


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="samples per case")
    parser.add_argument(
        "--components", type=int, nargs="+", default=[2, 10, 50], help="Laplace cases"
    )
    parser.add_argument(
        "--image-size", type=int, default=200, help="crop side (pixels)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--dtype", default="float64", help="dtype of fit_ica")
    parser.add_argument(
        "--optimizer",
        default=None,
        choices=["newton", "lbfgs"],
        help="optimizer of fit_ica (default: fit_ica's default, Newton here)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and FastICA")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cases = [
        (
            f"images {args.image_size}x{args.image_size}",
            make_image_mixtures(size=args.image_size, dtype=torch.float64),
            "generalized_normal",
            IMAGE_PRIOR,
        )
    ]
    for components in args.components:
        data = make_laplace_mixtures(
            components, args.samples, seed=args.seed, dtype=torch.float64
        )
        cases.append((f"laplace D={components}", data, "laplace", None))

    header = (
        f"{'case':<18} {'Amari FastICA':>13} {'Amari LDM':>10} {'ratio':>6} "
        f"{'MCC FastICA':>11} {'MCC LDM':>8} {'s FastICA':>9} {'s LDM':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data, prior, options in cases:
            mixtures = data.mixtures.numpy()
            components = data.sources.shape[1]
            fast_seconds, (fast_unmixing, fast_sources) = best_time(
                lambda m=mixtures, c=components: run_fastica(m, c, args.seed),
                args.repeats,
            )
            ldm_seconds, result = best_time(
                lambda m=mixtures, p=prior, o=options: fit_ica(
                    m,
                    p,
                    prior_options=o,
                    optimizer=args.optimizer,
                    dtype=args.dtype,
                    seed=args.seed,
                ),
                args.repeats,
            )
            fast_amari = amari_distance(fast_unmixing, data.mixing)
            ldm_amari = amari_distance(result.unmixing, data.mixing)
            print(
                f"{name:<18} {fast_amari:>13.4f} {ldm_amari:>10.4f} "
                f"{ldm_amari / fast_amari:>6.2f} "
                f"{mean_correlation_coefficient(fast_sources, data.sources):>11.4f} "
                f"{mean_correlation_coefficient(result.sources, data.sources):>8.4f} "
                f"{fast_seconds:>9.3f} {ldm_seconds:>7.3f} "
                f"{ldm_seconds / fast_seconds:>6.2f}"
            )

        # Gaussian OU sources: only a rotation W with the known variances unmixes.
        data = make_ou_mixtures(seed=args.seed, dtype=torch.float64)
        prior_scale = data.sources.var(dim=0).sqrt()
        print()
        print(f"{'OU sources, 50 000 steps':<34} {'Amari':>7} {'MCC':>7}")
        fast_unmixing, fast_sources = run_fastica(data.mixtures.numpy(), 2, args.seed)
        rows = [("FastICA", fast_unmixing, fast_sources)]
        for linear in ("rotation", "unmixing"):
            result = fit_ica(
                data.mixtures,
                GaussianPrior(scale=prior_scale),
                whiten=False,
                linear=linear,
                seed=args.seed,
            )
            rows.append(
                (f"LDM Gaussian prior, {linear} W", result.unmixing, result.sources)
            )
        for name, unmixing, sources in rows:
            print(
                f"{name:<34} {amari_distance(unmixing, data.mixing):>7.4f} "
                f"{mean_correlation_coefficient(sources, data.sources):>7.4f}"
            )


if __name__ == "__main__":
    main()
