"""Time the Kalman-LDM loss against a per-step loop and Pyro's GaussianHMM.

The loss is the stop-gradient alignment -sum_t log N(SG[z_t]; D h_{t|t-1},
Sigma_e,t), averaged over B sequences, for an encoder output z of shape
(B, T, L). Compared, forward plus backward with respect to z and A:

- ldm_pyro parallel: LinearGaussianStateSpace(method="parallel").
- ldm_pyro sequential: LinearGaussianStateSpace(method="sequential").
- loop + inverse: the straightforward per-step filter with torch.inverse and the
  (I - K D) P covariance update, written below.
- GaussianHMM: pyro.distributions.GaussianHMM.log_prob, which has no
  stop-gradient; the values are equal, the gradients are not.

    python benchmarks/bench_kalman.py --steps 100 1000 10000
"""

import argparse
import math
import resource
import time

import pyro.distributions as dist
import torch

from ldm_pyro.distributions import LinearGaussianStateSpace


def loop_with_inverse(z, A, b, D, Sigma_A, Sigma_D):
    """Per-step Kalman loss with explicit inverses, as in a plain implementation."""
    batch, num_steps, obs_dim = z.shape
    state_dim = A.shape[-1]
    eye = torch.eye(state_dim, dtype=z.dtype)
    h = torch.zeros(batch, state_dim, dtype=z.dtype)
    P = torch.eye(state_dim, dtype=z.dtype).expand(batch, state_dim, state_dim)
    loss = z.new_zeros(())
    for t in range(num_steps):
        h = (h - b) @ A.T + b
        P = A @ P @ A.T + Sigma_A
        predicted = h @ D.T
        innovation_cov = D @ P @ D.T + Sigma_D
        inverse = torch.inverse(innovation_cov)
        target = z[:, t].detach() - predicted
        quadratic = torch.einsum("bi,bij,bj->b", target, inverse, target)
        log_det = torch.logdet(innovation_cov)
        loss = (
            loss + 0.5 * (quadratic + log_det + obs_dim * math.log(2 * math.pi)).mean()
        )
        gain = P @ D.T @ inverse
        h = h + (gain @ (z[:, t] - predicted).unsqueeze(-1)).squeeze(-1)
        P = (eye - gain @ D) @ P
    return loss


def parameters(state_dim, obs_dim, dtype):
    generator = torch.Generator().manual_seed(0)
    A = torch.eye(state_dim) + 0.1 * torch.randn(
        state_dim, state_dim, generator=generator
    )
    A = A / (1.1 * torch.linalg.eigvals(A).abs().max())
    return dict(
        A=A.to(dtype).requires_grad_(),
        b=torch.zeros(state_dim, dtype=dtype),
        D=torch.eye(obs_dim, state_dim, dtype=dtype),
        Sigma_A=0.1 * torch.eye(state_dim, dtype=dtype),
        Sigma_D=0.1 * torch.eye(obs_dim, dtype=dtype),
    )


def ldm_loss(method):
    def loss(z, p):
        state_dim = p["A"].shape[-1]
        d = LinearGaussianStateSpace(
            p["A"],
            p["b"],
            p["D"],
            p["Sigma_A"],
            p["Sigma_D"],
            torch.zeros(state_dim, dtype=z.dtype),
            torch.eye(state_dim, dtype=z.dtype),
            z.shape[1],
            detach_targets=True,
            method=method,
        )
        return -d.log_prob(z).mean()

    return loss


def hmm_loss(z, p):
    state_dim, obs_dim = p["A"].shape[-1], p["D"].shape[-2]
    hmm = dist.GaussianHMM(
        dist.MultivariateNormal(
            torch.zeros(state_dim, dtype=z.dtype), torch.eye(state_dim, dtype=z.dtype)
        ),
        p["A"].T,
        dist.MultivariateNormal(torch.zeros(state_dim, dtype=z.dtype), p["Sigma_A"]),
        p["D"].T,
        dist.MultivariateNormal(torch.zeros(obs_dim, dtype=z.dtype), p["Sigma_D"]),
        duration=z.shape[1],
    )
    return -hmm.log_prob(z).mean()


def loop_loss(z, p):
    return loop_with_inverse(z, p["A"], p["b"], p["D"], p["Sigma_A"], p["Sigma_D"])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(loss_fn, z, p, repeats):
    """Return the median forward+backward time, the value and the RSS growth."""
    times = []
    before = peak_rss_mib()
    for _ in range(repeats):
        z.grad = None
        p["A"].grad = None
        start = time.perf_counter()
        value = loss_fn(z, p)
        value.backward()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], float(value.detach()), peak_rss_mib() - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--batch", type=int, default=8, help="sequences B")
    parser.add_argument("--state-dim", type=int, default=10, help="S")
    parser.add_argument("--latent-dim", type=int, default=5, help="L")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--loop-max-steps",
        type=int,
        default=1000,
        help="skip the per-step loop and the sequential filter above this T",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    methods = {
        "ldm_pyro parallel": ldm_loss("parallel"),
        "ldm_pyro sequential": ldm_loss("sequential"),
        "loop + inverse": loop_loss,
        "GaussianHMM": hmm_loss,
    }
    print(
        f"B={args.batch} S={args.state_dim} L={args.latent_dim} dtype={args.dtype} "
        f"threads={args.threads}; time = median forward+backward of {args.repeats}"
    )
    header = (
        f"{'T':>6} | {'method':<20} | {'time s':>8} | {'loop / this':>11} | "
        f"{'rel. diff to loop':>17} | {'peak RSS growth MiB':>19}"
    )
    print(header)
    print("-" * len(header))
    for num_steps in args.steps:
        generator = torch.Generator().manual_seed(1)
        z = torch.randn(
            args.batch, num_steps, args.latent_dim, generator=generator, dtype=dtype
        )
        z.requires_grad_()
        p = parameters(args.state_dim, args.latent_dim, dtype)
        rows = {}
        for name, loss_fn in methods.items():
            per_step = name in ("loop + inverse", "ldm_pyro sequential")
            if per_step and num_steps > args.loop_max_steps:
                continue
            loss_fn(z, p).backward()  # warm-up
            rows[name] = measure(loss_fn, z, p, args.repeats)
        reference = rows.get("loop + inverse")
        for name, (seconds, value, memory) in rows.items():
            ratio = f"{reference[0] / seconds:11.1f}" if reference else f"{'-':>11}"
            diff = (
                f"{abs(value - reference[1]) / abs(reference[1]):17.2e}"
                if reference
                else f"{'-':>17}"
            )
            print(
                f"{num_steps:>6} | {name:<20} | {seconds:8.3f} | {ratio} | {diff} | "
                f"{memory:19.1f}"
            )


if __name__ == "__main__":
    main()
