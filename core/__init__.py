"""Backbone: an event backbone in one process.

A Kafka-wire-compatible log broker (``backbone.broker``) with built-in source and
sink connectors (``backbone.connectors``) around it. This package is the gateway
runtime; its public connector API is re-exported here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from backbone.connector import (
    ConnectorContext,
    ConnectorKind,
    ConnectorOptions,
    Header,
    Sink,
    SinkRecord,
    Source,
    SourceRecord,
)
from backbone.errors import (
    BackboneError,
    ConfigError,
    ConnectorError,
    DataError,
    FatalError,
    RetriableError,
)
from backbone.events import Event
from backbone.types import ByteSize, Duration, parse_duration, parse_size

try:
    __version__ = version("backbone")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BackboneError",
    "ByteSize",
    "ConfigError",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorKind",
    "ConnectorOptions",
    "DataError",
    "Duration",
    "Event",
    "FatalError",
    "Header",
    "RetriableError",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
    "__version__",
    "parse_duration",
    "parse_size",
]
