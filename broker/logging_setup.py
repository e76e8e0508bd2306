"""Logging of the command-line programs: ``--log-level`` and ``--log-format text|json``.

Used by ``python -m backbone.broker`` / ``backbone broker`` (``backbone.broker.cli``)
and by every other ``backbone`` command (the gateway CLI imports it: one
implementation, no dependency beyond the standard library). Libraries never call
it; they only log through ``logging.getLogger(__name__)``.

``text`` (the default) writes ``2024-05-01 12:00:00,123 INFO backbone.runner: message``
lines for people. ``json`` writes one JSON object per line for log shippers
(Vector, Fluent Bit, Loki, Elasticsearch)::

    {"time": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "backbone.runner",
     "message": "source orders started", "extra": {"connector": "orders"}}

``extra`` holds the context a call passed with ``extra={...}`` (``connector``,
``topic``, ``partition``...), present only when there is some; ``exception`` holds
the formatted traceback of ``logger.exception`` calls.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "configure_logging", "parse_log_level"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def parse_log_level(value: str) -> int:
    """``"info"``/``"INFO"`` -> ``logging.INFO``; ValueError naming the accepted names."""
    name = value.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(
            f"log level must be one of {', '.join(n.lower() for n in LOG_LEVELS)} (got {value!r})"
        )
    return int(getattr(logging, name))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extra:
            entry["extra"] = extra
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str | int = "INFO", log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Send log records of ``level`` and above to ``stream`` (stderr) as text or JSON lines.

    Like ``logging.basicConfig``: does nothing to the handlers when the root logger
    already has some (an embedding application configured logging itself).
    Raises ValueError for an unknown level or format.
    """
    number = parse_log_level(level) if isinstance(level, str) else level
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be text or json (got {log_format!r})")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=number, handlers=[handler])
