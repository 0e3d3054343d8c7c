"""Compare the RNN predictive LDM with CEBRA-Time on wobbly swirl videos.

Both methods learn a 2-D code from the same frames and are scored with the same
metric: the held-out R^2 of an affine map from the code to the true positions.
CEBRA runs time-contrastive InfoNCE (``conditional="time"``) on the frames of all
training sequences concatenated into one time series, so a few positive pairs
straddle a sequence boundary. Its iteration count is set so that its training
takes about the wall time of the LDM run (measured in the same process, from a
short calibration fit).

CEBRA is an optional dependency used only here. It is installed without its
dependency resolution (``pip install --no-deps cebra literate-dataclasses``
plus ``requests``) so that it does not replace the installed torch.

Usage::

    python benchmarks/bench_cebra.py --epochs 20
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from ldm_pyro.data.wobbly import make_wobbly
from ldm_pyro.evaluation.identifiability import affine_r2
from ldm_pyro.runs import run_spec
from ldm_pyro.specs import load_spec


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=256, help="training sequences")
    parser.add_argument("--test-sequences", type=int, default=64, help="test sequences")
    parser.add_argument("--length", type=int, default=50, help="steps per sequence")
    parser.add_argument("--epochs", type=int, default=20, help="LDM training epochs")
    parser.add_argument("--published", action="store_true", help="published generator")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and models")
    parser.add_argument(
        "--cebra-batch", type=int, default=512, help="CEBRA batch size (samples)"
    )
    return parser.parse_args()


def run_ldm(args) -> dict:
    """Train the rnn-wobbly spec at the requested size; return its metrics."""
    overrides = [
        f"task_params.sequences={args.sequences}",
        f"task_params.test_sequences={args.test_sequences}",
        f"task_params.length={args.length}",
        f"task_params.published={'true' if args.published else 'false'}",
        f"training.epochs={args.epochs}",
        f"training.seed={args.seed}",
    ]
    spec = load_spec("rnn-wobbly", overrides)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        metrics = run_spec(spec, folder, progress=False)
        metrics["train_s"] = time.perf_counter() - start
    return metrics


def run_cebra(args, seconds: float) -> dict:
    """Train CEBRA-Time for about ``seconds``; return held-out R^2 and timing."""
    try:
        from cebra import CEBRA
    except ImportError as error:
        raise SystemExit(
            "bench_cebra needs the optional package 'cebra'; install it with "
            "'pip install --no-deps cebra literate-dataclasses requests'"
        ) from error
    options = {"published": args.published}
    # The LDM runner draws test data with seed + 10000; use the same sets.
    train = make_wobbly(args.sequences, args.length, seed=args.seed, **options)
    test = make_wobbly(
        args.test_sequences, args.length, seed=args.seed + 10_000, **options
    )
    x_train = (
        train.frames.reshape(-1, train.frames.shape[-1]).numpy().astype(np.float32)
    )
    x_test = test.frames.reshape(-1, test.frames.shape[-1]).numpy().astype(np.float32)

    def model(iterations: int):
        return CEBRA(
            model_architecture="offset1-model",
            batch_size=args.cebra_batch,
            learning_rate=3e-4,
            temperature=1.0,
            output_dimension=2,
            max_iterations=iterations,
            distance="euclidean",
            conditional="time",
            time_offsets=1,
            device="cpu",
            verbose=False,
        )

    calibration_steps = 50
    start = time.perf_counter()
    model(calibration_steps).fit(x_train)
    per_step = (time.perf_counter() - start) / calibration_steps
    iterations = max(calibration_steps, int(seconds / per_step))
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    fitted = model(iterations).fit(x_train)
    train_s = time.perf_counter() - start
    code_train = fitted.transform(x_train)
    code_test = fitted.transform(x_test)
    r2 = affine_r2(
        code_train,
        train.positions.reshape(-1, 2).numpy(),
        code_test,
        test.positions.reshape(-1, 2).numpy(),
    ).r2
    return {"r2": r2, "train_s": train_s, "iterations": iterations}


def main() -> None:
    """Run both methods and print a table."""
    args = _parse()
    ldm = run_ldm(args)
    cebra = run_cebra(args, ldm["train_s"])
    rows = [
        ("LDM RNN predictor (kNN)", ldm["r2"], ldm["train_s"], f"{args.epochs} epochs"),
        (
            "CEBRA-Time (InfoNCE)",
            cebra["r2"],
            cebra["train_s"],
            f"{cebra['iterations']} it",
        ),
        ("random encoder (LDM arch.)", ldm["r2_random"], 0.0, "-"),
    ]
    print(
        f"wobbly {'published' if args.published else 'restoring'} generator, "
        f"{args.sequences} x {args.length} frames, pinned "
        f"{100 * ldm['pinned_fraction']:.1f}%"
    )
    print(f"{'method':<28} {'R^2':>7} {'train s':>8}  budget")
    for name, r2, seconds, budget in rows:
        print(f"{name:<28} {r2:>7.4f} {seconds:>8.1f}  {budget}")
    print(f"R^2 ratio LDM / CEBRA: {ldm['r2'] / cebra['r2']:.3f}")


if __name__ == "__main__":
    main()
