"""Chain diagnostics of several runs side by side, through arviz-stats, on the healthy chains.

A chain that left the finite set is frozen at its last finite state (``run.diverged``); its draws
say nothing about the target and, averaged in, can move a posterior mean by orders of magnitude.
Statistics here use only the chains that never diverged and whose draws are all finite, warn how
many they dropped and report it as a ``dropped_chains`` column; ``include_diverged=True`` keeps all.
"""

from __future__ import annotations

import warnings

import arviz_stats
import numpy as np
import pandas as pd

from fractalbayes.engine.run import Run
from fractalbayes.errors import InputError


def healthy(name: str, run: Run, include_diverged: bool = False) -> tuple[Run, int]:
    """``run`` restricted to its finite, never-diverged chains, and how many were dropped (with a
    warning). All chains dropped is an `InputError`: there is nothing to average."""
    if include_diverged:
        return run, 0
    keep = run.healthy_chains
    dropped = int(np.sum(~keep))
    if dropped == run.num_chains:
        raise InputError(
            f"all {run.num_chains} chains of run {name!r} diverged or hold non-finite draws, so no "
            f"statistic of it means anything; pass include_diverged=True to see them anyway, or rerun "
            f"with a smaller step size"
        )
    if dropped:
        warnings.warn(
            f"run {name!r}: {dropped} of {run.num_chains} chains diverged or hold non-finite draws and "
            f"are left out (column dropped_chains); pass include_diverged=True to include them",
            stacklevel=3,
        )
        return run.select_chains(keep), dropped
    return run, 0


def summary(runs: dict[str, Run], *, var_names: list[str] | None = None, kind: str = "all",
            include_diverged: bool = False) -> pd.DataFrame:
    """Mean, sd, 89 % ETI, ESS bulk/tail, R-hat and MCSE per site and sampler (arviz_stats.summary).

    Rows are indexed by (sampler, variable); columns as ``arviz_stats.summary(kind=kind)`` plus
    ``dropped_chains``: diverged (frozen) or non-finite chains left out unless ``include_diverged``.
    """
    if not runs:
        raise InputError("summary needs at least one run: pass {'name': run, ...}")
    tables = []
    for name, run in runs.items():
        kept, dropped = healthy(name, run, include_diverged)
        tree = kept.to_arviz(log_likelihood=False)
        table = pd.DataFrame(arviz_stats.summary(tree, var_names=var_names, kind=kind, round_to="none"))
        table["dropped_chains"] = dropped
        table.index = pd.MultiIndex.from_product([[name], table.index], names=["sampler", "variable"])
        tables.append(table)
    return pd.concat(tables)
