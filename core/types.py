"""Value types shared by the config and every connector's options model.

``Duration`` parses ``"200ms"``, ``"5s"``, ``"1.5m"``, ``"2h"``, ``"7d"`` (or a bare
number of seconds) into seconds as a ``float``; ``ByteSize`` parses ``"64MiB"``,
``"10MB"``, ``"512"`` into bytes as an ``int``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["ByteSize", "Duration", "parse_duration", "parse_size"]

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


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in YAML as ``200ms``, ``5s``, ``1m``, ``2h``, ``7d``."""

ByteSize = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in YAML as ``512``, ``10MB``, ``64MiB``."""
