"""Column values to JSON and back, row hashes, and the source-position codec.

The source turns every column value into JSON with :func:`to_json` (the table is in
the package docstring); the sink turns JSON back into what a column expects with
:func:`from_json`. Cursor values inside positions keep their database type through
:func:`dump_cursor` / :func:`load_cursor`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

__all__ = ["column_json", "dump_cursor", "from_json", "load_cursor", "row_hash", "to_json"]


_AS_IS = frozenset((str, int, bool, type(None)))


def to_json(value: Any, zone: ZoneInfo) -> Any:
    """A column value as JSON; ``zone`` is the zone of naive datetimes."""
    if type(value) in _AS_IS:  # most columns: one set lookup
        return value
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value, zone)
    if isinstance(value, dict):
        return {str(k): to_json(v, zone) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, zone) for v in value]
    return str(value)


_NONE = type(None)
_UTC = frozenset(("UTC", "Etc/UTC"))


def column_json(values: Sequence[Any], zone: ZoneInfo) -> Sequence[Any]:
    """``[to_json(v, zone) for v in values]`` for one column of a batch, the type dispatch
    done once per column: a column is usually of one type (plus ``None``)."""
    kinds = set(map(type, values))
    if kinds <= _AS_IS:  # int, str, bool, None: as they are
        return values
    kinds.discard(_NONE)
    if len(kinds) == 1:
        (kind,) = kinds
        if kind is decimal.Decimal:
            return [None if v is None else str(v) for v in values]
        if kind is dt.datetime:
            if zone.key in _UTC:  # naive = UTC: the offset is always +00:00
                return [
                    None
                    if v is None
                    else v.isoformat() + "+00:00"
                    if v.tzinfo is None
                    else v.isoformat()
                    for v in values
                ]
            return [
                None
                if v is None
                else (v if v.tzinfo is not None else v.replace(tzinfo=zone)).isoformat()
                for v in values
            ]
        if kind is float and all(math.isfinite(v) for v in values if v is not None):
            return values
    return [to_json(v, zone) for v in values]


def row_hash(row: dict[str, Any]) -> str:
    """A short stable digest of a JSON row (``snapshot_diff`` compares these)."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def from_json(value: Any, column: sa.Column[Any], field: str) -> Any:
    """A JSON value converted for ``column``; raises ``ValueError`` naming ``field``."""
    if value is None:
        return None
    kind = column.type
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return value
    try:
        if python_type is dt.datetime and isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value)
            zoned = getattr(kind, "timezone", False)
            if parsed.tzinfo is not None and not zoned:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed
        if python_type is dt.date and isinstance(value, str):
            return dt.date.fromisoformat(value[:10])
        if python_type is dt.time and isinstance(value, str):
            return dt.time.fromisoformat(value)
        if python_type is float and isinstance(value, str):
            return float(value)  # "nan", "inf", "-inf": how the source writes them
        if python_type is decimal.Decimal and isinstance(value, str | int | float):
            return decimal.Decimal(str(value))
        if python_type is bytes and isinstance(value, str):
            return base64.b64decode(value, validate=True)
        if python_type is dt.timedelta and isinstance(value, int | float):
            return dt.timedelta(seconds=value)
        if python_type is uuid.UUID and isinstance(value, str):
            return uuid.UUID(value)
    except (ValueError, decimal.InvalidOperation, binascii.Error) as exc:
        raise ValueError(
            f"field {field!r}: {value!r} is not a valid {python_type.__name__} "
            f"for column {column.name!r} ({exc})"
        ) from exc
    return value


def dump_cursor(value: Any) -> Any:
    """A cursor value (as read from the database) in JSON, keeping its type."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    return value


def load_cursor(value: Any) -> Any:
    """Inverse of :func:`dump_cursor`."""
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if tag == "datetime":
            return dt.datetime.fromisoformat(text)
        if tag == "date":
            return dt.date.fromisoformat(text)
        if tag == "decimal":
            return decimal.Decimal(text)
        if tag == "uuid":
            return uuid.UUID(text)
    return value
