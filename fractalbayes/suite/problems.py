"""Problems found in a suite file, each located at its line: ``FILE:LINE: KEY: message``.

Validation collects every problem before raising one :class:`~fractalbayes.errors.SuiteError`, so a
user fixes a file in one pass. A key such as ``arms.sgd.options.learning_rate`` or
``cases[1].'data.options.n'`` is found in the text by its table header and then the line that
names the rest of the key.
"""

from __future__ import annotations

import os
import re
from typing import Any

from fractalbayes.errors import SuiteError

_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def show(value: Any) -> str:
    """A value as a TOML user knows it: its TOML type and its repr (``string 'two'``)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{_TOML_TYPES.get(type(value), type(value).__name__)} {text}"


def _header_name(line: str) -> str | None:
    match = _HEADER.match(line)
    return None if match is None else ".".join(p.strip().strip("\"'") for p in match.group(1).split("."))


class Problems:
    """Problems as ``file:line: key: message`` (the line when the key can be found in the text)."""

    def __init__(self, source: str | os.PathLike, text: str):
        self.source, self.lines = str(source), text.splitlines()
        self.items: list[tuple[str, str]] = []

    def fresh(self) -> Problems:
        """An empty collector for the same file (to try a variant and re-file its problems)."""
        fresh = Problems(self.source, "")
        fresh.lines = self.lines
        return fresh

    def add(self, key: str, message: str) -> None:
        if (key, message) not in self.items:
            self.items.append((key, message))

    def formatted(self) -> list[str]:
        out = []
        for key, message in self.items:
            line = self._locate(key)
            out.append(f"{self.source}:{line}: {key}: {message}" if line else f"{self.source}: {key}: {message}")
        return out

    def raise_if_any(self) -> None:
        if self.items:
            raise SuiteError(self.source, self.formatted())

    def _locate(self, key: str) -> int | None:
        """Line of ``key``: the deepest table header matching a prefix of it, then the line in that
        table naming the rest (``cases[i]`` picks the i-th ``[[cases]]``)."""
        headers = [(n, name) for n, line in enumerate(self.lines, 1) if (name := _header_name(line))]
        parts = re.sub(r"\[(\d+)\]", r".#\1", key.replace("'", "")).split(".")
        nth = int(parts.pop(1)[1:]) if len(parts) > 1 and parts[1].startswith("#") else 0
        parts = [p for p in parts if not p.startswith("#")]
        for cut in range(len(parts), 0, -1):
            starts = [n for n, name in headers if name == ".".join(parts[:cut])]
            if not starts:
                continue
            start = starts[min(nth, len(starts) - 1)]
            end = next((n for n, _ in headers if n > start), len(self.lines) + 1)
            rest = parts[cut:]
            for candidate in [".".join(rest), rest[-1], rest[0]] if rest else []:
                pattern = re.compile(r"(^|[{,])\s*[\"']?" + re.escape(candidate) + r"[\"']?\s*=")
                for n in range(start + 1, end):
                    if pattern.search(self.lines[n - 1]):
                        return n
            return start
        return None
