"""Command line: ``fractalbayes demo``."""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(f"fractalbayes demo: Moons, 2-8-2 ReLU net; SGD, SGLD and the NUTS reference -> {args.out}/")
    table = run_demo(args.out, quick=args.quick, seed=args.seed)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print("\nComparison with the NUTS reference (weights: unconstrained; function space: test inputs)\n")
        print(table.T.to_string())
    print(f"\nruns (ArviZ netCDF): {args.out}/runs/   figures: {args.out}/figures/   table: {args.out}/comparison.csv")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fractalbayes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="quick comparison of the samplers on embedded data")
    demo.add_argument("--out", default="fractalbayes-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a quarter of the draws (smoke test)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
