"""The toolkit's one error family: every error names the problem and the fix.

    FractalBayesError              base of everything fractalbayes raises on purpose
    ├── InputError (ValueError)    an argument of the public API is out of range or of the wrong type
    │   └── ModelError             the model or its data cannot be used as given
    ├── SamplerError (RuntimeError) sampling went wrong in a way no chain recovered from
    ├── SuiteError (ValueError)    a suite file or a command's use of it cannot be run
    └── RunFileError (OSError)     a run file cannot be read (missing, corrupt, unknown format)
"""

from __future__ import annotations

import os
from collections.abc import Sequence


class FractalBayesError(Exception):
    """Base of every error fractalbayes raises on purpose."""


class InputError(FractalBayesError, ValueError):
    """An argument cannot be used as given; the message names it and what is allowed."""


class ModelError(InputError):
    """The model, its data or a sampler option cannot be used as given."""


class SamplerError(FractalBayesError, RuntimeError):
    """Sampling went wrong in a way no chain recovered from (e.g. every chain diverged)."""


class RunFileError(FractalBayesError, OSError):
    """A run file cannot be read: missing, truncated, corrupt, or of an unknown format version."""


class SuiteError(FractalBayesError, ValueError):
    """A suite file (or a command's use of it) cannot be run; ``problems`` lists every problem."""

    def __init__(self, source: str | os.PathLike, problems: Sequence[str]):
        self.source, self.problems = str(source), list(problems)
        super().__init__(f"{self.source}: {len(self.problems)} problem(s):\n  " + "\n  ".join(self.problems))
