"""The ``ldm-pyro`` command.

``ldm-pyro fit [SPEC]`` trains the method of a catalog spec (default
``vicreg-ldm`` on the bundled digits) and prints its evaluation; ``ldm-pyro list``
prints the catalog. ``ldm-pyro compare RUN_DIR...`` ranks runs by LOO from their
``inference_data.nc``.

``ldm-pyro fit`` runs unchanged under ``torchrun --nproc-per-node W``: each
process joins the process group (gloo on the CPU, NCCL on CUDA) and rank 0
writes the run folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

DEFAULT_SPEC = "vicreg-ldm"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldm-pyro",
        description="Self-supervised learning as latent distribution matching.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a method from a spec and evaluate it")
    fit.add_argument(
        "spec",
        nargs="?",
        default=None,
        help=f"catalog name or path to a TOML spec (default: {DEFAULT_SPEC}, or "
        "the run folder's spec.toml with --resume)",
    )
    fit.add_argument(
        "--data",
        help="data set: 'digits', a path to an .npz file with arrays 'x' (and 'y'), "
        "or a generator name of the spec's task",
    )
    fit.add_argument("--epochs", type=int, help="number of training epochs")
    fit.add_argument("--seed", type=int, help="random seed of the run")
    fit.add_argument(
        "--out",
        type=Path,
        help="run folder (default: runs/SPEC-TIMESTAMP)",
    )
    fit.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a spec field, e.g. --set entropy.k=5 (repeatable)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint",
    )
    fit.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="training device; auto selects CUDA when available (default: the "
        "spec's training.device, cpu)",
    )
    fit.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="encoder precision; bf16 runs it under bfloat16 autocast while the "
        "objective stays in float32 (default: the spec's training.precision, fp32)",
    )
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.add_argument(
        "-v", "--verbose", action="store_true", help="log progress to standard error"
    )

    commands.add_parser("list", help="list the catalog specs")

    compare = commands.add_parser(
        "compare",
        help="compare runs by LOO or WAIC from their inference_data.nc files",
    )
    compare.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run folders containing inference_data.nc (at least two)",
    )
    compare.add_argument(
        "--out",
        type=Path,
        default=Path("comparison.png"),
        help="PNG file of the comparison plot (default: comparison.png)",
    )
    compare.add_argument(
        "--ic", choices=("loo", "waic"), default="loo", help="information criterion"
    )
    return parser


def _data_overrides(data: str) -> list[str]:
    if data.endswith(".npz"):
        # An absolute path keeps the run folder's spec.toml usable from anywhere.
        return ["data.name=npz", f'data.path="{Path(data).expanduser().resolve()}"']
    return [f'data.name="{data}"']


def _fit(args) -> int:
    from .distributed import (
        broadcast_object,
        init_distributed,
        is_main_process,
        shutdown_distributed,
    )
    from .runs import run_spec
    from .specs import load_spec

    overrides = []
    if args.data:
        overrides += _data_overrides(args.data)
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"training.seed={args.seed}")
    if args.device is not None:
        overrides.append(f'training.device="{args.device}"')
    if args.precision is not None:
        overrides.append(f'training.precision="{args.precision}"')
    overrides += args.overrides
    out = args.out
    if args.resume and out is None:
        raise ValueError("--resume needs --out DIR naming the run to continue")
    spec = load_spec(_spec_source(args.spec, out, args.resume), overrides)
    if out is None:
        out = Path("runs") / f"{spec['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
    init_distributed(spec["training"]["device"])
    try:
        # Every process uses rank 0's run folder (its timestamp may differ).
        out = broadcast_object(out)
        metrics = run_spec(spec, out, resume=args.resume, progress=not args.no_progress)
        main_process = is_main_process()
    finally:
        shutdown_distributed()
    if not main_process:
        return 0
    table = metrics.get("probe_table") or metrics.get("summary_table")
    if table:
        print(table)
    print(f"run folder: {out} ({metrics['wall_time_s']:.1f} s)")
    return 0


def _spec_source(spec: str | None, out: Path | None, resume: bool) -> str | Path:
    """Return the spec to load: a resumed run continues from its own spec.toml."""
    if not resume:
        return spec or DEFAULT_SPEC
    saved = Path(out) / "spec.toml"
    if not saved.is_file():
        raise FileNotFoundError(
            f"--resume given but {saved} does not exist; run without --resume to "
            "start a new run"
        )
    if spec is not None:
        from .specs import load_spec

        saved_name = load_spec(saved)["name"]
        requested = load_spec(spec)["name"]
        if requested != saved_name:
            raise ValueError(
                f"--resume continues the run in {out}, which was trained with spec "
                f"{saved_name!r}, not {requested!r}; omit the spec or pass "
                f"{saved_name}"
            )
    return saved


def _list() -> int:
    from .specs import list_specs

    for name, description in list_specs():
        print(f"{name}\t{description}")
    return 0


def _compare(args) -> int:
    from .comparison import compare_runs, plot_comparison

    table = compare_runs(args.run_dirs, ic=args.ic)
    print(table.to_string())
    plot_comparison(table, args.out)
    print(f"comparison plot: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    # Under torchrun only rank 0 logs progress.
    verbose = getattr(args, "verbose", False) and os.environ.get("RANK", "0") == "0"
    # A handler of its own: run folders raise the package logger to INFO for
    # train.log, and the console must still show warnings only unless -v is given.
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(console)
    try:
        if args.command == "fit":
            return _fit(args)
        if args.command == "compare":
            return _compare(args)
        return _list()
    except (ValueError, TypeError, OSError) as error:
        print(f"ldm-pyro: error: {error}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger().removeHandler(console)


if __name__ == "__main__":
    sys.exit(main())
