"""JAX's persistent compilation cache, on by default, so that a second process skips compilation.

``import fractalbayes`` calls :func:`enable` once: compiled XLA executables are written to

    $FRACTALBAYES_CACHE_DIR                      if set, else
    $XDG_CACHE_HOME/fractalbayes/jax             (XDG_CACHE_HOME defaults to ~/.cache)

and read back by any later process that compiles the same program (same jax/jaxlib version,
device kind, XLA flags and shapes: JAX's own cache key). Set ``FRACTALBAYES_NO_CACHE=1`` to leave
JAX's configuration untouched. A cache folder the user configured for JAX itself
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept.

JAX only writes programs that took at least ``jax_persistent_cache_min_compile_time_secs`` (1 s by
default) to compile. The LLC workload of docs/performance.md is made of about ten programs of
0.05-2 s each, so the threshold here is :data:`MIN_COMPILE_SECONDS`: programs cheaper than that
cost more to read back than to compile, and skipping them keeps eager one-op programs off the disk.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

MIN_COMPILE_SECONDS = 0.0
"""Programs that compile faster than this are not written to the cache."""

_OFF = ("1", "true", "yes", "on")


def default_folder() -> Path:
    """The cache folder this process would use (whether or not caching is on)."""
    given = os.environ.get("FRACTALBAYES_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fractalbayes" / "jax"


def disabled() -> bool:
    """True when ``FRACTALBAYES_NO_CACHE`` is set to 1/true/yes/on."""
    return os.environ.get("FRACTALBAYES_NO_CACHE", "").strip().lower() in _OFF


def enable(folder: str | os.PathLike | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``folder`` (default :func:`default_folder`).

    Returns the folder in use, or None when caching is off (``FRACTALBAYES_NO_CACHE=1`` and no
    explicit ``folder``) or the folder cannot be created (a warning says why). A folder already
    configured for JAX is kept unless ``folder`` is given.
    """
    configured = jax.config.jax_compilation_cache_dir
    if folder is None:
        if disabled():
            return None
        if configured:
            return Path(configured)
    path = Path(folder).expanduser() if folder is not None else default_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(f"fractalbayes: compilation cache off, cannot create {path} ({error}); set "
                      f"FRACTALBAYES_CACHE_DIR to a writable folder or FRACTALBAYES_NO_CACHE=1", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
