"""Where the models and data sets a suite names come from: the trust model of suite files.

A suite file is configuration. The ``name`` of its ``[model]`` and ``[data]`` resolves to one of
two sources and nothing else:

(a) the toolkit's registries, ``fractalbayes.model.zoo.MODELS`` and
    ``fractalbayes.model.data.LOADERS`` (``name = "mlp_classifier"``, ``name = "moons"``);
(b) a module file the suite names by a path relative to the suite file's folder, and a function
    defined with ``def`` at the top level of that file (``name = "my_models.py:my_model"``).

Dotted names into installed packages (``"os:system"``, ``"package.module:function"``) are
refused, and so are absolute paths, paths leaving the suite's folder and files inside the Python
installation (standard library, site-packages). ``sys.path`` is never modified; nothing is
imported from the current folder.

Validation reads a module file as text only (its syntax tree gives the function's parameters, so
the options can be checked): loading a suite, and ``fractalbayes run --dry-run``, never execute
user code. The file is executed by :func:`load_model` / :func:`load_data` when a cell is built,
which also check that the function gives what it promises (a NumPyro model function, a
:class:`~fractalbayes.model.data.Dataset`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fractalbayes.errors import SuiteError
from fractalbayes.model import data as datasets
from fractalbayes.model import zoo as models

REGISTRIES: dict[str, Mapping[str, Callable]] = {"model": models.MODELS, "data": datasets.LOADERS}
"""The toolkit's own models and data loaders, by section of the suite file."""

DATA_ARGUMENTS = {"model": 2, "data": 0}
"""Leading positional parameters that are not options: a model is called as ``model(x, y, **options)``."""

PROMISE = {"model": "a NumPyro model function, called as model(x, y, **options)",
           "data": "a function returning a fractalbayes.model.data.Dataset"}

UNKNOWN = object()
"""The default of a module-file parameter that is not a literal (its type is not checked)."""

REQUIRED = inspect.Parameter.empty
"""A parameter without a default: the suite file must give it (the same marker as the analyses')."""

_FILE_NAME = re.compile(r"^(?P<path>[^:]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")


class Unresolvable(Exception):
    """A name that resolves to neither source; ``str(error)`` says why and what is allowed."""


def allowed_forms(section: str) -> str:
    """The two allowed forms of a name: the registry's names, or a module file and its function."""
    return (f"{', '.join(REGISTRIES[section])}, or 'FILE.py:function' (FILE.py: a module file given by its path "
            f"relative to the suite file's folder, function: {PROMISE[section]} defined there)")


@dataclass(frozen=True)
class Source:
    """What a suite's ``model.name`` or ``data.name`` resolves to (nothing executed yet)."""

    section: str
    """"model" or "data"."""
    name: str
    """As written in the suite file."""
    function: str
    """The registered name, or the function's name in the module file."""
    file: Path | None = None
    """The module file (absolute, resolved); None for the toolkit's registries."""
    sha256: str | None = None
    """sha256 of the module file's text (part of each cell's config hash)."""
    tree: ast.FunctionDef | None = None
    """The function's syntax tree in the module file."""

    @property
    def key(self) -> str:
        return f"{self.section}.name"


def _forbidden_folders() -> list[Path]:
    """The Python installation: standard library and site-packages folders."""
    paths = sysconfig.get_paths()
    folders = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return [Path(f).resolve() for f in folders]


def locate(section: str, name: Any, folder: Path) -> Source:
    """Resolve ``name`` without executing anything; raises :class:`Unresolvable` saying why."""
    registry = REGISTRIES[section]
    if not isinstance(name, str):
        raise Unresolvable(f"must be a string: {allowed_forms(section)}; got {type(name).__name__} {name!r}")
    if ":" not in name:
        if name in registry:
            return Source(section, name, name)
        what = "model" if section == "model" else "data set"
        raise Unresolvable(f"unknown {what} {name!r}; allowed: {allowed_forms(section)}")
    match = _FILE_NAME.match(name)
    if match is None:
        what = "model" if section == "model" else "data set"
        raise Unresolvable(f"{name!r} is refused: a suite file may name only a registered {what} or a function in a "
                           f"module file given by its path (dotted names of installed modules, "
                           f"'package.module:function', are not allowed); allowed: {allowed_forms(section)}")
    relative, function = Path(match["path"]), match["function"]
    if relative.is_absolute() or match["path"].startswith("~"):
        raise Unresolvable(f"{name!r}: the module file must be given relative to the suite file's folder, "
                           f"not as an absolute path")
    try:
        base = folder.resolve()
        path = (base / relative).resolve()
        inside = path.is_relative_to(base)
        installed = any(path.is_relative_to(f) for f in _forbidden_folders())
        exists = inside and not installed and path.is_file()
        text = path.read_text() if exists else ""
        module = ast.parse(text, filename=str(path))
    except SyntaxError as error:
        raise Unresolvable(f"{name!r}: {path}:{error.lineno}: syntax error: {error.msg}") from None
    except (OSError, ValueError, RuntimeError, RecursionError, MemoryError) as error:
        raise Unresolvable(f"{name!r}: cannot read the module file ({type(error).__name__}: {error})") from None
    if not inside:
        raise Unresolvable(f"{name!r}: the module file must lie inside the suite file's folder {base}")
    if installed:
        raise Unresolvable(f"{name!r}: {path} is part of the Python installation; name your own module file")
    if not exists:
        raise Unresolvable(f"{name!r}: no module file {path}")
    defined = {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}
    if function not in defined:
        listed = ", ".join(defined) or "none"
        raise Unresolvable(f"{name!r}: {relative} has no function {function!r} defined with def at its top level "
                           f"(functions there: {listed})")
    return Source(section, name, function, path, hashlib.sha256(text.encode()).hexdigest(), defined[function])


def parameters(source: Source) -> tuple[dict[str, Any], bool]:
    """(option name -> default, REQUIRED or UNKNOWN) of the source's function after its data
    arguments, and whether it takes ``**kwargs``; from the registry function's signature or the
    module file's syntax tree (no code executed)."""
    skip = DATA_ARGUMENTS[source.section]
    if source.file is None:
        params = list(inspect.signature(REGISTRIES[source.section][source.function]).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        data = {p.name for p in positional[:skip]}
        options = {p.name: p.default for p in params
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in data}
        return options, any(p.kind == p.VAR_KEYWORD for p in params)
    args = source.tree.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [REQUIRED] * (len(positional) - len(args.defaults)) + list(args.defaults)
    options = {a.arg: _literal(d) for i, (a, d) in enumerate(zip(positional, defaults))
               if i >= skip and a not in args.posonlyargs}
    options |= {a.arg: REQUIRED if d is None else _literal(d) for a, d in zip(args.kwonlyargs, args.kw_defaults)}
    return options, args.kwarg is not None


def _literal(node: Any) -> Any:
    if node is REQUIRED:
        return REQUIRED
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


def _module(source: Source) -> Any:
    """Execute the module file (the user's code) as a module of its own; ``sys.path`` untouched."""
    digest = hashlib.sha256(str(source.file).encode()).hexdigest()[:10]
    module_name = f"_fractalbayes_suite_file_{re.sub(r'[^A-Za-z0-9_]', '_', source.file.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, source.file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickle look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _function(source: Source) -> Callable:
    if source.file is None:
        return REGISTRIES[source.section][source.function]
    function = getattr(_module(source), source.function, None)
    if not callable(function):
        raise SuiteError(source.file, [f"{source.key}: {source.name!r} is {type(function).__name__} after the module "
                                       f"ran, not {PROMISE[source.section]}"])
    return function


def load_model(source: Source) -> Callable:
    """The model function (the module file is executed here, not before)."""
    return _function(source)


def load_data(source: Source, options: Mapping[str, Any]) -> datasets.Dataset:
    """The data set: the loader called with ``options``, checked to be a :class:`Dataset`."""
    dataset = _function(source)(**options)
    if not isinstance(dataset, datasets.Dataset):
        where = source.file or source.name
        raise SuiteError(where, [f"{source.key}: {source.name!r} returned {type(dataset).__name__}, not a "
                                 f"fractalbayes.model.data.Dataset: return fb.data.Dataset(x_train, y_train, "
                                 f"x_test, y_test, name, info)"])
    return dataset


class Resolver:
    """Resolves the names of one suite file (relative to its folder), each module file read once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.sources: dict[tuple[str, str], Source] = {}

    def locate(self, section: str, name: Any) -> Source:
        key = (section, name if isinstance(name, str) else repr(name))
        if key not in self.sources:
            self.sources[key] = locate(section, name, self.folder)
        return self.sources[key]

    def files(self) -> dict[str, str]:
        """Name as written -> sha256, of every module file resolved so far."""
        return {s.name: s.sha256 for s in self.sources.values() if s.file is not None}
