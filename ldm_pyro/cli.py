"""The ``ldm-pyro`` command.

``ldm-pyro fit [SPEC]`` trains the method of a catalog spec (default
``vicreg-ldm`` on the bundled digits) and prints its evaluation; ``ldm-pyro list``
prints the catalog.
"""

from __future__ import annotations

import argparse
import logging
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
        default=DEFAULT_SPEC,
        help=f"catalog name or path to a TOML spec (default: {DEFAULT_SPEC})",
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
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.add_argument(
        "-v", "--verbose", action="store_true", help="log progress to standard error"
    )

    commands.add_parser("list", help="list the catalog specs")
    return parser


def _data_overrides(data: str) -> list[str]:
    if data.endswith(".npz"):
        return ["data.name=npz", f'data.path="{Path(data).expanduser()}"']
    return [f'data.name="{data}"']


def _fit(args) -> int:
    from .runs import run_spec
    from .specs import load_spec

    overrides = []
    if args.data:
        overrides += _data_overrides(args.data)
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"training.seed={args.seed}")
    overrides += args.overrides
    spec = load_spec(args.spec, overrides)
    out = args.out
    if out is None:
        if args.resume:
            raise ValueError("--resume needs --out DIR naming the run to continue")
        out = Path("runs") / f"{spec['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = run_spec(spec, out, resume=args.resume, progress=not args.no_progress)
    table = metrics.get("probe_table") or metrics.get("summary_table")
    if table:
        print(table)
    print(f"run folder: {out} ({metrics['wall_time_s']:.1f} s)")
    return 0


def _list() -> int:
    from .specs import list_specs

    for name, description in list_specs():
        print(f"{name}\t{description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "fit":
            return _fit(args)
        return _list()
    except (ValueError, FileNotFoundError) as error:
        print(f"ldm-pyro: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
