"""Value types shared by the config and every connector's options model.

``Duration`` parses ``"200ms"``, ``"5s"``, ``"1.5m"``, ``"2h"``, ``"7d"`` (or a bare
number of seconds) into seconds as a ``float``; ``ByteSize`` parses ``"64MiB"``,
``"10MB"``, ``"512"`` into bytes as an ``int``.

Both carry their own JSON schema (a number, or a string matching the unit
pattern), so an editor checking a config against ``backbone connectors
--json-schema`` accepts ``lag: 5s`` and ``segment.bytes: 64MiB``.
:func:`format_duration` and :func:`format_size` write values back the way users
write them (``backbone connectors NAME`` shows defaults such as ``5s``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

__all__ = [
    "ByteSize",
    "Duration",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_duration(value: Any) -> float:
    """Return ``value`` in seconds; accepts numbers and strings like ``"200ms"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "5s", "200ms" or "7d" (got {value!r})')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative (got {value!r})")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    raise ValueError(f'expected a duration like "5s", "200ms" or "7d" (got {value!r})')


def parse_size(value: Any) -> int:
    """Return ``value`` in bytes; accepts integers and strings like ``"64MiB"``, ``"10MB"``."""
    if isinstance(value, bool):
        raise ValueError(f'expected a size like "64MiB" or "10MB" (got {value!r})')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative (got {value!r})")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or "B"])
    raise ValueError(f'expected a size like "64MiB" or "10MB" (got {value!r})')


def _format(amount: float, units: Mapping[str, float], order: tuple[str, ...]) -> str | None:
    for unit in order:
        scaled = amount / units[unit]
        if scaled >= 1 and abs(scaled - round(scaled)) < 1e-9:
            return f"{round(scaled)}{unit}"
    return None


def format_duration(seconds: float) -> str:
    """``seconds`` as the largest whole unit: ``0.2`` -> ``200ms``, ``5.0`` -> ``5s``, ``7d``."""
    if seconds == 0:
        return "0s"
    found = _format(seconds, _DURATION_UNITS, ("d", "h", "m", "s", "ms"))
    return found if found is not None else f"{seconds:g}s"


def format_size(size: int) -> str:
    """``size`` bytes as the largest whole unit: ``1048576`` -> ``1MiB``, ``10**7`` -> ``10MB``."""
    found = _format(size, _SIZE_UNITS, ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"))
    return found if found is not None else f"{size}B"


DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _DURATION.pattern},
    ],
    "examples": ["200ms", "5s", "7d"],
}
"""JSON schema of a :data:`Duration`: seconds, or a string such as ``"5s"``."""

SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": _SIZE.pattern},
    ],
    "examples": ["512", "10MB", "64MiB"],
}
"""JSON schema of a :data:`ByteSize`: bytes, or a string such as ``"64MiB"``."""

Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA, mode="validation")
]
"""Seconds, written in YAML as ``200ms``, ``5s``, ``1m``, ``2h``, ``7d``."""

ByteSize = Annotated[
    int, BeforeValidator(parse_size), WithJsonSchema(SIZE_SCHEMA, mode="validation")
]
"""Bytes, written in YAML as ``512``, ``10MB``, ``64MiB``."""
