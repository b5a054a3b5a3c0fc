"""Command line: ``fractalbayes run``, ``report`` and ``demo``.

    fractalbayes run SUITE.toml --out DIR [--only PATTERN] [--executor local|ray [--address ADDR] [--num-gpus G]]
    fractalbayes run SUITE.toml [--out DIR] --dry-run [--only PATTERN]
    fractalbayes report DIR
    fractalbayes demo [--out DIR] [--seed N]
    fractalbayes --version
    fractalbayes -q|--quiet ... (warnings and errors only, no progress) | -v|--verbose ... (also timings)

Exit status: 0 when every cell is done, 1 when some cell failed, 2 for a malformed suite file or
bad arguments (nothing is written then), 130 when interrupted (rerun the same command to resume).
Progress and messages go to stderr (:mod:`fractalbayes.progress`): bars on a terminal, plain
timestamped lines in a redirected log; results and tables go to stdout.
``--dry-run`` validates the file and lists the cells without running any user code: module files
the suite names are read, not imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import math
import sys
from pathlib import Path

import pandas as pd

from fractalbayes import progress
from fractalbayes.suite.runner import EXECUTORS, SUITES_DIR, SuiteError, check_output, load_suite, plan, run_suite


def _fail(error: SuiteError) -> int:
    print(f"fractalbayes: {error}", file=sys.stderr)
    return 2


def _run_and_report(suite, out: str, only: str | None, executor: str, executor_options: dict | None = None) -> int:
    try:
        cells = run_suite(suite, out, only=only, executor=executor, progress=True, executor_options=executor_options)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cells are kept; rerun the same command to resume ({out}/index.json)",
              file=sys.stderr)
        return 130
    failed = {ident: entry.get("error") for ident, entry in cells.items() if entry["status"] == "failed"}
    for ident, error in failed.items():
        print(f"cell {ident} failed: {error}", file=sys.stderr)
    done = sum(entry["status"] == "done" for entry in cells.values())
    print(f"{done} of {len(cells)} cells done -> {out}/index.json")
    return 1 if failed else 0


def _dry_run(suite, selected, out: str | None) -> int:
    where = f" in {out}" if out is not None else " (no --out given)"
    print(f"suite {suite.name}: {len(selected)} cell(s) selected, {sum(s == 'done' for _, s in selected)} already "
          f"done{where}")
    for cell, status in selected:
        arms = ", ".join(f"{name} ({arm['sampler']})" for name, arm in cell.config["arms"].items()) or "none"
        print(f"  {status:7s} {cell.id}   [{cell.config_hash}]  arms: {arms}")
    print(f"analyses: {', '.join(suite.base['analyses']) or 'none'}; nothing was run or written")
    if suite.sources:
        print(f"module files named by the suite were checked as text but NOT imported: {', '.join(suite.sources)}; "
              f"their code runs only when the cells run")
    else:
        print("user code: none named (models and data sets come from the toolkit's registries)")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.out is None and not args.dry_run:
        print("fractalbayes run: --out DIR is required (except with --dry-run)", file=sys.stderr)
        return 2
    try:
        suite = load_suite(args.suite)
        selected = plan(suite, args.out, args.only)
        if args.out is not None:
            check_output(suite, args.out)
    except SuiteError as error:
        return _fail(error)
    if args.dry_run:
        return _dry_run(suite, selected, args.out)
    try:
        if args.executor != "ray" and (args.address is not None or args.num_gpus):
            raise SuiteError("--address/--num-gpus", ["are options of --executor ray; add it or drop them"])
        options = {"address": args.address, "num_gpus": args.num_gpus} if args.executor == "ray" else None
        code = _run_and_report(suite, args.out, args.only, args.executor, options)
    except SuiteError as error:
        return _fail(error)
    if code != 130:
        print(f"write the report with: fractalbayes report {args.out}")
    return code


def _report(args: argparse.Namespace) -> int:
    from fractalbayes.suite.report import write_report

    try:
        page = write_report(args.dir)
    except SuiteError as error:
        return _fail(error)
    print(f"report: {page}\nsummary: {Path(args.dir) / 'summary.json'}, {Path(args.dir) / 'summary.md'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fractalbayes.suite.report import comparison_table, load_cells, write_report
    from fractalbayes.suite.verdict import cell_verdicts, verdict_markdown
    try:
        suite = load_suite(SUITES_DIR / "quick.toml")
        if args.seed is not None:
            suite = dataclasses.replace(suite, seeds=[args.seed])
    except SuiteError as error:
        return _fail(error)
    arms = ", ".join(suite.base["arms"])
    print(f"fractalbayes demo: {suite.description} Arms: {arms} -> {args.out}/")
    code = _run_and_report(suite, args.out, None, "local")
    if code == 130:
        return code
    page = write_report(args.out)
    _, _, cells = load_cells(Path(args.out))
    print("", *verdict_markdown(cell_verdicts(cells)), sep="\n")
    for cell in cells:
        table = comparison_table(cell)
        if table.empty:
            continue
        print(f"\nComparison with the NUTS reference, cell {cell.id} "
              "(weights: unconstrained; function space: test inputs)\n")
        print(format_table(table).T.to_string())
    print(f"\nreport: {page}\nruns (ArviZ netCDF): {args.out}/cells/*/*.nc   summary: {args.out}/summary.md")
    return code


def version() -> str:
    """The installed distribution's version (``pyproject.toml`` takes it from ``fractalbayes.__version__``)."""
    try:
        return importlib.metadata.version("fractalbayes")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run from a source tree without pip install)"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as text: a column whose values are all whole numbers (counts: draws, chains,
    basins) as integers (``1600``, not ``1600.000``), other numbers to 3 significant digits."""
    def text(value, whole: bool) -> str:
        if isinstance(value, (bool, str)) or value is None:
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return "–" if math.isnan(value) else str(value)
        return f"{value:.0f}" if whole else f"{value:.3g}"

    columns = {}
    for name, column in table.items():
        numbers = [v for v in column if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        whole = bool(numbers) and all(float(v).is_integer() for v in numbers)
        columns[name] = [text(v, whole) for v in column]
    return pd.DataFrame(columns, index=table.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fractalbayes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fractalbayes {version()}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress")
    loud.add_argument("-v", "--verbose", action="store_true", help="also debug lines (compile and step timings)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a benchmark suite (resumable)")
    run.add_argument("suite", help="suite file (.toml), or the name of a shipped suite, e.g. quick")
    run.add_argument("--out", help="output folder (reused to resume); required unless --dry-run")
    run.add_argument("--only", metavar="PATTERN", help="cells whose id matches this glob, or contains this text")
    run.add_argument("--dry-run", action="store_true",
                     help="validate, list the cells and what is done; run nothing, import no module file")
    run.add_argument("--executor", default="local", choices=sorted(EXECUTORS), help="where cells run (default: local)")
    run.add_argument("--address", help="with --executor ray: the cluster to join ('auto', 'ray://HOST:10001'); "
                                       "default: start a local Ray instance sized to this machine")
    run.add_argument("--num-gpus", type=float, default=0, help="with --executor ray: GPUs per cell (default 0)")
    run.set_defaults(handler=_run)

    report = commands.add_parser("report", help="write report.html, summary.json and summary.md for a run folder")
    report.add_argument("dir", help="the --out folder of `fractalbayes run`")
    report.set_defaults(handler=_report)

    demo = commands.add_parser("demo", help="the quick suite: SGD, SGLD, the fractal sampler and NUTS on Moons")
    demo.add_argument("--out", default="fractalbayes-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=None, help="sampler seed (default: the suite's)")
    demo.set_defaults(handler=_demo)

    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # results interleave with the progress lines in a redirected log
        sys.stdout.reconfigure(line_buffering=True)
    progress.configure(-1 if args.quiet else 1 if args.verbose else 0)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
