"""Suite cells as Ray tasks: ``fractalbayes run SUITE --executor ray [--address ADDR]``.

One Ray task per cell runs the same staged work as the local executor (``runner._staged``: the cell
is built in ``cells/.<id>.partial-<host>-<pid>`` and renamed into place), so the output folder, the
index, resume, ``--only`` and ``report`` behave exactly as with ``local``. The driver process alone
writes ``index.json``; workers write only their cell's folder, so the output folder must be on a file
system every worker sees (any folder on one machine; NFS or similar on a cluster). Staging names
carry the host name and pid, so workers on different hosts never share one.

Without ``address`` a local Ray instance is started with one worker per CPU core of this machine
(Ray's own default); ``address="auto"`` or ``"ray://host:10001"`` joins a running cluster (started
with ``ray start --head`` on the head node, or by Ray's SLURM support: ``ray symmetric-run`` or the
sbatch template in Ray's "Deploying on Slurm" guide). A worker process that dies mid-cell (killed,
out of memory, node lost) is retried up to ``max_retries`` times; a cell whose work raises is
recorded as failed with its traceback by the cell itself and does not stop the others; a cell whose
retries are exhausted is recorded as failed with Ray's error and traceback.

Ray is an optional extra: ``pip install fractalbayes[ray]``.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fractalbayes.errors import SuiteError

MAX_RETRIES = 3
"""Times a cell is re-run after its worker process died (Ray's ``max_retries``)."""


def import_ray():
    """The ``ray`` module, or a SuiteError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise SuiteError("--executor ray", [
            "Ray is not installed: `pip install fractalbayes[ray]` (or `pip install ray`), or use --executor local"
        ]) from None
    return ray


def ray_executor(
    cells: Sequence[Any],
    work: Callable[[Any], dict],
    started: Callable[[Any], None],
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = MAX_RETRIES,
) -> Iterator[tuple[Any, dict]]:
    """Submit one Ray task per cell and yield (cell, outcome) as they finish (in finishing order).

    ``num_cpus``/``num_gpus`` are each task's resource request (GPUs only where the cluster has
    them); ``max_retries`` the re-runs after a worker dies. Every cell is marked started when it is
    submitted. A Ray instance this function starts is shut down when the cells are done.
    """
    ray = import_ray()
    if not cells:  # nothing to run (e.g. a resumed suite that is complete): no Ray instance
        return
    started_here = not ray.is_initialized()
    if started_here:
        # Workers must import this package as the driver does (a source checkout is not installed).
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}}
        ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                          retry_exceptions=False)(work)
        pending = {}
        for cell in cells:
            pending[task.remote(cell)] = cell
            started(cell)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as error:  # noqa: BLE001 (recorded in the index; the other cells go on)
                outcome = {"status": "failed", "error": f"Ray task failed after {max_retries} retries: "
                           f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                           "traceback": "".join(traceback.format_exception(error))}
            yield cell, outcome
    finally:
        if started_here:
            ray.shutdown()
