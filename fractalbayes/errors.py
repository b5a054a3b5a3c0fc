"""Errors raised before any work is done, naming the problem and the fix."""


class ModelError(ValueError):
    """The model, its data or a sampler option cannot be used as given."""


class SamplerError(RuntimeError):
    """Sampling went wrong in a way no chain recovered from (e.g. every chain diverged)."""
