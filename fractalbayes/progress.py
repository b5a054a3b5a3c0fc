"""Progress bars and messages that fit a terminal and a log file.

Messages go through Python's :mod:`logging`, on the ``fractalbayes`` logger (the library adds no
handler; the command line installs one, see :func:`configure`). Progress is shown by :func:`bar`:

- on a terminal (stderr is a TTY) or in a notebook: a tqdm bar (``tqdm.auto``), one per running
  task; a bar opened while another is open is nested below it (tqdm picks the free ``position``)
  and removed when done (``leave=False``), so a suite shows its cell bar and the running arm's bar;
- otherwise (stderr redirected to a file or a pipe): plain log lines on the ``fractalbayes`` logger,
  a start line, one every ``FRACTALBAYES_PROGRESS_EVERY`` seconds (default 30) and an end line
  with the duration: no carriage returns and no escape sequences in a redirected log;
- nothing when ``progress`` is off, when ``TQDM_DISABLE`` is set (tqdm's own switch, honoured in
  both modes), or when the ``fractalbayes`` logger is set above INFO
  (``logging.getLogger("fractalbayes").setLevel(logging.WARNING)``, which is what ``--quiet`` does).

Bars are named after the task and its phase ("sgld: burn-in", "fractal/sgd: sampling"): inside
``with task("fractal"):`` a bar of the sampler "sgd" is called "fractal/sgd" (:func:`name`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("fractalbayes")
"""The package's logger: every message of the library (and the plain progress lines) goes here."""

_TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar("fractalbayes_task", default=None)


@contextlib.contextmanager
def task(label: str) -> Iterator[None]:
    """Name the work done inside (e.g. a suite's arm): bars opened inside are prefixed with it."""
    token = _TASK.set(label)
    try:
        yield
    finally:
        _TASK.reset(token)


def name(what: str) -> str:
    """``what`` prefixed with the enclosing :func:`task` label, unless that label is ``what`` itself."""
    label = _TASK.get()
    return what if label is None or label == what else f"{label}/{what}"


def _env_disabled() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def enabled(progress: bool | None = True) -> bool:
    """Whether progress should be shown: asked for, not ``TQDM_DISABLE``d, logger not above INFO."""
    quiet = logger.level != logging.NOTSET and logger.level > logging.INFO
    return bool(progress) and not _env_disabled() and not quiet


def interactive() -> bool:
    """True on a terminal (stderr is a TTY) or in a Jupyter kernel: draw bars; else log lines."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


class PlainProgress:
    """tqdm's ``update``/``set_description``/``set_postfix_str``/``close`` as periodic log lines."""

    def __init__(self, total: int, desc: str, unit: str, every: float | None = None) -> None:
        self.total, self.desc, self.unit, self.n, self.postfix = int(total), desc, unit, 0, ""
        self.every = float(os.environ.get("FRACTALBAYES_PROGRESS_EVERY", "30")) if every is None else every
        self.start = self.last = time.perf_counter()
        logger.info("%s: started (%d %ss)", self.desc, self.total, self.unit)

    def _line(self) -> str:
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f" [{self.postfix}]" if self.postfix else ""
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}s{percent}, "
                f"{time.perf_counter() - self.start:.1f} s{postfix}")

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self.last >= self.every and self.n < self.total:
            self.last = now
            logger.info("%s", self._line())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.start is not None:
            logger.info("%s", f"{self._line()}: done")
            self.start = None


class _Off:
    """A bar that shows nothing (progress off)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str, unit: str = "step", *, progress: bool | None = True, initial: int = 0) -> Any:
    """A progress bar for ``total`` units named ``desc`` (see the module docstring for where it goes).

    tqdm's ``disable`` is left to tqdm (its ``TQDM_DISABLE`` environment switch applies); a bar
    opened while another is open is nested (``leave=False``) in the next free position.
    """
    if not enabled(progress):
        return _Off()
    if not interactive():
        plain = PlainProgress(total, desc, unit)
        plain.n = int(initial)
        return plain
    from tqdm.auto import tqdm

    nested = bool(getattr(tqdm, "_instances", ()))
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=not nested, dynamic_ncols=True)


class _BarSafeHandler(logging.Handler):
    """Write records with ``tqdm.write``, above the open bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging's contract: report, never raise)
            self.handleError(record)


def configure(verbosity: int = 0) -> None:
    """Send the ``fractalbayes`` logger's messages to stderr, as the command line does.

    ``verbosity``: -1 quiet (warnings and errors only, no progress), 0 normal (INFO: progress and
    phase lines), 1 verbose (DEBUG: also timings of each compiled call). On a terminal lines are
    bare messages; in a file each starts with the time.
    """
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_fractalbayes", False):
            logger.removeHandler(handler)
    handler = _BarSafeHandler() if interactive() else logging.StreamHandler(sys.stderr)
    handler._fractalbayes = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(message)s" if interactive() else "%(asctime)s %(message)s",
                                           datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
