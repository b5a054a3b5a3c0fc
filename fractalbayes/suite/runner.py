"""Running a suite: every cell sampled, analysed and written to an output folder, resumably.

    suite = load_suite("quick")          # fractalbayes.suite.spec: validated first
    run_suite(suite, "out/quick")        # resumable; a failing cell is recorded, not fatal

What a run writes under its output folder:

    suite.toml, suite.json     the file as given and as resolved
    index.json                 every cell: status (pending, running, done, failed, interrupted),
                               timings, config hash, per-arm and per-analysis status, errors
    cells/<id>/<arm>.nc        each arm's Run (ArviZ netCDF; read back with fb.load_run)
    cells/<id>/analyses.json   every analysis result, or its error (fractalbayes.analyses)
    cells/<id>/cell.json       the cell's resolved configuration and hash
    cells/<id>/figures/*.png

A cell is built in a hidden staging folder (``cells/.<id>.partial-<pid>``) and renamed into place when
complete, so an interrupted or killed run never leaves a partial cell under ``cells/<id>``; the next run
removes stale staging folders, skips cells that are done with the same config hash, and runs the rest.
Cells go through an executor, a function mapping cells to outcomes: "local" (this process) or "ray"
(one Ray task per cell: fractalbayes.suite.ray_executor; ``executor_options`` such as ``address``).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fractalbayes import progress as progress_lines
from fractalbayes.errors import SuiteError
from fractalbayes.suite import analyses, resolve, schema
from fractalbayes.suite import figures as cell_figures
from fractalbayes.suite.spec import SUITES_DIR, Cell, Suite, load_suite, resolve_suite_path, shipped_suites, short_names
from fractalbayes.suite.store import write_atomic, write_json

__all__ = [  # the suite API in one place (files are read by fractalbayes.suite.spec)
    "EXECUTORS", "SUITES_DIR", "Cell", "Index", "Suite", "SuiteError", "check_output", "load_suite", "plan",
    "resolve_suite_path", "run_cell", "run_suite", "short_names", "shipped_suites",
]

# --------------------------------------------------------------------------------------------------
# Building and running one cell
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _dataset_and_target(key: str, folder: Path | None):
    """(Dataset, Target) for a canonical-JSON (model, data) key: one Target, so one compilation, per
    distinct model and data across the cells of a process. Module files named by the suite are
    executed here (:mod:`fractalbayes.suite.resolve`), and what they give is checked."""
    from fractalbayes.model.target import from_numpyro

    model_cfg, data_cfg = json.loads(key)
    base = folder or Path.cwd()
    dataset = resolve.load_data(resolve.locate("data", data_cfg["name"], base), data_cfg.get("options", {}))
    source = resolve.locate("model", model_cfg["name"], base)
    function = resolve.load_model(source)
    model = functools.update_wrapper(functools.partial(function, **model_cfg.get("options", {})), function)
    try:
        target = from_numpyro(model, dataset.x_train, dataset.y_train, batch_size=model_cfg.get("batch_size"),
                              data_plate=model_cfg.get("data_plate"))
    except Exception as error:
        if source.file is None:
            raise
        raise SuiteError(source.file, [f"model.name: {source.name!r} is not {resolve.PROMISE['model']} that "
                                       f"fb.from_numpyro can use: {type(error).__name__}: {error}"]) from error
    return dataset, target


@functools.lru_cache(maxsize=16)
def _with_batch_size(target, batch_size: int):
    return target.with_batch_size(batch_size)


RUN_SETTINGS = {o.name for o in schema.RUN_SETTINGS}
BURN_IN = next(o.default for o in schema.RUN_SETTINGS if o.name == "burn_in")


def _sample_arm(target, arm: dict, seed: int, progress: bool):
    from fractalbayes.engine.sample import sample

    kwargs = {k: v for k, v in arm.items() if k in RUN_SETTINGS}
    if kwargs.get("checkpoint_start") == "burn_in":
        kwargs["checkpoint_start"] = kwargs.get("burn_in", BURN_IN)
    if "record_window" in kwargs:
        kwargs["record_window"] = tuple(kwargs["record_window"])
    if "batch_size" in arm:
        target = _with_batch_size(target, arm["batch_size"])
    return sample(target, arm["sampler"], seed=seed, progress=progress, **kwargs, **arm.get("options", {}))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _Capture:
    """Collect the warnings raised inside (as text) instead of printing them."""

    def __enter__(self) -> list[str]:
        self._context = warnings.catch_warnings(record=True)
        self._caught = self._context.__enter__()
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        self.messages: list[str] = []
        return self.messages

    def __exit__(self, *exc) -> None:
        seen = []
        for w in self._caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in seen:
                seen.append(text)
        self.messages.extend(seen)
        self._context.__exit__(*exc)


def run_cell(cell: Cell, folder: Path, *, progress: bool = False) -> dict[str, Any]:
    """Sample every arm of ``cell``, run its analyses and write everything into ``folder``.

    Returns the cell's outcome for the index: status ("done" when every arm sampled; "failed"
    when building the target or an arm failed), error, and per-arm and per-analysis status,
    seconds and warnings. Analysis failures are recorded, not fatal. KeyboardInterrupt propagates.
    """

    folder.mkdir(parents=True)
    config = cell.config
    write_json(folder / "cell.json", {"id": cell.id, "config_hash": cell.config_hash, "seed": cell.seed,
                                      "case": cell.case, "grid": cell.grid, "config": config})
    outcome: dict[str, Any] = {"status": "done", "error": None, "arms": {}, "analyses": {}}
    try:
        key = json.dumps([config["model"], config["data"]], sort_keys=True)
        dataset, target = _dataset_and_target(key, cell.folder)
    except Exception as error:  # noqa: BLE001 (recorded in the index; the suite goes on)
        return outcome | {"status": "failed", "error": f"building the data or model failed: {_error_text(error)}",
                          "traceback": traceback.format_exc()}
    runs = {}
    for name, arm in config["arms"].items():
        tic = time.perf_counter()
        try:
            with _Capture() as caught, progress_lines.task(name):
                runs[name] = _sample_arm(target, arm, cell.seed, progress)
            runs[name].save(folder / f"{name}.nc")
            outcome["arms"][name] = {"status": "done", "file": f"{name}.nc", "warnings": caught,
                                     "seconds": time.perf_counter() - tic, "timings": runs[name].timings}
        except Exception as error:  # noqa: BLE001
            outcome["arms"][name] = {"status": "failed", "error": _error_text(error),
                                     "traceback": traceback.format_exc(), "seconds": time.perf_counter() - tic}
            outcome["status"], outcome["error"] = "failed", f"arm {name!r} failed: {_error_text(error)}"
    context = analyses.Context(cell_id=cell.id, seed=cell.seed, config=config, dataset=dataset, target=target,
                               runs=runs, failed_arms=[a for a, o in outcome["arms"].items() if o["status"] != "done"])
    results = {}
    for name, options in config["analyses"].items():
        tic = time.perf_counter()
        try:
            with _Capture() as caught:
                results[name] = {"status": "done", "result": analyses.ANALYSES[name].run(context, options)}
        except Exception as error:  # noqa: BLE001
            results[name] = {"status": "failed", "error": _error_text(error), "traceback": traceback.format_exc()}
        results[name] |= {"seconds": time.perf_counter() - tic, "warnings": caught}
        outcome["analyses"][name] = {k: v for k, v in results[name].items() if k != "result"}
    with _Capture():
        figures = cell_figures.cell_figures(context) | context.figures
    (folder / "figures").mkdir()
    for name, figure in figures.items():
        figure.savefig(folder / "figures" / f"{name}.png", dpi=90)
    cell_figures.close_figures()
    write_json(folder / "analyses.json", results)
    return outcome


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


STAGING = re.compile(r"^\..+\.partial-(.+-)?\d+$")


def _remove_stale(out: Path) -> None:
    """Staging folders and temporary files left by a killed run."""
    cells = out / "cells"
    for path in cells.iterdir() if cells.is_dir() else []:
        if STAGING.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
    for path in out.glob(".*.tmp"):
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Index:
    """``index.json``: one entry per cell of the suite, rewritten atomically after every change."""

    def __init__(self, out: Path, suite: Suite, cells: Sequence[Cell]):
        self.path = out / "index.json"
        self.out = out
        old = read_index(out).get("cells", {})
        self.cells: dict[str, dict] = {}
        for cell in cells:
            entry = old.get(cell.id)
            if entry is None or entry.get("config_hash") != cell.config_hash:
                entry = {"status": "pending", "config_hash": cell.config_hash}
            self.cells[cell.id] = entry | {"seed": cell.seed, "case": cell.case, "grid": cell.grid}
            if entry["status"] == "done" and not self._files_exist(cell):
                self.cells[cell.id]["status"] = "pending"
        self.suite = suite.name

    def _files_exist(self, cell: Cell) -> bool:
        folder = self.out / "cells" / cell.id
        return (folder / "analyses.json").exists() and all((folder / f"{a}.nc").exists() for a in cell.config["arms"])

    def is_done(self, cell: Cell) -> bool:
        return self.cells[cell.id]["status"] == "done"

    def start(self, cell: Cell) -> None:
        """A fresh entry (what an earlier attempt recorded is dropped), status running."""
        self.cells[cell.id] = {"status": "running", "config_hash": cell.config_hash, "seed": cell.seed,
                               "case": cell.case, "grid": cell.grid, "started": _now()}
        self.save()

    def update(self, cell: Cell, **fields: Any) -> None:
        self.cells[cell.id].update(fields)
        self.save()

    def save(self) -> None:
        write_json(self.path, {"suite": self.suite, "updated": _now(), "cells": self.cells})


# --------------------------------------------------------------------------------------------------
# Executors and the driver
# --------------------------------------------------------------------------------------------------

Work = Callable[[Cell], dict]
Executor = Callable[[Sequence[Cell], Work, Callable[[Cell], None]], Iterator[tuple[Cell, dict]]]


def local_executor(cells: Sequence[Cell], work: Work, started: Callable[[Cell], None]) -> Iterator[tuple[Cell, dict]]:
    """Run the cells one after another in this process (compiled samplers are shared between cells)."""
    for cell in cells:
        started(cell)
        yield cell, work(cell)


def _ray(cells: Sequence[Cell], work: Work, started: Callable[[Cell], None], **options: Any) -> Iterator[tuple[Cell, dict]]:
    """One Ray task per cell (fractalbayes.suite.ray_executor; Ray is imported only when used)."""
    from fractalbayes.suite.ray_executor import ray_executor

    return ray_executor(cells, work, started, **options)


EXECUTORS: dict[str, Executor] = {"local": local_executor, "ray": _ray}


def _staged(out: Path, progress: bool) -> Work:
    def work(cell: Cell) -> dict:
        # host and pid: workers of a Ray cluster on a shared file system never share a staging name
        staging = out / "cells" / f".{cell.id}.partial-{socket.gethostname()}-{os.getpid()}"
        final = out / "cells" / cell.id
        try:
            outcome = run_cell(cell, staging, progress=progress)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            return outcome
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    return work


def _lock(out: Path):
    handle = open(out / ".lock", "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SuiteError(out, ["another `fractalbayes run` is writing to this folder; wait for it or use another --out"]) from None
    return handle


def check_output(suite: Suite, out: str | os.PathLike) -> None:
    """The output folder must be new or hold this suite's results."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SuiteError(out, ["--out is a file; give a folder"])
    if (out / "index.json").exists():
        previous = read_index(out).get("suite")
        if previous != suite.name:
            raise SuiteError(out, [f"holds results of suite {previous!r}, not {suite.name!r}: use another --out"])


def read_index(out: str | os.PathLike | None) -> dict[str, Any]:
    """An output folder's index.json ({} when there is none); a corrupt one is a SuiteError."""
    path = None if out is None else Path(out) / "index.json"
    if path is None or not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SuiteError(path, [f"cannot read the index ({type(error).__name__}: {error}): move the folder "
                                f"aside or use another --out"]) from None
    if not isinstance(index, dict) or not isinstance(index.get("cells", {}), dict):
        raise SuiteError(path, ["is not a suite index (no cells table): use another --out"])
    return index


def plan(suite: Suite, out: str | os.PathLike | None, only: str | None = None) -> list[tuple[Cell, str]]:
    """(cell, "done" | "to run") for the selected cells, reading an existing index (nothing written)."""
    cells = suite.cells(only)
    if not cells:
        examples = ", ".join(c.id for c in suite.cells()[:5])
        raise SuiteError(suite.path, [f"--only {only!r} matches no cell; cell ids look like: {examples}"])
    old = read_index(out).get("cells", {})
    return [(c, "done" if old.get(c.id, {}).get("status") == "done"
             and old[c.id].get("config_hash") == c.config_hash else "to run") for c in cells]


def run_suite(
    suite: Suite,
    out: str | os.PathLike,
    *,
    only: str | None = None,
    executor: str = "local",
    progress: bool = True,
    executor_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the suite's cells (those matching ``only``) into ``out``; returns the index's cells.

    Resumes: cells done with the same config hash are skipped. A failing cell is recorded (status
    "failed", its error) and the suite goes on. On KeyboardInterrupt the running cell is marked
    "interrupted", its staging folder removed and the interrupt re-raised.
    """
    if executor not in EXECUTORS:
        raise SuiteError(suite.path, [f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}"])
    selected = plan(suite, out, only)
    check_output(suite, out)
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        _remove_stale(out)
        write_atomic(out / "suite.toml", suite.text)
        write_json(out / "suite.json", suite.to_json())
        index = Index(out, suite, suite.cells())
        index.save()
        todo = [cell for cell, _ in selected if not index.is_done(cell)]
        bar = progress_lines.bar(len(selected), f"suite {suite.name}", "cell", progress=progress,
                                 initial=len(selected) - len(todo))
        running: list[Cell] = []
        begun: dict[str, float] = {}

        def started(cell: Cell) -> None:
            running.append(cell)
            begun[cell.id] = time.perf_counter()
            bar.set_postfix_str(cell.id)
            index.start(cell)

        try:
            cells = EXECUTORS[executor](todo, _staged(out, progress), started, **(executor_options or {}))
            for cell, outcome in cells:
                running.remove(cell)
                seconds = time.perf_counter() - begun.pop(cell.id)
                index.update(cell, **outcome, finished=_now(), seconds=seconds)
                progress_lines.logger.info("cell %s: %s in %.1f s", cell.id, outcome["status"], seconds)
                bar.update()
        except KeyboardInterrupt:
            for cell in running:
                index.update(cell, status="interrupted", error="interrupted (Ctrl-C); rerun to compute it")
            raise
        finally:
            bar.close()
        return index.cells
    finally:
        lock.close()
