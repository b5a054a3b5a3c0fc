"""The report of a finished suite: HTML with tables, figures and config; summary.json and .md; and the
page opening in headless Chromium without console errors (with a screenshot)."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_suite import CELLS, finished_suite

from fractalbayes.suite import report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    return finished_suite(tmp_path_factory.getbasetemp())


@pytest.mark.slow
def test_report_has_tables_figures_and_the_config(finished):
    assert finished.report.returncode == 0, finished.report.stderr[-3000:]
    page = (finished.out / "report.html").read_text()
    for title in ("Cells", "Chain diagnostics", "Comparison with the reference", "Local learning coefficient",
                  "Weight diffusion", "Constant SGD vs the Lyapunov prediction", "Mean ± sd by learning_rate",
                  "Configuration"):
        assert f"<h2>{title}" in page, title
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 2 * 4 + 2  # per cell: loss, marginals, predictive-free regression, displacement...
    assert page.count("<table") >= 8 and "http://" not in page.replace("http://www.w3.org", "")
    assert html.escape('"arms.sgd.options.learning_rate" = [0.02, 0.05]') in page  # the suite file, verbatim
    summary = json.loads((finished.out / "summary.json").read_text())
    assert [c["id"] for c in summary["cells"]] == list(CELLS)
    assert summary["cells"][0]["metrics"]["sgd"]["cov_error_vs_lyapunov"] > 0
    assert "Comparison with the reference" in summary["tables"]
    markdown = (finished.out / "summary.md").read_text()
    assert "## Weight diffusion" in markdown and "| cell" in markdown
    # the report leads with the verdict: before the cells table, per reference, with floors
    assert page.index('<h2>Verdict') < page.index("<h2>Cells")
    assert markdown.index("## Verdict") < markdown.index("## Cells")
    assert "<b>Against nuts</b>: " in page and "(noise floor)" in page and "floor " in page
    verdicts = summary["verdicts"]
    assert [v["cell"] for v in verdicts] == list(CELLS)
    for record in verdicts:  # every non-reference arm is judged, agreeing or not
        judged = record["verdicts"]["nuts"]
        assert sorted(judged["agree"] + list(judged["differ"])) == ["sgd", "sgld"]
    assert (finished.out / "figures" / "displacement.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_opens_in_headless_chromium_without_console_errors(finished, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (`apt-get install chromium`; ./dev test "
                    "installs it when run as root)")
    url = (finished.out / "report.html").resolve().as_uri()
    profile = [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, *profile, "--enable-logging=stderr", "--v=0",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    assert 'data-scripts="ok"' in dom.stdout  # the page's script ran to its end
    shot = tmp_path / "report.png"
    subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, *profile, f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280) and pixels[..., :3].std() > 0.05  # not a blank page
    # the verdict box is on the first screen: its frame colour (#346) appears in the top 1200 rows
    frame = np.all(np.abs(pixels[:1200, :, :3] - np.array([0x33, 0x44, 0x66]) / 255) < 0.02, axis=-1)
    assert frame.sum() > 500


@pytest.mark.slow
def test_every_report_figure_names_every_arm_in_its_legend(finished):
    """The figures of the report's cells, rebuilt from the saved runs: every legend lists every arm
    (a missing or partial legend fails), and each PNG the page embeds was written."""
    import fractalbayes as fb
    from fractalbayes.stats.comparison import compare_figures, legend_labels
    from fractalbayes.suite.figures import close_figures, loss_trace_figure

    cell = finished.out / "cells" / CELLS[0]
    runs = {arm: fb.load_run(cell / f"{arm}.nc") for arm in ("sgd", "sgld", "nuts")}
    figures = compare_figures(runs, var_names=["w"]) | {"loss": loss_trace_figure(runs)}
    for name, figure in figures.items():
        assert set(legend_labels(figure)) >= set(runs), (name, legend_labels(figure))
    pngs = {p.stem for p in (cell / "figures").glob("*.png")}
    assert {"compare_marginals", "compare_forest", "compare_ess", "compare_pairs", "loss", "trace_sgld", "rank_sgld",
            "trace_nuts", "rank_nuts"} <= pngs, pngs
    close_figures()


def test_aggregates_give_mean_and_sd_per_group():
    frame = pd.DataFrame({"cell": list("abcd"), "optimizer": ["sgd", "sgd", "adam", "adam"], "row": "net",
                          "d_s": [1.0, 3.0, 0.5, 0.5], "flag": [True, False, True, True]})
    table = report.aggregates(frame, ["optimizer"], None)
    assert list(table.columns) == ["n", "d_s", "flag"]
    assert table.loc[("sgd", "net"), "d_s"] == "2 ± 1.4" and table.loc[("adam", "net"), "n"] == 2
    assert table.loc[("sgd", "net"), "flag"] == "0.5 ± 0.71"  # fraction true


def test_scatter_reports_correlation_per_group():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    frame = pd.DataFrame({"x": x, "y": 2 * x + 0.01 * rng.normal(size=40), "group": ["a", "b"] * 20})
    figure = report.scatter_figure(frame, "x", "y", "group", diagonal=True)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("a: r = 1.00") and labels[-1] == "y = x"
    report.close_figures()


def test_verdict_warns_loudly_and_explains_chains_apart():
    """A planted compare result: an unconverged reference is a loud warning at the top, an arm whose
    R-hat comes from chains apart gets that reason, and the headline lines are shown."""
    from fractalbayes.suite.verdict import cell_verdicts, verdict_html, verdict_markdown

    rows = {
        "sgd": {"r_hat_max": 4.5, "ess_bulk_min": 4.0, "converged": False, "chains_apart": True, "chain_separation": 69.0,
                "agrees": False, "mmd_p_value": 0.0286, "mmd": 0.4, "mmd_floor": 0.01, "num_draws": 1600},
        "nuts": {"r_hat_max": 1.058, "ess_bulk_min": 60.0, "converged": False, "chains_apart": False},
    }
    result = {"metrics": rows, "reference": "nuts",
              "verdicts": {"nuts": {"agree": [], "differ": {"sgd": {"beyond_floor": "mmd", "mmd_p_value": 0.0286}},
                                    "health": {}}},
              "headline": {"question": "Is fractal's distribution closer to sgd's than nuts's is?",
                           "lines": ["function (predictive_tv): ... closer: yes"]}}
    cell = report.CellResult("seed=0", {"status": "done"}, {"compare": {"result": result}}, [])
    records = cell_verdicts([cell])
    levels = [level for level, _ in records[0]["warnings"]]
    assert levels == ["warning", "note"]  # the reference's warning first
    page = verdict_html(records)
    assert "Reference nuts has NOT converged (R-hat 1.06 &gt; 1.01, bulk ESS 60 &lt; 400" in page
    assert "sgd: R-hat 4.5 &gt; 1.01, bulk ESS 4 &lt; 400 because its chains sit in different places" in page
    assert "closer: yes" in page and "0.4 (floor 0.01, beyond)" in page
    markdown = "\n".join(verdict_markdown(records))
    assert markdown.startswith("## Verdict") and "> **WARNING:** Reference nuts" in markdown
    assert verdict_html([]) == "" and verdict_markdown([]) == []


def test_counts_print_as_integers():
    frame = pd.DataFrame({"num_draws": [1600.0, np.nan, 16000.0], "r_hat": [1.0, 1.01, np.nan]})
    html_table = report._table_html(frame)
    assert ">1600<" in html_table and ">16000<" in html_table and "1.6e+04" not in html_table
    assert ">1.01<" in html_table
