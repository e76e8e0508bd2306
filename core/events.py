"""Events on the wire: serialization, CloudEvents headers, the processor ``Event``.

The source worker encodes every record a source returns with its
:class:`SourceEncoder` (:func:`encode_source_record` is the one-off form):
the value becomes JSON (``bytes`` pass through untouched, ``None`` stays a
tombstone), the key becomes bytes (``str`` as UTF-8, ``bytes`` as is, anything
else as JSON), and CloudEvents 1.0 binary-mode headers (Kafka protocol binding)
are added unless the record already carries them:

``ce_specversion`` ``1.0``; ``ce_id`` a UUIDv5 of ``backbone://<connector>`` and
the JSON of the record's ``identity`` when set, else of its position (so a re-sent
record keeps its id; random when both are ``None``); ``ce_source``
``backbone://<connector>``; ``ce_type`` the record's ``event_type`` or
``backbone.<kind>``; ``ce_time`` the record's timestamp in ISO-8601 UTC;
``content-type`` ``application/json`` (or ``application/octet-stream`` for bytes).

Processors receive and return :class:`Event` objects (:func:`event_from_record`,
:func:`encode_event`).

JSON on the record path goes through orjson (several times faster than the
standard library); what orjson cannot handle exactly falls back to the standard
library, so the bytes and the errors stay those of :mod:`json`: integers beyond
64 bits, non-string dict keys and nesting deeper than 254 levels when encoding;
``NaN``/``Infinity``, UTF-16/32 input and integers beyond 64 bits when decoding.
Values differ from :mod:`json`'s in two ways only: ``NaN`` and infinite floats
are written ``null`` (valid JSON, as JavaScript writes them) and small floats
may be written without an exponent (``0.00001`` for ``1e-05``). Keys and the
names hashed into ``ce_id`` keep the standard library's exact bytes, because
partitioning, compaction and ids depend on them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import json.encoder
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from backbone.connector import Header, SinkRecord, SourceRecord
from backbone.errors import DataError
from backbone.json_codec import loads, maybe_json

__all__ = [
    "Event",
    "IdentityJSON",
    "SourceEncoder",
    "decode_value",
    "encode_event",
    "encode_key",
    "encode_source_record",
    "encode_value",
    "event_from_record",
    "event_key",
    "iso_time",
    "loads",
    "maybe_json",
    "shared_position_message",
]

_CE_NAMESPACE = uuid.UUID("6f1b8e8e-3c1a-4f0e-9a57-2b8c5c1f3e11")

# Bound ``encode`` methods of configured encoders: ``json.dumps`` with keyword
# arguments builds a new JSONEncoder on every call, these are built once.
_VALUE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_KEY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
_POSITION_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode

# The same encoding as _POSITION_JSON, with the C encoder built once: ``JSONEncoder.encode``
# builds it again on every call, which was most of the cost of a ce_id.
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ID_CHUNKS = (
    None
    if _C_ENCODER is None
    else _C_ENCODER(
        None, str, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )
)


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


# _KEY_JSON's encoding (sort_keys, not ASCII-only) with the C encoder built once
_KEY_CHUNKS = (
    None
    if _C_ENCODER is None
    else _C_ENCODER(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
)


_ENCODE_STR = json.encoder.encode_basestring  # a str as _KEY_CHUNKS writes it
_dumps = orjson.dumps


class IdentityJSON(str):
    """A record's ``identity`` given as the JSON text ``ce_id`` is derived from.

    A source that writes many records of one shape can build this text itself, per
    batch, where it knows the value types; it must be exactly the standard library's
    ``json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)``
    (ASCII-only) of the identity it stands for, so the ``ce_id`` stays the same.
    """

    __slots__ = ()


def _id_json(value: Any) -> str:
    """``_POSITION_JSON(value)``, faster (no circular-reference check: positions are data)."""
    if _ID_CHUNKS is None:  # pragma: no cover - CPython always has the C encoder
        return _POSITION_JSON(value)
    return "".join(_ID_CHUNKS(value, 0))


_BUFFERS = (bytearray, memoryview)


def encode_value(value: Any) -> bytes | None:
    """JSON bytes of ``value`` (bytes as is, ``None`` stays ``None``); DataError if impossible."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, _BUFFERS):
        return bytes(value)
    try:
        return orjson.dumps(value)
    except TypeError:
        pass  # what orjson refuses, the standard library may do, or explain
    try:  # keys that are not exactly str (a str subclass, an int) as the standard library has them
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return _VALUE_JSON(value).encode()
    except (TypeError, ValueError) as exc:
        raise DataError(f"value cannot be serialized as JSON: {exc}") from exc


def encode_key(key: Any) -> bytes | None:
    """Key bytes: ``str`` as UTF-8, ``bytes`` as is, ``None`` stays ``None``, else JSON."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    try:
        if _KEY_CHUNKS is None:  # pragma: no cover - CPython always has the C encoder
            return _KEY_JSON(key).encode()
        return "".join(_KEY_CHUNKS(key, 0)).encode()
    except (TypeError, ValueError) as exc:
        raise DataError(f"key cannot be serialized as JSON: {exc}") from exc
    except RecursionError as exc:  # a key that contains itself (no circular check here)
        raise DataError("key cannot be serialized as JSON: it contains itself") from exc


def decode_value(data: bytes | None) -> Any:
    """JSON-decoded ``data``; bytes that are not JSON stay bytes."""
    if data is None:
        return None
    if not maybe_json(data):
        return data
    try:
        return loads(data)
    except ValueError:
        return data


def shared_position_message(connector: str, record: SourceRecord, previous: Any) -> str:
    """Why ``record`` breaks rule 3 of the contract (see :mod:`backbone.connector`).

    The runtime's check, per record, is ``record.identity is None and
    (record.position is None or record.position == previous)``, ``previous`` being
    the position of the record before it (the position given to ``open`` for the
    first one): such a record would get the ``ce_id`` of another change.
    """
    if record.position is None:
        what = "carries position=None"
    else:
        what = f"has the same position as the record before it ({record.position!r})"
    return (
        f"source {connector} broke the connector contract: a record {what} and no "
        "identity, so its ce_id would collide with another change's; set "
        "SourceRecord.identity to something that names the change (e.g. its key and "
        "version), unique within the connector"
    )


def iso_time(timestamp_ms: int) -> str:
    """``1714521600000`` -> ``2024-05-01T00:00:00.000Z``."""
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    """Serialize ``record`` and add CloudEvents headers (see the module docstring).

    One-off form of :meth:`SourceEncoder.encode`; the source worker keeps a
    :class:`SourceEncoder` instead.
    """
    return SourceEncoder(connector=connector, kind=kind, topic=topic).encode(record, now_ms)


_SPECVERSION = b"1.0"
_JSON_TYPE = b"application/json"
_BYTES_TYPE = b"application/octet-stream"
_SPEC_HEADER: Header = ("ce_specversion", _SPECVERSION)
_JSON_HEADER: Header = ("content-type", _JSON_TYPE)
_BYTES_HEADER: Header = ("content-type", _BYTES_TYPE)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_CE_NAMES = frozenset(
    ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")
)


class SourceEncoder:
    """Serializes one source's records; built once per source worker.

    Everything that is the same for every record of the connector (the
    ``ce_source`` bytes, the default ``ce_type``, the hash state of the
    ``ce_id`` name prefix) is computed here once; :meth:`encode` does the
    per-record part. The output is identical to :func:`encode_source_record`.
    """

    def __init__(self, *, connector: str, kind: str, topic: str) -> None:
        self.topic = topic
        self._source = f"backbone://{connector}".encode()
        self._default_type = f"backbone.{kind}".encode()
        # uuid5 = SHA-1 of namespace bytes + name; the name starts with this prefix.
        self._id_prefix = hashlib.sha1(
            _CE_NAMESPACE.bytes + f"backbone://{connector}/".encode(), usedforsecurity=False
        )
        self._time_ms = -1
        self._time: Header = ("ce_time", b"")
        # the header pairs that repeat from record to record, built once
        self._source_header: Header = ("ce_source", self._source)
        self._type_header: Header = ("ce_type", self._default_type)
        self._event_type: str | None = None  # the event_type of _type_header (None: default)
        self._key_name: str | None = None  # the name of the last one-entry dict key...
        self._key_prefix = ""  # ...and its JSON up to the value: '{"id":'

    def event_id(self, position: Any, identity: Any = None) -> bytes:
        """``ce_id`` bytes: UUIDv5 of the connector and the JSON of the record's
        ``identity`` (``{"identity": ...}``) or else of its position (random for None)."""
        if identity is not None:  # = _id_json({"identity": identity})
            if type(identity) is IdentityJSON:  # the JSON text already (the sql source)
                name = f'{{"identity":{identity}}}'
            else:
                name = f'{{"identity":{_id_json(identity)}}}'
        elif type(position) is int:
            name = str(position)  # the JSON of an int, without the encoder
        elif position is not None:
            name = _id_json(position)
        else:
            return str(uuid.uuid4()).encode()
        digest = self._id_prefix.copy()
        digest.update(name.encode())
        h = digest.hexdigest()
        # version 5 in the 13th hex digit, the RFC 4122 variant in the 17th
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}".encode()

    def _one_key(self, key: dict[Any, Any]) -> bytes | None:
        """:func:`encode_key` of a one-entry dict, the usual ``{"id": 42}``, the same bytes
        without the JSON encoder when the name is a ``str`` and the value an ``int`` or ``str``."""
        ((name, value),) = key.items()
        kind = type(value)
        if type(name) is not str or not (kind is str or (kind is int and value.bit_length() <= 64)):
            return encode_key(key)
        if name != self._key_name:
            self._key_name = name
            self._key_prefix = "{" + _ENCODE_STR(name) + ":"
        try:
            if kind is int:
                return f"{self._key_prefix}{value}}}".encode()
            return f"{self._key_prefix}{_ENCODE_STR(value)}}}".encode()
        except UnicodeEncodeError:  # a lone surrogate: encode_key's DataError
            return encode_key(key)

    def encode(self, record: SourceRecord, now_ms: int) -> Encoded:
        """Serialize ``record`` and add the CloudEvents headers it does not carry yet."""
        raw = record.value
        value: bytes | None
        if type(raw) is dict:  # the usual value: encode_value's first try, without the call
            try:
                value = _dumps(raw)
            except TypeError:
                value = encode_value(raw)
        else:
            value = encode_value(raw)
        key = record.key
        if key is not None and not isinstance(key, bytes):
            if isinstance(key, str):
                key = key.encode()
            elif type(key) is dict and len(key) == 1:
                key = self._one_key(key)
            else:
                key = encode_key(key)
        timestamp = record.timestamp_ms
        if timestamp is None:
            timestamp = now_ms
        if timestamp != self._time_ms:
            self._time = ("ce_time", iso_time(timestamp).encode())
            self._time_ms = timestamp
        event_type = record.event_type
        if event_type != self._event_type:
            self._type_header = (
                "ce_type",
                event_type.encode() if event_type else self._default_type,
            )
            self._event_type = event_type
        headers: list[Header] = [
            _SPEC_HEADER,
            ("ce_id", self.event_id(record.position, record.identity)),
            self._source_header,
            self._type_header,
            self._time,
        ]
        if value is not None:
            headers.append(_BYTES_HEADER if isinstance(raw, bytes) else _JSON_HEADER)
        if record.headers:
            own = list(record.headers)
            present = {name for name, _ in own}
            if present & _CE_NAMES:
                headers = [item for item in headers if item[0] not in present]
            own.extend(headers)
            headers = own
        return Encoded(record.topic or self.topic, key, value, headers, timestamp)


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


def event_key(data: bytes | None) -> Any:
    """An :class:`Event`'s key for consumed key bytes: JSON-decoded when it is JSON, else
    text when it is UTF-8, else the bytes."""
    if data is None:
        return None
    key = decode_value(data)
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    return key


def event_from_record(record: SinkRecord) -> Event:
    """The :class:`Event` a processor receives for a consumed record."""
    return Event(
        value=decode_value(record.value),
        key=event_key(record.key),
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
