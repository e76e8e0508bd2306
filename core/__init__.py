"""Backbone: an event backbone in one process.

A Kafka-wire-compatible log broker (``backbone.broker``) with built-in source and
sink connectors (``backbone.connectors``) around it. This package is the gateway
runtime; the connector SDK (:mod:`backbone.sdk`) and the processor ``Event`` are
re-exported here.

The names are loaded lazily (PEP 562): ``import backbone.broker`` imports this
package first, and must stay cheap and free of the gateway's dependencies
(pydantic, aiokafka), so the broker is usable alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backbone.errors import ConfigError
    from backbone.events import Event
    from backbone.sdk import (
        MISSING,
        RESERVED_OPTIONS,
        BackboneError,
        ByteSize,
        Clock,
        ConnectorContext,
        ConnectorError,
        ConnectorKind,
        ConnectorOptions,
        ContractError,
        DataError,
        DedupeWindow,
        Delivery,
        Duration,
        FatalError,
        Header,
        HttpError,
        HttpRoutes,
        IdentityJSON,
        Offload,
        Push,
        RetriableError,
        SignatureError,
        Sink,
        SinkRecord,
        Source,
        SourceRecord,
        StagedFile,
        StateDir,
        SystemClock,
        Template,
        Timetable,
        TopicPartition,
        format_duration,
        format_size,
        fsync_dir,
        hmac_signature,
        json_loads,
        json_pointer,
        maybe_json,
        move_file,
        orjson_exact,
        parse_duration,
        parse_retry_after,
        parse_size,
        standard_webhook_key,
        standard_webhook_signature,
        stripe_signature,
        verify_github,
        verify_hmac,
        verify_standard_webhook,
        verify_stripe,
    )

__all__ = [
    "MISSING",
    "RESERVED_OPTIONS",
    "BackboneError",
    "ByteSize",
    "Clock",
    "ConfigError",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorKind",
    "ConnectorOptions",
    "ContractError",
    "DataError",
    "DedupeWindow",
    "Delivery",
    "Duration",
    "Event",
    "FatalError",
    "Header",
    "HttpError",
    "HttpRoutes",
    "IdentityJSON",
    "Offload",
    "Push",
    "RetriableError",
    "SignatureError",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
    "StagedFile",
    "StateDir",
    "SystemClock",
    "Template",
    "Timetable",
    "TopicPartition",
    "__version__",
    "format_duration",
    "format_size",
    "fsync_dir",
    "hmac_signature",
    "json_loads",
    "json_pointer",
    "maybe_json",
    "move_file",
    "orjson_exact",
    "parse_duration",
    "parse_retry_after",
    "parse_size",
    "standard_webhook_key",
    "standard_webhook_signature",
    "stripe_signature",
    "verify_github",
    "verify_hmac",
    "verify_standard_webhook",
    "verify_stripe",
]

# where each lazily loaded name lives (everything else in __all__ comes from the SDK)
_ELSEWHERE = {"ConfigError": "backbone.errors", "Event": "backbone.events"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("backbone")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            found = "0.0.0"
    elif name in __all__:
        found = getattr(importlib.import_module(_ELSEWHERE.get(name, "backbone.sdk")), name)
    else:
        raise AttributeError(f"module 'backbone' has no attribute {name!r}")
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
