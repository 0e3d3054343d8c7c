"""Time the batched view augmentation against a per-image loop and the probes.

The augmentation rows time :class:`ldm_pyro.data.ViewAugmentation` on a whole
batch (one ``F.affine_grid`` and ``F.grid_sample`` call) against the same module
applied to one image at a time in a Python loop, the shape of a per-sample
transform in a ``Dataset``. The ratio is batched time / loop time, so below 1
means the batched call is faster. The probe rows time the linear and kNN probes on
the raw pixels of the scikit-learn digits.

    python benchmarks/bench_views.py --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import timeit

import torch

from ldm_pyro.data import ViewAugmentation, load_digits_split
from ldm_pyro.evaluation import knn_accuracy, linear_probe_accuracy


def time_call(function, repeats):
    function()  # warm-up
    return min(timeit.repeat(function, number=1, repeat=repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="number of timed calls per row; the minimum is reported",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads; 0 keeps the torch default",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, repeats {args.repeats} (best of)"
    )
    augment = ViewAugmentation()
    cases = [(256, 1, 8), (1024, 1, 8), (256, 3, 32)]
    print(f"{'batch':>16}  {'batched ms':>10}  {'loop ms':>9}  {'ratio':>6}")
    for num, channels, side in cases:
        x = torch.rand(num, channels, side, side)
        generator = torch.Generator().manual_seed(0)

        def batched(x=x, generator=generator):
            augment(x, generator=generator)

        def loop(x=x, generator=generator):
            for i in range(x.shape[0]):
                augment(x[i : i + 1], generator=generator)

        fast = time_call(batched, args.repeats)
        slow = time_call(loop, max(1, args.repeats // 2))
        label = f"{num}x{channels}x{side}x{side}"
        print(f"{label:>16}  {1e3 * fast:10.2f}  {1e3 * slow:9.1f}  {fast / slow:6.3f}")

    data = load_digits_split()
    split = (data.x_train, data.y_train, data.x_test, data.y_test)
    linear = time_call(lambda: linear_probe_accuracy(*split), args.repeats)
    knn = time_call(lambda: knn_accuracy(*split), args.repeats)
    print(
        f"digits raw pixels: linear probe {1e3 * linear:.1f} ms "
        f"(accuracy {linear_probe_accuracy(*split):.4f}), kNN k=5 cosine "
        f"{1e3 * knn:.1f} ms (accuracy {knn_accuracy(*split):.4f})"
    )


if __name__ == "__main__":
    main()
