"""Annotated value types of the config file: topic names, HOST:PORT, start points,
raw Kafka topic config values (sizes and durations converted)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, WithJsonSchema

from backbone.broker.config import parse_host_port
from backbone.types import parse_duration, parse_size

__all__ = [
    "FUNCTION",
    "NAME",
    "ConfigValue",
    "HostPort",
    "Start",
    "TopicName",
    "kafka_number",
    "split",
]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _topic_name(value: Any) -> Any:
    if isinstance(value, str) and not _TOPIC.match(value):
        raise ValueError(
            f"{value!r} is not a valid topic name "
            "(1-249 characters: letters, digits, '.', '_', '-')"
        )
    return value


def _host_port(value: Any) -> Any:
    if isinstance(value, str):
        parse_host_port(value)  # the broker's one parser: ValueError names the value
    return value


def split(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` (other values as given)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _start(value: Any) -> Any:
    if value in ("earliest", "latest"):
        return value
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise ValueError(
        f"expected earliest, latest or an ISO-8601 timestamp like 2024-05-01T00:00:00Z "
        f"(got {value!r})"
    )


_INTEGER = re.compile(r"^\s*-?\d+\s*$")


def kafka_number(key: str, value: Any) -> Any:
    """A raw topic config value, with sizes (``*.bytes``) and durations (``*.ms``) converted.

    ``segment.bytes: 64MiB`` -> ``"67108864"``, ``retention.ms: 7d`` -> ``"604800000"``.
    Integers and integer strings (``-1`` included: Kafka's "unlimited") pass through
    unchanged; other values of such keys raise :class:`ValueError`. Values of other
    keys are returned as given.
    """
    if key.endswith(".bytes"):
        unit, expected = "size", 'a size like "64MiB" or a whole number of bytes'
    elif key.endswith(".ms"):
        unit, expected = "ms", 'a duration like "7d" or a whole number of milliseconds'
    else:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        if _INTEGER.match(value):
            return value.strip()
        try:
            if unit == "size":
                return str(parse_size(value))
            millis = parse_duration(value) * 1000
        except ValueError:
            pass
        else:
            if abs(millis - round(millis)) < 1e-6:
                return str(round(millis))
    raise ValueError(f"expected {expected} (got {value!r})")


def _config_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


TopicName = Annotated[str, BeforeValidator(_topic_name)]
HostPort = Annotated[str, BeforeValidator(_host_port)]
Start = Annotated[
    Literal["earliest", "latest"] | dt.datetime,
    BeforeValidator(_start),
]
ConfigValue = Annotated[
    str,
    BeforeValidator(_config_value),
    WithJsonSchema({"type": ["string", "integer", "number", "boolean"]}, mode="validation"),
]
