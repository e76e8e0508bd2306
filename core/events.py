"""Events on the wire: serialization, CloudEvents headers, the processor ``Event``.

The runner calls :func:`encode_source_record` for every record a source returns:
the value becomes JSON (``bytes`` pass through untouched, ``None`` stays a
tombstone), the key becomes bytes (``str`` as UTF-8, ``bytes`` as is, anything
else as JSON), and CloudEvents 1.0 binary-mode headers (Kafka protocol binding)
are added unless the record already carries them:

``ce_specversion`` ``1.0``; ``ce_id`` a UUIDv5 of ``backbone://<connector>`` and
the JSON of the record's position (so a re-sent record keeps its id; random when
the position is ``None``); ``ce_source`` ``backbone://<connector>``; ``ce_type``
the record's ``event_type`` or ``backbone.<kind>``; ``ce_time`` the record's
timestamp in ISO-8601 UTC; ``content-type`` ``application/json`` (or
``application/octet-stream`` for bytes).

Processors receive and return :class:`Event` objects (:func:`event_from_record`,
:func:`encode_event`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from backbone.connector import Header, SinkRecord, SourceRecord
from backbone.errors import DataError

__all__ = [
    "Event",
    "decode_value",
    "encode_event",
    "encode_key",
    "encode_source_record",
    "encode_value",
    "event_from_record",
    "iso_time",
]

_CE_NAMESPACE = uuid.UUID("6f1b8e8e-3c1a-4f0e-9a57-2b8c5c1f3e11")


def encode_value(value: Any) -> bytes | None:
    """JSON bytes of ``value`` (bytes as is, ``None`` stays ``None``); DataError if impossible."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise DataError(f"value cannot be serialized as JSON: {exc}") from exc


def encode_key(key: Any) -> bytes | None:
    """Key bytes: ``str`` as UTF-8, ``bytes`` as is, ``None`` stays ``None``, else JSON."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    try:
        return json.dumps(key, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise DataError(f"key cannot be serialized as JSON: {exc}") from exc


def decode_value(data: bytes | None) -> Any:
    """JSON-decoded ``data``; bytes that are not JSON stay bytes."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data


def iso_time(timestamp_ms: int) -> str:
    """``1714521600000`` -> ``2024-05-01T00:00:00.000Z``."""
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloudevent_id(connector: str, position: Any) -> str:
    """Deterministic id from the connector and the position (random if no position)."""
    if position is None:
        return str(uuid.uuid4())
    text = json.dumps(position, sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.uuid5(_CE_NAMESPACE, f"backbone://{connector}/{text}"))


@dataclass(slots=True)
class Encoded:
    """A record ready for the producer."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    timestamp_ms: int | None


def encode_source_record(
    record: SourceRecord, *, connector: str, kind: str, topic: str, now_ms: int
) -> Encoded:
    """Serialize ``record`` and add CloudEvents headers (see the module docstring)."""
    value = encode_value(record.value)
    key = encode_key(record.key)
    timestamp = record.timestamp_ms if record.timestamp_ms is not None else now_ms
    headers = list(record.headers)
    present = {name for name, _ in headers}
    ce = [
        ("ce_specversion", "1.0"),
        ("ce_id", cloudevent_id(connector, record.position)),
        ("ce_source", f"backbone://{connector}"),
        ("ce_type", record.event_type or f"backbone.{kind}"),
        ("ce_time", iso_time(timestamp)),
    ]
    if value is not None:
        ce.append(
            (
                "content-type",
                "application/octet-stream"
                if isinstance(record.value, bytes)
                else "application/json",
            )
        )
    headers.extend((name, text.encode()) for name, text in ce if name not in present)
    return Encoded(record.topic or topic, key, value, headers, timestamp)


@dataclass(slots=True)
class Event:
    """An event as a processor function sees it.

    ``value`` and ``key`` are JSON-decoded when they are JSON (else bytes);
    ``headers`` a list of ``(name, bytes)``. A processor returns this event
    (changed or not), new ``Event`` objects, a list of them, or ``None`` to drop
    it. ``topic`` (``None`` on input) set on an output event overrides the
    processor's ``to``. ``input_topic``/``partition``/``offset``/``timestamp_ms``
    describe where the input came from.
    """

    value: Any
    key: Any = None
    headers: list[Header] = field(default_factory=list)
    topic: str | None = None
    input_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        """The last header named ``name``, or ``None``."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


def event_from_record(record: SinkRecord) -> Event:
    """The :class:`Event` a processor receives for a consumed record."""
    key: Any = None
    if record.key is not None:
        key = decode_value(record.key)
        if isinstance(key, bytes):
            try:
                key = key.decode()
            except UnicodeDecodeError:
                pass
    return Event(
        value=decode_value(record.value),
        key=key,
        headers=list(record.headers),
        input_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
    )


def encode_event(event: Event, *, default_topic: str | None) -> Encoded:
    """Serialize a processor's output event (DataError if it cannot be, or has no topic)."""
    topic = event.topic or default_topic
    if topic is None:
        raise DataError("the output event names no topic and the processor has no 'to'")
    value = encode_value(event.value)
    headers = [(n, v) for n, v in event.headers if n != "content-type"]
    if value is not None:
        kind = "application/octet-stream" if isinstance(event.value, bytes) else "application/json"
        headers.append(("content-type", kind.encode()))
    timestamp = event.timestamp_ms if event.timestamp_ms and event.timestamp_ms > 0 else None
    return Encoded(topic, encode_key(event.key), value, headers, timestamp)
