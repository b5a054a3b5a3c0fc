"""The report of a suite's output folder, and the figures drawn for it.

``write_report(out)`` reads what :mod:`fractalbayes.suite.runner` wrote (index.json, suite.json, each
cell's analyses.json and figures) and writes

    report.html    one self-contained page: the cells and their status, a table per analysis across
                   cells, aggregates by grid value, scatter plots across cells, each cell's tables and
                   figures (PNG embedded as base64), the suite file and its resolved config; no
                   external resources, and a small inline script that makes tables sortable;
    summary.json   every cell's status, timings, errors and metrics, and the aggregates;
    summary.md     the same tables in Markdown;
    figures/*.png  the figures drawn across cells.

The figures of one cell are drawn by the runner (:mod:`fractalbayes.suite.figures`); this module draws
the figures across cells.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fractalbayes.errors import SuiteError
from fractalbayes.suite.analyses import ANALYSES
from fractalbayes.suite.figures import close_figures
from fractalbayes.suite.spec import short_names
from fractalbayes.suite.store import plain, write_atomic, write_json
from fractalbayes.suite.verdict import cell_verdicts, verdict_html, verdict_markdown

# --------------------------------------------------------------------------------------------------
# Reading an output folder
# --------------------------------------------------------------------------------------------------


@dataclass
class CellResult:
    id: str
    entry: dict[str, Any]
    """The cell's index entry: status, seconds, grid, seed, case, arms, analyses, error."""
    analyses: dict[str, Any]
    """Analysis name -> {status, seconds, warnings, result | error} (empty when not computed)."""
    figures: list[Path]

    def metrics(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Row -> metrics merged over the analyses (``names`` in that order, default all in run order);
        a metric two analyses report (e.g. ess_bulk_min) keeps the first value."""
        rows: dict[str, dict[str, Any]] = {}
        for name in names if names is not None else self.analyses:
            outcome = self.analyses.get(name) or {}
            for row, values in ((outcome.get("result") or {}).get("metrics") or {}).items():
                merged = rows.setdefault(row, {})
                for key, value in values.items():
                    merged.setdefault(key, value)
        return rows


def load_cells(out: Path) -> tuple[dict, dict, list[CellResult]]:
    """(index, suite.json, cells in index order) of an output folder."""
    if not (out / "index.json").exists():
        raise SuiteError(out, [f"no index.json here: run `fractalbayes run SUITE.toml --out {out}` first"])
    index = json.loads((out / "index.json").read_text())
    suite = json.loads((out / "suite.json").read_text()) if (out / "suite.json").exists() else {}
    cells = []
    for ident, entry in index["cells"].items():
        folder = out / "cells" / ident
        results = folder / "analyses.json"
        analyses = json.loads(results.read_text()) if entry.get("status") in ("done", "failed") and results.exists() else {}
        figures = sorted((folder / "figures").glob("*.png")) if analyses else []
        cells.append(CellResult(ident, entry, analyses, figures))
    return index, suite, cells


def _grid_names(suite: dict) -> dict[str, str]:
    """Short column name of every grid key and case key (the settings that vary between cells)."""
    keys = [*suite.get("grid", {}), *(k for case in suite.get("cases", []) for k in case if k != "name")]
    return short_names(list(dict.fromkeys(keys)))


def metrics_frame(cells: list[CellResult], suite: dict, names: list[str] | None = None) -> pd.DataFrame:
    """One row per (cell, row label): cell, case, the grid and case settings (short names), seed, row,
    then the metrics."""
    short = _grid_names(suite)
    records = []
    for cell in cells:
        head = {"cell": cell.id}
        if suite.get("cases"):
            head["case"] = cell.entry.get("case")
        case = next((c for c in suite.get("cases", []) if c.get("name") == cell.entry.get("case")), {})
        settings = {k: v for k, v in case.items() if k != "name"} | (cell.entry.get("grid") or {})
        head |= {short[k]: _cell_value(v) for k, v in settings.items() if k in short}
        head["seed"] = cell.entry.get("seed")
        for row, values in cell.metrics(names).items():
            records.append(head | {"row": row} | {k: v for k, v in values.items() if k not in head})
    frame = pd.DataFrame.from_records(records)
    return frame.dropna(axis=1, how="all") if len(frame) else frame


def _cell_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


DEMO_COLUMNS = ("agrees", "mmd_p_value", "predictive_tv", "predictive_tv_floor", "agreement", "agreement_floor",
                "predictive_wasserstein", "predictive_wasserstein_floor", "mmd", "mmd_floor", "sliced_wasserstein",
                "sliced_wasserstein_floor", "r_hat_max", "ess_bulk_min", "chains_apart", "num_draws", "dropped_chains")
"""The demo's columns: the verdict's statistics beside their floors, then chain health."""


def comparison_table(cell: CellResult) -> pd.DataFrame:
    """The demo's table: one row per arm, compare's verdict columns (:data:`DEMO_COLUMNS`), then
    held-out accuracy and seconds (every column is in report.html and summary.md)."""
    frame = pd.DataFrame.from_dict(cell.metrics(["compare", "predictive"]), orient="index")
    frame.index.name = "arm"
    tail = [c for c in frame.columns if c.startswith(("test_", "train_")) and not c.endswith("_per_draw")] + ["seconds"]
    return frame[[c for c in (*DEMO_COLUMNS, *tail) if c in frame]]


def aggregates(frame: pd.DataFrame, groups: list[str], columns: list[str] | None,
               skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean ± sd (and n) of the numeric metric columns per group (and row label); true/false columns
    give the fraction true. Leaves out ``skip`` (the grid columns) unless ``columns`` names them."""
    keys = [g for g in groups if g in frame] + (["row"] if "row" in frame and "row" not in groups else [])
    skip = {"cell", "case", "seed", *keys, *([] if columns else skip)}
    numbers = {}
    for column in columns or frame.columns:
        if column in frame and column not in skip:
            values = pd.to_numeric(frame[column].map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v),
                                   errors="coerce")
            if values.notna().any():
                numbers[column] = values
    if not keys or not numbers:
        return pd.DataFrame()
    grouped = pd.DataFrame(numbers).join(frame[keys]).groupby(keys, sort=False, dropna=False)

    def cell(mean: float, sd: float) -> str:
        if not np.isfinite(mean):
            return "–"
        return f"{mean:.3g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.3g}"

    means, sds = grouped.mean(), grouped.std()
    table = pd.DataFrame({c: [cell(m, sd) for m, sd in zip(means[c], sds[c])] for c in numbers}, index=means.index)
    table.insert(0, "n", grouped.size().values)
    return table[(table[list(numbers)] != "–").any(axis=1)]  # groups (e.g. other arms) without these metrics


# --------------------------------------------------------------------------------------------------
# Figures across cells
# --------------------------------------------------------------------------------------------------


def scatter_figure(frame: pd.DataFrame, x: str, y: str, color: str | None, *, diagonal: bool = False,
                   log: bool = False) -> plt.Figure:
    """y against x over all rows, coloured by ``color``, with Pearson and Spearman r per colour."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    data = frame[[c for c in {x, y, color} if c]].dropna()
    for label, part in data.groupby(color, sort=False) if color else [("all", data)]:
        xs, ys = part[x].astype(float), part[y].astype(float)
        r = xs.corr(ys) if len(part) > 2 else float("nan")
        rho = xs.corr(ys, method="spearman") if len(part) > 2 else float("nan")
        ax.scatter(xs, ys, s=22, alpha=0.8, label=f"{label}: r = {r:.2f}, rho = {rho:.2f} (n = {len(part)})")
    if diagonal and len(data):
        both = data[[x, y]].to_numpy(float)
        lo, hi = both[np.isfinite(both)].min(), both[np.isfinite(both)].max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    if log:
        ax.set(xscale="symlog", yscale="symlog")
    ax.set(xlabel=x, ylabel=y)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def displacement_figure(curves: list[tuple[str, str, dict]]) -> plt.Figure:
    """Mean displacement R(t) of every (cell, arm) on log-log axes with the Brownian slope 1/2."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    several_arms = len({arm for _, arm, _ in curves}) > 1
    by_curve = len(curves) <= 10  # one colour per curve, else one per arm
    colors: dict[str, str] = {}
    for cell, arm, curve in curves:
        lags, mean = np.asarray(curve["lags"], float), np.asarray(curve["r_mean"], float)
        keep = (lags > 0) & (mean > 0)
        name = (f"{cell} / {arm}" if several_arms else cell) if by_curve else arm
        first = name not in colors
        colors.setdefault(name, f"C{len(colors) % 10}")
        if len(curves) <= 4:
            ax.fill_between(lags[keep], np.asarray(curve["r_low"], float)[keep], np.asarray(curve["r_high"], float)[keep],
                            color=colors[name], alpha=0.15, lw=0)
        ax.plot(lags[keep], mean[keep], color=colors[name], lw=1.2, alpha=0.9, label=name if first else None)
    if curves:
        lags = np.asarray(curves[0][2]["lags"], float)
        mean = np.asarray(curves[0][2]["r_mean"], float)
        keep = (lags > 0) & (mean > 0)
        t = lags[keep]
        ax.plot(t, mean[keep][0] * np.sqrt(t / t[0]), "k--", lw=1, label="Brownian, R ~ t^1/2")
    ax.set(xscale="log", yscale="log", xlabel="lag t (steps after t0)", ylabel="mean R(t) over chains")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _suite_figures(cells: list[CellResult], frame: pd.DataFrame, suite: dict) -> dict[str, plt.Figure]:
    figures = {}
    curves = [(c.id, arm, curve) for c in cells
              for arm, curve in (((c.analyses.get("diffusion") or {}).get("result") or {}).get("curves") or {}).items()]
    if curves:
        figures["displacement"] = displacement_figure(curves)
    report = suite.get("report", {})
    short = _grid_names(suite)
    groups = [short.get(g, g) for g in report.get("group_by", [])]
    for plot in report.get("scatter", []):
        x, y = short.get(plot["x"], plot["x"]), short.get(plot["y"], plot["y"])
        if x in frame and y in frame:
            color = groups[0] if groups and groups[0] in frame else ("row" if frame["row"].nunique() > 1 else None)
            figures[f"scatter_{y}_vs_{x}"] = scatter_figure(frame, x, y, color, diagonal=plot.get("diagonal", False),
                                                           log=plot.get("log", False))
    return figures


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.wrap { overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.82em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; } tr:nth-child(even) td { background: #fafafa; }
.figures img { max-width: 100%; margin: 0.3em; border: 1px solid #eee; }
.figures { display: flex; flex-wrap: wrap; align-items: flex-start; }
.verdict { border: 2px solid #346; border-radius: 6px; padding: 0.4em 1em; margin: 1em 0; background: #f5f8fc; }
.warning { border: 2px solid #c00; background: #fff0f0; color: #800; font-weight: 600; padding: 0.4em 0.8em;
  margin: 0.4em 0; border-radius: 4px; }
.note { border-left: 4px solid #c80; background: #fff8e8; padding: 0.3em 0.8em; margin: 0.4em 0; }
.agree { color: #070; font-weight: 600; } .differ { color: #a00; font-weight: 600; }
.error { color: #a00; white-space: pre-wrap; font-family: monospace; font-size: 0.85em; }
.status-done { color: #070; } .status-failed, .status-interrupted { color: #a00; } .status-pending { color: #777; }
details { margin: 0.5em 0; border: 1px solid #ddd; padding: 0.3em 0.8em; border-radius: 4px; }
summary { cursor: pointer; font-weight: 600; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""

SCRIPT = """
// Click a column header to sort its table (numbers numerically); then mark the page as scripted.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), up = th.dataset.order !== "up";
      th.dataset.order = up ? "up" : "down";
      rows.sort(function (a, b) {
        var x = a.cells[col] ? a.cells[col].textContent : "", y = b.cells[col] ? b.cells[col].textContent : "";
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.documentElement.setAttribute("data-scripts", "ok");
"""


def integer_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns whose values are all whole numbers (counts padded with NaN by a merge: draws,
    chains, diverging) as integers, so they print as 1600, not 1600.0 or 1.6e+03."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f" and values.notna().any():
            finite = values.dropna()
            if np.isfinite(finite).all() and (finite == finite.round()).all() and (finite.abs() >= 2).any():
                frame[column] = values.astype("Int64")
    return frame


def _table_html(frame: pd.DataFrame, index: bool = True) -> str:
    if frame is None or frame.empty:
        return "<p><em>no rows</em></p>"
    frame = integer_counts(frame)
    body = frame.to_html(classes="sortable", border=0, index=index, na_rep="–", float_format=lambda v: f"{v:.4g}")
    return f'<div class="wrap">{body}</div>'


def _table_from_json(split: dict) -> pd.DataFrame:
    return pd.DataFrame(split["data"], columns=split["columns"])


def _img(path_or_figure: Any) -> str:
    if isinstance(path_or_figure, Path):
        data, alt = path_or_figure.read_bytes(), path_or_figure.stem
    else:
        import io

        buffer = io.BytesIO()
        path_or_figure.savefig(buffer, format="png", dpi=90)
        data, alt = buffer.getvalue(), "figure"
    return f'<img alt="{html.escape(alt)}" title="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _cells_overview(cells: list[CellResult]) -> pd.DataFrame:
    rows = []
    for cell in cells:
        entry = cell.entry
        failed = [f"{name}: {part.get('error')}" for kind in ("arms", "analyses")
                  for name, part in (entry.get(kind) or {}).items() if part.get("status") == "failed"]
        rows.append({"cell": cell.id, "status": entry.get("status"), "seconds": entry.get("seconds"),
                     "finished": entry.get("finished", ""), "problems": "; ".join(failed) or entry.get("error") or ""})
    return pd.DataFrame(rows)


def _cell_section(cell: CellResult, open_: bool) -> str:
    entry = cell.entry
    status = entry.get("status", "?")
    parts = [f'<details id="cell-{html.escape(cell.id)}"{" open" if open_ else ""}>',
             f'<summary>{html.escape(cell.id)} — <span class="status-{status}">{status}</span>'
             f'{f" — {entry["seconds"]:.1f} s" if entry.get("seconds") else ""}</summary>']
    setting = {"seed": entry.get("seed"), "case": entry.get("case"), **(entry.get("grid") or {})}
    parts.append(f"<p>{html.escape(', '.join(f'{k} = {v}' for k, v in setting.items() if v is not None))}</p>")
    errors = [f"{kind[:-1]} {name}: {part.get('error')}" for kind in ("arms", "analyses")
              for name, part in (entry.get(kind) or {}).items() if part.get("status") == "failed"]
    if entry.get("error") and not errors:
        errors.append(entry["error"])
    if errors:
        parts.append(f'<div class="error">{html.escape(chr(10).join(errors))}</div>')
    metrics = pd.DataFrame.from_dict(cell.metrics(), orient="index")
    if not metrics.empty:
        metrics.index.name = "row"
        parts.append("<h4>Metrics</h4>" + _table_html(metrics.dropna(axis=1, how="all")))
    for name, outcome in cell.analyses.items():
        result = outcome.get("result") or {}
        for title, split in (result.get("tables") or {}).items():
            parts.append(f"<h4>{html.escape(title)}</h4>" + _table_html(_table_from_json(split), index=False))
        if result.get("skipped"):
            parts.append(f"<p>{html.escape(name)} skipped: {html.escape(result['skipped'])}</p>")
    if cell.figures:
        parts.append('<div class="figures">' + "".join(_img(p) for p in cell.figures) + "</div>")
    warned = [f"{kind[:-1]} {name}: {w}" for kind in ("arms", "analyses")
              for name, part in (entry.get(kind) or {}).items() for w in part.get("warnings") or []]
    if warned:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warned)
        parts.append(f"<details><summary>{len(warned)} warning(s)</summary><ul>{items}</ul></details>")
    parts.append("</details>")
    return "\n".join(parts)


def _analysis_sections(cells: list[CellResult], suite: dict, figures: dict[str, plt.Figure]) -> list[tuple[str, pd.DataFrame, list]]:
    """(title, table across cells, figures) per analysis; predictive joins compare when both ran."""
    present = [name for name in ANALYSES if any(name in c.analyses for c in cells)]
    sections = []
    for name in present:
        if name == "predictive" and "compare" in present:
            continue
        names = [name, "predictive"] if name == "compare" and "predictive" in present else [name]
        frame = metrics_frame(cells, suite, names)
        extra = [figures["displacement"]] if name == "diffusion" and "displacement" in figures else []
        sections.append((ANALYSES[name].title, frame, extra))
    return sections


@dataclass
class _Contents:
    """Everything the three outputs show."""

    name: str
    description: str
    generated: str
    out: Path
    suite: dict
    cells: list[CellResult]
    overview: pd.DataFrame
    sections: list[tuple[str, pd.DataFrame, list]]
    groups: list[str]
    aggregate: pd.DataFrame
    figures: dict[str, plt.Figure]
    verdicts: list[dict[str, Any]]


def _summary(c: _Contents) -> dict[str, Any]:
    keys = ("status", "seconds", "seed", "case", "grid", "config_hash", "error", "finished")
    return {
        "suite": c.name, "description": c.description, "generated": c.generated,
        "cells": [{"id": cell.id} | {k: cell.entry.get(k) for k in keys} | {
            "metrics": cell.metrics(),
            "analyses": {n: {k: v for k, v in o.items() if k != "result"} for n, o in cell.analyses.items()},
        } for cell in c.cells],
        "tables": {title: table for title, table, _ in c.sections},
        "aggregates": c.aggregate,
        "verdicts": c.verdicts,
    }


def _markdown(c: _Contents) -> str:
    md = [f"# Suite `{c.name}`", "", c.description or "(no description)", "", f"Generated {c.generated}.", "",
          *verdict_markdown(c.verdicts), "## Cells", "", c.overview.to_markdown(index=False, floatfmt=".4g"), ""]
    for title, table, _ in c.sections:
        md += [f"## {title}", "", integer_counts(table).to_markdown(index=False, floatfmt=".4g") if len(table) else "(no rows)", ""]
    if len(c.aggregate):
        md += [f"## Mean ± sd by {', '.join(c.groups)}", "", c.aggregate.to_markdown(floatfmt=".4g"), ""]
    return "\n".join(md)


def _html(c: _Contents) -> str:
    done = sum(cell.entry.get("status") == "done" for cell in c.cells)
    body = [f"<h1>Suite {html.escape(c.name)}</h1>", f"<p>{html.escape(c.description)}</p>",
            f"<p>Generated {html.escape(c.generated)} from <code>{html.escape(str(c.out))}</code>; "
            f"{done} of {len(c.cells)} cells done.</p>", verdict_html(c.verdicts),
            "<h2>Cells</h2>", _table_html(c.overview, index=False)]
    for title, table, extra in c.sections:
        body += [f"<h2>{html.escape(title)}</h2>", _table_html(table, index=False)]
        if extra:
            body.append('<div class="figures">' + "".join(_img(f) for f in extra) + "</div>")
    if len(c.aggregate):
        body += [f"<h2>Mean ± sd by {html.escape(', '.join(c.groups))}</h2>", _table_html(c.aggregate)]
    scatter = [f for name, f in c.figures.items() if name.startswith("scatter_")]
    if scatter:
        body += ["<h2>Across cells</h2>", '<div class="figures">' + "".join(_img(f) for f in scatter) + "</div>"]
    body.append("<h2>Each cell</h2>")
    body += [_cell_section(cell, open_=len(c.cells) <= 3) for cell in c.cells]
    suite_text = (c.out / "suite.toml").read_text() if (c.out / "suite.toml").exists() else ""
    body += ["<h2>Configuration</h2>", "<h3>Suite file</h3>", f"<pre>{html.escape(suite_text)}</pre>",
             "<h3>Resolved</h3>", f"<pre>{html.escape(json.dumps(plain(c.suite), indent=1))}</pre>"]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>fractalbayes: {html.escape(c.name)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{chr(10).join(body)}\n<script>{SCRIPT}</script>\n</body></html>\n")


def _save_figure(figure: Any, path: Path) -> None:
    """PNG written to a temporary name, then renamed (no half-written figure after a kill)."""
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


def write_report(out: str | os.PathLike) -> Path:
    """Write report.html, summary.json, summary.md and figures/ for the output folder ``out``."""
    out = Path(out)
    index, suite, cells = load_cells(out)
    frame = metrics_frame(cells, suite)
    report = suite.get("report", {})
    short = _grid_names(suite)
    groups = [short.get(g, g) for g in report.get("group_by", [])]
    columns = [short.get(c, c) for c in report["columns"]] if report.get("columns") else None
    aggregate = aggregates(frame, groups, columns, tuple(short.values())) if groups and len(frame) else pd.DataFrame()
    figures = _suite_figures(cells, frame, suite)
    (out / "figures").mkdir(exist_ok=True)
    for name, figure in figures.items():
        _save_figure(figure, out / "figures" / f"{name}.png")
    contents = _Contents(
        name=str(index.get("suite")), description=suite.get("description", ""),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), out=out, suite=suite, cells=cells,
        overview=_cells_overview(cells), sections=_analysis_sections(cells, suite, figures), groups=groups,
        aggregate=aggregate, figures=figures, verdicts=cell_verdicts(cells),
    )
    write_json(out / "summary.json", _summary(contents))
    write_atomic(out / "summary.md", _markdown(contents))
    write_atomic(out / "report.html", _html(contents))
    close_figures()
    return out / "report.html"
