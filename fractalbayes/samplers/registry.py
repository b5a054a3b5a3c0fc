"""The one registry of everything ``fb.sample`` accepts: kernels and composite methods alike.

A :class:`SamplerSpec` carries the sampler's typed options (name, default, validator, one line of
documentation) and how to run it:

- a *kernel* (sgd, sgld, sghmc, nuts, ...) has ``build(target, options, total_steps) -> (Kernel,
  hyper)``, and the engine's scan driver runs it;
- a *method* (the fractal sampler) has ``run(target, settings, options) -> Run`` and composes the
  layers below it; it declares which run settings it takes (``run_settings``).

Sampler modules register themselves with :func:`register` when imported; ``fb.sample``, the
suite-file schema and the documentation tables all read the same specs, so adding a sampler
touches one file. Options are validated with :mod:`fractalbayes.checks` before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fractalbayes import checks
from fractalbayes.errors import ModelError

RUN_SETTINGS = ("num_chains", "num_samples", "burn_in", "thin", "seed", "init", "num_checkpoints",
                "checkpoint_start", "record_window", "progress", "stats", "devices", "shared_batches", "prng_impl")
"""The run settings of ``fb.sample`` (besides the sampler's options); kernels take them all."""


@dataclass(frozen=True)
class Option:
    """One typed sampler option: its default, its validator and what it means."""

    name: str
    default: Any
    validate: checks.Validator
    doc: str
    table: tuple[Option, ...] | None = None
    """For a nested table of options (e.g. the fractal sampler's ``sgd``): its own options."""

    @property
    def want(self) -> str:
        return "a table" if self.table is not None else getattr(self.validate, "want", "any value")


def table(options: Sequence[Option], owner: str) -> checks.Validator:
    """Validator of a nested table: a dict whose keys are ``options`` names, each validated."""
    by_name = {o.name: o for o in options}

    def validate(value):
        if not isinstance(value, Mapping):
            raise checks.Invalid(f"must be a table (dict) of {owner} options, got {checks.show(value)}")
        unknown = sorted(set(value) - set(by_name))
        if unknown:
            raise checks.Invalid(f"has unknown key(s) {unknown}; allowed: {sorted(by_name)}")
        resolved = {}
        for name, option in by_name.items():
            given = value.get(name, option.default)
            try:
                resolved[name] = option.validate(given) if name in value else given
            except checks.Invalid as reason:
                raise checks.Invalid(f"key {name!r} {reason}") from None
        return resolved

    validate.want = "a table"
    return validate


def nested(name: str, options: Sequence[Option], doc: str, owner: str) -> Option:
    """An option holding a table of further options (defaults filled in, unknown keys refused)."""
    return Option(name, {}, table(options, f"{owner}'s {name}"), doc, table=tuple(options))


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its name, options and how the engine runs it."""

    name: str
    summary: str
    options: tuple[Option, ...]
    build: Callable | None = None
    """Kernels: ``build(target, options, total_steps) -> (Kernel, hyper)``."""
    run: Callable | None = None
    """Methods: ``run(target, settings: RunConfig, options, progress) -> Run``."""
    run_settings: tuple[str, ...] = RUN_SETTINGS
    warmup: bool = False
    """True when burn-in adapts the kernel (NUTS window adaptation) instead of running steps."""

    def __post_init__(self):
        if (self.build is None) == (self.run is None):
            raise TypeError(f"sampler {self.name!r}: give exactly one of build (a kernel) or run (a method)")

    @property
    def kind(self) -> str:
        return "kernel" if self.build is not None else "method"

    @property
    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in, every given value validated; unknown names refused."""
        checks.unknown_names(f"sampler {self.name!r}", list(given), [o.name for o in self.options])
        resolved = {}
        for option in self.options:
            if option.name in given:
                value = checks.check(f"{self.name}: option {option.name}", given[option.name], option.validate,
                                     ModelError)
            else:
                value = option.validate(option.default) if option.table is not None else option.default
            resolved[option.name] = value
        return resolved

    def table_rows(self) -> list[dict[str, str]]:
        """The options as documentation rows (name, default, allowed, meaning)."""
        return [{"option": o.name, "default": repr(o.default), "allowed": o.want, "meaning": o.doc}
                for o in self.options]


REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler to the registry (a module-level call in the sampler's own file)."""
    if spec.name in REGISTRY and REGISTRY[spec.name] is not spec:
        raise ValueError(f"a sampler named {spec.name!r} is registered already")
    REGISTRY[spec.name] = spec
    return spec


def get(name: Any) -> SamplerSpec:
    """The spec of a registered sampler, else a ModelError listing the registered names."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ModelError(f"unknown sampler {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def markdown_table(spec: SamplerSpec) -> str:
    """The spec's options as a Markdown table (docs/guide.md is checked against these)."""
    lines = ["| option | default | allowed | meaning |", "|---|---|---|---|"]
    for row in spec.table_rows():
        lines.append("| " + " | ".join(f"`{row['option']}`" if k == "option" else row[k].replace("|", "\\|")
                                       for k in ("option", "default", "allowed", "meaning")) + " |")
    return "\n".join(lines)


def replace_defaults(options: Sequence[Option], **defaults: Any) -> tuple[Option, ...]:
    """The same options with some defaults changed (e.g. the fractal sampler's SGD ensemble)."""
    unknown = set(defaults) - {o.name for o in options}
    if unknown:
        raise ValueError(f"no option(s) {sorted(unknown)} to change")
    return tuple(dataclasses.replace(o, default=defaults[o.name]) if o.name in defaults else o for o in options)
