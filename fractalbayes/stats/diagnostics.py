"""Chain diagnostics of several runs side by side, through arviz-stats."""

from __future__ import annotations

import arviz_stats
import pandas as pd

from fractalbayes.engine.run import Run


def summary(runs: dict[str, Run], *, var_names: list[str] | None = None, kind: str = "all") -> pd.DataFrame:
    """Mean, sd, 89 % ETI, ESS bulk/tail, R-hat and MCSE per site and sampler (arviz_stats.summary).

    Rows are indexed by (sampler, variable); columns as ``arviz_stats.summary(kind=kind)``.
    """
    if not runs:
        raise ValueError("summary needs at least one run: pass {'name': run, ...}")
    tables = []
    for name, run in runs.items():
        table = pd.DataFrame(arviz_stats.summary(run.to_arviz(), var_names=var_names, kind=kind, round_to="none"))
        table.index = pd.MultiIndex.from_product([[name], table.index], names=["sampler", "variable"])
        tables.append(table)
    return pd.concat(tables)
