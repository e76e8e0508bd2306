"""Loading YAML with line/column positions and ``${VAR}`` interpolation.

Called by :mod:`backbone.config`. :func:`load_document` reads a file with
ruamel.yaml's round-trip loader (which remembers where every key and value sits),
replaces ``${VAR}`` / ``${VAR:-default}`` in string scalars from the environment
given to it (``$${`` writes a literal ``${``), and returns plain Python data plus a
:class:`Locations` table mapping every document path to ``(line, column)`` (both
1-based) so that validation errors can point into the file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

__all__ = ["Document", "Locations", "PathKey", "format_path", "load_document"]

PathKey = tuple[str | int, ...]
"""A path in the document: mapping keys and list indexes."""

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Locations:
    """Where each path of a document sits in its file (1-based line and column).

    ``keys`` holds the position of a mapping key, ``values`` the position of the
    value; :meth:`find` falls back to the nearest known ancestor.
    """

    file: str
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: PathKey, *, prefer_key: bool = False) -> tuple[int, int]:
        """The position of ``path`` (its value, or its key if ``prefer_key``)."""
        probe = tuple(path)
        while True:
            first, second = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            if probe in first:
                return first[probe]
            if probe in second:
                return second[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def where(self, path: PathKey, *, prefer_key: bool = False) -> str:
        """``file:line:col`` of ``path``."""
        line, col = self.find(path, prefer_key=prefer_key)
        return f"{self.file}:{line}:{col}"


@dataclass
class Document:
    """A loaded YAML document: plain data, positions and any problems found while loading."""

    data: Any
    locations: Locations
    problems: list[str]


def format_path(path: PathKey) -> str:
    """``("sinks", "warehouse", "topics", 0)`` -> ``sinks.warehouse.topics[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def load_document(path: Path, env: Mapping[str, str], *, display: str | None = None) -> Document:
    """Load ``path``; never raises for bad content (problems are returned, one line each).

    ``display`` is the file name used in messages (default: ``path`` as given).
    Raises :class:`OSError` if the file cannot be read.
    """
    name = display if display is not None else str(path)
    text = path.read_text(encoding="utf-8")
    locations = Locations(name)
    yaml = YAML(typ="rt")
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        return Document(None, locations, [f"{name}:{line}:{col}: invalid YAML: {problem}"])
    except YAMLError as exc:
        return Document(None, locations, [f"{name}:1:1: invalid YAML: {exc}"])
    problems: list[str] = []
    data = _convert(raw, (), locations, env, problems)
    return Document(data, locations, problems)


def _convert(
    node: Any, path: PathKey, loc: Locations, env: Mapping[str, str], problems: list[str]
) -> Any:
    """Round-trip node -> plain Python, recording positions and interpolating strings."""
    if isinstance(node, CommentedMap):
        if path == ():
            loc.values[()] = (node.lc.line + 1, node.lc.col + 1)
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            kline, kcol = node.lc.key(key)
            loc.keys[child] = (kline + 1, kcol + 1)
            vline, vcol = node.lc.value(key)
            loc.values[child] = (vline + 1, vcol + 1)
            out[str(key)] = _convert(value, child, loc, env, problems)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            loc.values[child] = (line + 1, col + 1)
            items.append(_convert(value, child, loc, env, problems))
        return items
    if isinstance(node, str):
        return _interpolate(str(node), path, loc, env, problems)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.datetime):
        return dt.datetime(
            node.year,
            node.month,
            node.day,
            node.hour,
            node.minute,
            node.second,
            node.microsecond,
            tzinfo=node.tzinfo,
        )
    return node


def _interpolate(
    text: str, path: PathKey, loc: Locations, env: Mapping[str, str], problems: list[str]
) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        var, default = match.group(1), match.group(2)
        value = env.get(var)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            problems.append(
                f"{loc.where(path)}: {format_path(path)}: environment variable {var} is not "
                f"set (set it, or write ${{{var}:-default}} to give a default)"
            )
            return ""
        return value

    return _VAR.sub(substitute, text) if "$" in text else text
