"""The verdict that heads a suite report: per cell and per reference, which arms agree with it and
which do not (with the calibrated statistics beside their noise floors), loud warnings when the
reference has not converged or an arm's R-hat comes from chains sitting in different places, and
the headline comparison (fractal vs SGD vs posterior).

Read from the "compare" analysis of each cell (:func:`fractalbayes.suite.analyses.comparison`):
its ``verdicts`` (:func:`fractalbayes.stats.comparison.verdicts`), its per-arm metrics (chain health,
distances, floors, MMD p-values) and its ``headline``. Thresholds are ArviZ's (R-hat <= 1.01, bulk
ESS >= 400; Vehtari et al. 2021).
"""

from __future__ import annotations

import html
import math
from typing import Any

from fractalbayes.stats.comparison import ALPHA, ESS_MIN, HIGHER_IS_CLOSER, R_HAT_MAX

SHOWN = ("predictive_tv", "agreement", "predictive_wasserstein", "mmd", "sliced_wasserstein", "gaussian_kl")
"""The statistics shown beside their floors in the verdict, function space first."""


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3g}"


def _health_warnings(arm: str, row: dict[str, Any], reference: bool) -> list[tuple[str, str]]:
    """(level, text): "warning" for an unconverged reference, "note" for chains apart or an
    unconverged arm."""
    r_hat, ess = row.get("r_hat_max"), row.get("ess_bulk_min")
    if r_hat is None or ess is None or row.get("converged", True):
        return []
    why = []
    if math.isfinite(r_hat) and r_hat > R_HAT_MAX:
        why.append(f"R-hat {r_hat:.3g} > {R_HAT_MAX}")
    if ess < ESS_MIN:
        why.append(f"bulk ESS {ess:.0f} < {ESS_MIN}")
    text = ", ".join(why)
    if row.get("chains_apart"):
        return [("note", (f"{arm}: {text} because its chains sit in different places (chain means "
                          f"{row.get('chain_separation', float('nan')):.3g} within-chain sd apart, each chain "
                          f"stationary): chains in different basins, not a sampler failure"))]
    if reference:
        return [("warning", (f"Reference {arm} has NOT converged ({text}; ArviZ's thresholds): every "
                             f"comparison with it below is suspect. Run it longer or with more chains."))]
    return [("note", f"{arm} has not converged ({text}).")]


def cell_verdicts(cells: list) -> list[dict[str, Any]]:
    """One record per cell whose compare analysis ran: cell, references, per-reference agree/differ,
    the statistics table against the main reference, warnings and the headline."""
    out = []
    for cell in cells:
        result = ((cell.analyses.get("compare") or {}).get("result")) or {}
        if not result.get("verdicts"):
            continue
        rows = result.get("metrics") or {}
        reference = result.get("reference")
        warnings = [w for arm, row in rows.items() for w in _health_warnings(arm, row, arm == reference)]
        warnings.sort(key=lambda w: w[0] != "warning")
        statistics = []
        for arm, row in rows.items():
            if arm == reference:
                continue
            entry = {"arm": arm, "agrees": row.get("agrees"), "mmd_p_value": row.get("mmd_p_value")}
            for stat in SHOWN:
                if stat in row:
                    entry[stat] = row[stat]
                    entry[f"{stat}_floor"] = row.get(f"{stat}_floor")
            statistics.append(entry)
        out.append({"cell": cell.id, "reference": reference, "verdicts": result["verdicts"],
                    "statistics": statistics, "warnings": warnings, "headline": result.get("headline")})
    return out


def _reference_line(reference: str, verdict: dict[str, Any]) -> tuple[str, str]:
    """(plain, html) of 'against R: agree A; differ B (stats beyond floor, MMD p)'."""
    agree = ", ".join(verdict["agree"]) or "none"
    differ = "; ".join(f"{arm} ({d['beyond_floor'] or 'no distance beyond its floor'}; MMD p = {d['mmd_p_value']:.3g})"
                       for arm, d in verdict["differ"].items()) or "none"
    plain = f"Against {reference}: agree: {agree}. Differ: {differ}."
    marked = (f"<p><b>Against {html.escape(reference)}</b>: <span class=\"agree\">agree: {html.escape(agree)}</span>. "
              f"<span class=\"differ\">Differ: {html.escape(differ)}</span>.</p>")
    return plain, marked


def _cell_value(stat: str, entry: dict[str, Any]) -> str:
    value, floor = entry.get(stat), entry.get(f"{stat}_floor")
    if value is None:
        return "–"
    sign = ">" if stat not in HIGHER_IS_CLOSER else "<"
    return f"{_number(value)} (floor {_number(floor)}{', beyond' if floor is not None and (value > floor if sign == '>' else value < floor) else ''})"


def _statistics_rows(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    stats = [s for s in SHOWN if any(s in e for e in entries)]
    head = ["arm", "agrees", f"MMD p (chains permuted; reject < {ALPHA})", *(f"{s} (noise floor)" for s in stats)]
    rows = [[e["arm"], "yes" if e.get("agrees") else "no", _number(e.get("mmd_p_value")),
             *(_cell_value(s, e) for s in stats)] for e in entries]
    return head, rows


def verdict_html(verdicts: list[dict[str, Any]]) -> str:
    """The report's opening section (empty when no cell ran the compare analysis)."""
    if not verdicts:
        return ""
    parts = ['<section class="verdict" id="verdict"><h2>Verdict</h2>']
    for record in verdicts:
        if len(verdicts) > 1:
            parts.append(f"<h3>Cell {html.escape(record['cell'])}</h3>")
        parts += [f'<div class="{level}">{html.escape(text)}</div>' for level, text in record["warnings"]]
        if record.get("headline"):
            lines = "".join(f"<li>{html.escape(line)}</li>" for line in record["headline"]["lines"])
            parts.append(f"<p><b>{html.escape(record['headline']['question'])}</b></p><ul>{lines}</ul>")
        for reference, verdict in record["verdicts"].items():
            parts.append(_reference_line(reference, verdict)[1])
        head, rows = _statistics_rows(record["statistics"])
        table = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
        parts.append(f'<p>Against {html.escape(str(record["reference"]))}, each distance beside its noise floor '
                     f'(the same statistic between halves of the reference or of the arm, the larger):</p>'
                     f'<div class="wrap"><table class="sortable"><thead><tr>{table}</tr></thead>'
                     f"<tbody>{body}</tbody></table></div>")
    parts.append("</section>")
    return "\n".join(parts)


def verdict_markdown(verdicts: list[dict[str, Any]]) -> list[str]:
    """The same section as Markdown lines (empty when no cell ran the compare analysis)."""
    if not verdicts:
        return []
    md = ["## Verdict", ""]
    for record in verdicts:
        if len(verdicts) > 1:
            md += [f"### Cell {record['cell']}", ""]
        md += [f"> **{'WARNING' if level == 'warning' else 'Note'}:** {text}" for level, text in record["warnings"]]
        if record["warnings"]:
            md.append("")
        if record.get("headline"):
            md += [f"**{record['headline']['question']}**", "", *(f"- {line}" for line in record["headline"]["lines"]), ""]
        md += [_reference_line(reference, verdict)[0] for reference, verdict in record["verdicts"].items()]
        head, rows = _statistics_rows(record["statistics"])
        md += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
               *("| " + " | ".join(row) + " |" for row in rows), ""]
    return md
