"""Benchmark the von Mises-Fisher distribution against scipy.stats.vonmises_fisher.

Measures ``log_prob`` throughput on ``--points`` points and sampling throughput,
with and without the backward pass of the implicit gradient in the concentration.
It also measures the accuracy of ``log C_D(kappa)`` and ``A_D(kappa)`` of both
libraries against mpmath at 50 digits on a grid of dimensions and concentrations.

    python benchmarks/bench_vmf.py
"""

import argparse
import math
import time
import warnings

import mpmath
import numpy as np
import scipy
import scipy.stats
import torch
from torch.nn import functional

from ldm_pyro.distributions import VonMisesFisher

GRID_DIMS = [2, 3, 5, 16, 128, 1024, 4096]
GRID_KAPPAS = [1e-6, 1e-3, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e6]


def best_time(function, repeats):
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def mp_reference(dim, kappa):
    with mpmath.workdps(50):
        nu = mpmath.mpf(dim) / 2 - 1
        k = mpmath.mpf(kappa)
        i_nu = mpmath.besseli(nu, k)
        log_c = (
            nu * mpmath.log(k) - dim * mpmath.log(2 * mpmath.pi) / 2 - mpmath.log(i_nu)
        )
        return float(log_c), float(mpmath.besseli(nu + 1, k) / i_nu)


def scipy_values(dim, kappa):
    """Return scipy's log C_D(kappa) (from logpdf at the mode) and A_D(kappa)."""
    mu = np.zeros(dim)
    mu[0] = 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dist = scipy.stats.vonmises_fisher(mu, kappa)
            log_c = float(dist.logpdf(mu)) - kappa
            # The mean resultant length from scipy's own first moment estimate
            # is not exposed; use the entropy identity H = -log C - k A.
            ratio = (-float(dist.entropy()) - log_c) / kappa
        return log_c, ratio
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError) as error:
        return type(error).__name__, type(error).__name__


def sample_and_backward(mu, kappa, samples):
    """Draw samples and backpropagate the sum of mu^T x to the concentration."""
    concentration = torch.tensor(kappa, dtype=mu.dtype, requires_grad=True)
    draws = VonMisesFisher(mu, concentration).rsample((samples,))
    (draws @ mu).sum().backward()
    return concentration.grad


def format_error(value, reference):
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)
    return f"{abs(value - reference) / max(abs(reference), 1.0):.1e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="log_prob points")
    parser.add_argument("--samples", type=int, default=10_000, help="samples drawn")
    parser.add_argument("--kappa", type=float, default=10.0, help="concentration")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, scipy {scipy.__version__}, threads {args.threads}"
    )

    print(
        f"\nlog_prob on {args.points} points, kappa = {args.kappa} "
        f"(best of {args.repeats})"
    )
    print(
        "| D | ldm_pyro float64 (s) | ldm_pyro float32 (s) | scipy logpdf (s) "
        "| scipy / ldm_pyro float64 |"
    )
    print("|---|---|---|---|---|")
    for dim in (3, 128, 1024):
        mu = rng.standard_normal(dim)
        mu /= np.linalg.norm(mu)
        x = rng.standard_normal((args.points, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x_t = torch.from_numpy(x)
        mu_t = torch.from_numpy(mu)
        # Sample validation is off, as in training; scipy does not check either.
        dist = VonMisesFisher(mu_t, args.kappa, validate_args=False)
        dist32 = VonMisesFisher(
            mu_t.float(),
            torch.tensor(args.kappa, dtype=torch.float32),
            validate_args=False,
        )
        x32 = x_t.float()
        ours = best_time(lambda: dist.log_prob(x_t), args.repeats)  # noqa: B023
        ours32 = best_time(lambda: dist32.log_prob(x32), args.repeats)  # noqa: B023
        peer = scipy.stats.vonmises_fisher(mu, args.kappa)
        theirs = best_time(lambda: peer.logpdf(x), args.repeats)  # noqa: B023
        difference = np.abs(dist.log_prob(x_t).numpy() - peer.logpdf(x)).max()
        print(
            f"| {dim} | {ours:.4f} | {ours32:.4f} | {theirs:.4f} "
            f"| {theirs / ours:.1f} |"
            f"  max |difference| {difference:.1e}"
        )

    print(
        f"\nsampling {args.samples} points, kappa = {args.kappa} "
        f"(best of {args.repeats})"
    )
    print(
        "| D | ldm_pyro rsample (s) | ldm_pyro rsample + backward in kappa (s) "
        "| with backward / rsample | scipy rvs (s) | scipy / ldm_pyro rsample |"
    )
    print("|---|---|---|---|---|---|")
    for dim in (3, 5, 128, 1024):
        mu = functional.normalize(torch.randn(dim, dtype=torch.float64), dim=0)
        dist = VonMisesFisher(mu, args.kappa)
        peer = scipy.stats.vonmises_fisher(mu.numpy(), args.kappa)
        ours = best_time(lambda: dist.rsample((args.samples,)), args.repeats)  # noqa: B023
        with_backward = best_time(
            lambda: sample_and_backward(mu, args.kappa, args.samples),  # noqa: B023
            args.repeats,
        )
        theirs = best_time(
            lambda: peer.rvs(args.samples, random_state=rng),  # noqa: B023
            args.repeats,
        )
        print(
            f"| {dim} | {ours:.4f} | {with_backward:.4f} | {with_backward / ours:.1f} "
            f"| {theirs:.4f} | {theirs / ours:.1f} |"
        )

    print("\naccuracy against mpmath: |error| / max(|reference|, 1)")
    print("| D | kappa | log C ldm_pyro | log C scipy | A ldm_pyro | A scipy |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for dim in GRID_DIMS:
        for kappa in GRID_KAPPAS:
            log_c, ratio = mp_reference(dim, kappa)
            loc = functional.normalize(torch.ones(dim, dtype=torch.float64), dim=0)
            dist = VonMisesFisher(loc, torch.tensor(kappa, dtype=torch.float64))
            ours_log_c = float(dist.log_prob(dist.loc) - kappa)
            ours_ratio = float(dist.mean.norm())
            scipy_log_c, scipy_ratio = scipy_values(dim, kappa)
            worst = max(worst, abs(ours_log_c - log_c) / max(abs(log_c), 1.0))
            print(
                f"| {dim} | {kappa:g} | {format_error(ours_log_c, log_c)} | "
                f"{format_error(scipy_log_c, log_c)} | "
                f"{format_error(ours_ratio, ratio)} | "
                f"{format_error(scipy_ratio, ratio)} |"
            )
    print(f"\nworst ldm_pyro log C error on the grid: {worst:.1e}")


if __name__ == "__main__":
    main()
