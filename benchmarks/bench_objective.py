"""Cost of the declared objective against hand-written NT-Xent and VICReg losses.

The declared objective runs the Pyro latent model under the log-density recorder and
the spec's entropy estimator. The peers are plain torch functions of the same
embeddings. Both do a forward and a backward pass. Run:

    python benchmarks/bench_objective.py
"""

import argparse
import statistics
import time

import torch
from torch.nn import functional

from ldm_pyro.builders import build_objective
from ldm_pyro.specs import load_spec


def nt_xent(z, z_prime, temperature):
    u = functional.normalize(torch.cat([z, z_prime]), dim=1)
    n = z.shape[0]
    similarity = u @ u.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return functional.cross_entropy(similarity, positives)


def vicreg(z, z_prime, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    n, d = z.shape

    def variance(x):
        return torch.relu(1 - torch.sqrt(x.var(dim=0) + eps)).mean()

    def covariance(x):
        x = x - x.mean(dim=0)
        cov = x.T @ x / (n - 1)
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d

    return (
        lam * functional.mse_loss(z, z_prime)
        + mu * (variance(z) + variance(z_prime))
        + nu * (covariance(z) + covariance(z_prime))
    )


def time_call(function, raw, raw_prime, repeats):
    times = []
    for _ in range(repeats + 3):
        raw.grad = raw_prime.grad = None
        start = time.perf_counter()
        function(raw, raw_prime).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, median of {args.repeats} forward+backward passes")
    print(f"{'case':<10}{'D':>6}{'declared ms':>14}{'hand ms':>10}{'ratio':>8}")
    for d in args.dims:
        raw = torch.randn(args.batch, d, requires_grad=True)
        raw_prime = torch.randn(args.batch, d, requires_grad=True)

        simclr = build_objective(load_spec("simclr"))
        beta = load_spec("simclr")["model"]["kernel_params"]["concentration"]

        def declared_simclr(a, b, objective=simclr):
            return objective(
                functional.normalize(a, dim=1), functional.normalize(b, dim=1)
            ).loss

        def hand_simclr(a, b, beta=beta):
            return nt_xent(a, b, 1 / beta)

        spec = load_spec("vicreg", [f"model.kernel_params.scale={(d / 50) ** 0.5}"])
        vicreg_objective = build_objective(spec)

        def declared_vicreg(a, b, objective=vicreg_objective):
            return objective(a, b).loss

        for name, declared, hand in [
            ("simclr", declared_simclr, hand_simclr),
            ("vicreg", declared_vicreg, vicreg),
        ]:
            t_declared = time_call(declared, raw, raw_prime, args.repeats)
            t_hand = time_call(hand, raw, raw_prime, args.repeats)
            print(
                f"{name:<10}{d:>6}{1e3 * t_declared:>14.3f}{1e3 * t_hand:>10.3f}"
                f"{t_declared / t_hand:>8.2f}"
            )


if __name__ == "__main__":
    main()
