"""What every capture mode shares: the captured relation, key, JSON rows and envelopes.

A :class:`Capture` is built by :class:`~backbone.connectors.sql.SqlSource` at open
and handed to the mode. Modes are synchronous (run inside ``asyncio.to_thread``);
each ``poll`` returns a :class:`Poll` without touching the mode's state, which the
source applies on the event loop afterwards, so a cancelled read changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backbone.sdk import IdentityJSON, SourceRecord, StateDir

from ._options import SqlSourceOptions
from ._values import column_json, dump_cursor, load_cursor, row_hash, to_json

__all__ = ["Capture", "ModeBase", "Poll", "raw", "unique_ids"]

EVENT_TYPE = "backbone.sql.change"
_NAME_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


_ID_SCALARS = frozenset((int, str, type(None)))


def id_texts(values: Sequence[Any]) -> list[str] | None:
    """Each value as the ``ce_id`` encoder writes it (ASCII-only JSON, see
    :class:`~backbone.events.IdentityJSON`), or None when a value is not an ``int``,
    ``str`` or ``None`` (one type check per batch, not per value)."""
    kinds = set(map(type, values))
    if not kinds <= _ID_SCALARS:
        return None
    if len(kinds) == 1 and int in kinds:
        return list(map(str, values))
    return [
        "null" if v is None else encode_basestring_ascii(v) if type(v) is str else str(v)
        for v in values
    ]


def row_builder(names: Sequence[str]) -> Callable[..., dict[str, Any]]:
    """``lambda _0, _1, ...: {names[0]: _0, names[1]: _1, ...}``: a row dict from its
    column values in one step (a dict display, as ``dict(zip(names, values))`` builds
    it, without a tuple and a zip per row). Names are written as ``repr`` literals."""
    params = ", ".join(f"_{i}" for i in range(len(names)))
    items = ", ".join(f"{str(name)!r}: _{i}" for i, name in enumerate(names))
    function: Callable[..., dict[str, Any]] = eval(f"lambda {params}: {{{items}}}", {})
    return function


def _name(identity: Any) -> bytes | str:
    """A value equal for equal identities (compared within one poll, never stored)."""
    try:
        return orjson.dumps(identity, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # beyond 64-bit integers, other types: the standard library
        return _NAME_JSON(identity)


def unique_ids(records: list[SourceRecord]) -> list[SourceRecord]:
    """Make each record's ``identity`` (hence its ``ce_id``) unique within one poll.

    Two records have the same identity only when everything they are named by is
    equal: identical key-less rows sharing one timestamp. The n-th repeat (n >= 1)
    gets ``[identity, n]`` instead -- still deterministic, as such rows are
    interchangeable.
    """
    seen: dict[bytes | str, int] = {}
    for record in records:
        name = _name(record.identity)
        count = seen.get(name, 0)
        seen[name] = count + 1
        if count:
            identity = record.identity
            record.identity = (
                IdentityJSON(f"[{identity},{count}]")  # the JSON of [identity, count]
                if type(identity) is IdentityJSON
                else [identity, count]
            )
    return records


def raw(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[Any]:
    """``column`` selected (and compared) exactly as the driver returns it.

    Cursors compare in the database's own order: SQLite keeps date/times as text,
    so the cursor keeps that text rather than a re-formatted datetime.
    """
    return sa.type_coerce(column, sa.types.NullType()).label(name)


@dataclass
class Poll:
    """One poll's outcome: the records, the mode's next state, and whether more is ready."""

    records: list[SourceRecord]
    state: Any
    more: bool = False
    unique: bool = False  # the identities are known to differ: no need for unique_ids


@dataclass
class Capture:
    """The captured relation and how rows become records."""

    engine: Engine
    relation: sa.FromClause
    label: str
    key: list[str]
    zone: ZoneInfo
    options: SqlSourceOptions
    connector: str
    state: StateDir
    table: sa.Table | None = None
    data_columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # plain str: sqlalchemy's names are a str subclass (quoted_name), which orjson
        # refuses as a dict key, sending every row's JSON to the slow standard library
        self.data_columns = list(map(str, self.relation.c.keys()))
        self.key = list(map(str, self.key))  # likewise for keys ({"id": 42} fast to write)
        self._row_of = row_builder(self.data_columns)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def row(self, mapping: Any) -> dict[str, Any]:
        """The data columns of a result row as JSON."""
        return {name: to_json(mapping[name], self.zone) for name in self.data_columns}

    def rows(self, results: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """The data columns of result rows as JSON (tuples whose first columns are the
        data columns, as :meth:`select` orders them), converted column by column."""
        if not results:
            return []
        names, zone = self.data_columns, self.zone
        columns = [column_json(c, zone) for c in list(zip(*results, strict=True))[: len(names)]]
        if not columns:  # no data columns (map needs one)
            return [{} for _ in results]
        return list(map(self._row_of, *columns))

    def key_of(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The record key (JSON object of the key columns), or None without a key."""
        names = self.key
        if len(names) == 1:
            return {names[0]: row.get(names[0])}
        if not names:
            return None
        return {name: row.get(name) for name in names}

    def key_texts(self, rows: Sequence[dict[str, Any]]) -> list[str] | None:
        """The ``ce_id`` JSON of each row's key (``key_of``, keys sorted), or None when the
        table has no key or a key value is not an ``int``, ``str`` or ``None``."""
        names = self.key
        if not names or len(set(names)) != len(names):
            return None
        parts: list[tuple[str, list[str]]] = []
        for name in sorted(names):
            texts = id_texts([row.get(name) for row in rows])
            if texts is None:
                return None
            parts.append((encode_basestring_ascii(name) + ":", texts))
        if len(parts) == 1:
            ((prefix, texts),) = parts
            return [f"{{{prefix}{text}}}" for text in texts]
        prefixes = [prefix for prefix, _ in parts]
        return [
            "{" + ",".join(p + t for p, t in zip(prefixes, values, strict=True)) + "}"
            for values in zip(*[texts for _, texts in parts], strict=True)
        ]

    def row_records(
        self,
        ops: Sequence[str],
        afters: Sequence[dict[str, Any]],
        positions: Sequence[Any],
        keys: Sequence[str],
        changes: Sequence[str],
        now_ms: int,
    ) -> list[SourceRecord]:
        """``records(op, None, after, position, identity=change, now_ms=now_ms)`` for rows
        read (ops ``r``/``c``/``u``: one record each), built for the whole batch.

        ``keys`` are the ``ce_id`` JSON of the rows' keys (:meth:`key_texts`) and
        ``changes`` that of each change, so each identity is handed over as its JSON
        (:class:`~backbone.events.IdentityJSON`): the same ``ce_id`` without the JSON
        encoder per record.
        """
        connector, label, names = self.connector, self.label, self.key
        one = names[0] if len(names) == 1 else None
        return [
            SourceRecord(
                value={
                    "op": op,
                    "before": None,
                    "after": after,
                    "source": {
                        "connector": connector,
                        "table": label,
                        "ts_ms": None,
                        "position": position,
                    },
                    "ts_ms": now_ms,
                },
                key={one: after.get(one)} if one is not None else self.key_of(after),
                identity=IdentityJSON(f'[{key},"{op}",{change},null]'),
                position=position,
                event_type=EVENT_TYPE,
            )
            for op, after, position, key, change in zip(
                ops, afters, positions, keys, changes, strict=True
            )
        ]

    def upper_bound(self, now: float) -> Any:
        """``now - lag`` as a value comparable with the raw timestamp column."""
        moment = dt.datetime.fromtimestamp(now - self.options.lag, dt.UTC)
        if self.dialect == "postgresql":
            return moment  # compared in the session's TimeZone (= the `timezone` option)
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        if self.dialect == "sqlite":
            return local.strftime("%Y-%m-%d %H:%M:%S.%f")
        return local

    def records(
        self,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        position: Any,
        change_ms: int | None = None,
        identity: Any = None,
        now_ms: int | None = None,
    ) -> list[SourceRecord]:
        """The records of one change; only the last carries the new ``position``.

        ``change_ms`` is when the change happened in the database, when the mode
        knows it (timestamp column, changelog time); it becomes ``source.ts_ms`` and
        the record timestamp. The envelope's ``ts_ms`` is when the source read it.
        ``identity`` names the change when the position depends on how reads were
        batched (default: ``position``). Each record's ``SourceRecord.identity``, from
        which the runtime derives ``ce_id``, is ``[key, op or "tombstone", change, row
        hash]``: several records can share one position (a ``snapshot_diff`` diff, rows
        of one timestamp group, a delete and its tombstone), so the position alone does
        not name them; the row hash only when there is no key. ``change`` is
        ``{"id": N}`` (incrementing), ``{"ts": T, "id": N}`` (timestamp modes),
        ``{"seq": S}`` (changelog log rows), else the position (bulk, changelog
        snapshot, ``snapshot_diff``'s generation). ``now_ms`` (the envelope's
        ``ts_ms``) defaults to the current time; a mode passes the time of its read.
        """
        named = position if identity is None else identity
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        image = after if after is not None else before
        key = self.key_of(image) if image is not None else None
        content = row_hash(image) if key is None and image is not None else None
        envelope = {
            "op": op,
            "before": before,
            "after": after,
            "source": {
                "connector": self.connector,
                "table": self.label,
                "ts_ms": change_ms,
                "position": position,
            },
            "ts_ms": now_ms,
        }
        record = SourceRecord(
            value=envelope,
            key=key,
            identity=[key, op, named, content],
            timestamp_ms=change_ms,
            position=position,
            event_type=EVENT_TYPE,
        )
        if op != "d" or not self.options.tombstones:
            return [record]
        record.position = None  # one change, two records: only the last one advances
        tombstone = SourceRecord(
            value=None,
            key=key,
            identity=[key, "tombstone", named, content],
            timestamp_ms=change_ms,
            position=position,
        )
        return [record, tombstone]

    def select(self, *extra: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """SELECT every data column plus ``extra`` from the relation."""
        return sa.select(*self.relation.c, *extra)

    def key_columns(self) -> list[sa.ColumnElement[Any]]:
        return [self.relation.c[name] for name in self.key]

    def read_state(self, name: str) -> Any:
        """A JSON state file under the connector's state_dir, or None."""
        return self.state.read(name)

    def write_state(self, name: str, value: Any) -> None:
        """Write a JSON state file atomically and durably (fsync, then rename)."""
        self.state.write(name, value)


def ms_of(value: Any, zone: ZoneInfo) -> int | None:
    """A datetime (naive = ``zone``) in epoch milliseconds, else None."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return int(value.timestamp() * 1000)
    return None


class ModeBase(ABC):
    """A capture mode. ``start`` and ``poll`` run in a worker thread."""

    initial_state_file = "initial-position.json"

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.state: Any = None

    @abstractmethod
    def start(self, position: Any | None) -> Any:
        """Return the state to resume strictly after ``position`` (None = first start)."""

    @abstractmethod
    def poll(self, state: Any, now: float, mono: float) -> Poll:
        """Read what is new after ``state``; must not mutate ``self``."""

    def first_position(self, compute: Any) -> Any:
        """The position of the very first start, computed once and kept in the state folder.

        ``initial: latest`` starts after the rows there at the first start, and
        ``initial: snapshot`` (incrementing and timestamp modes) remembers which rows were
        there, to emit them as ``op: r``. The runtime saves positions only with records,
        so without this a restart before the first record would compute a newer start
        (and lose changes, or call new rows a snapshot).
        """
        saved = self.capture.read_state(self.initial_state_file)
        if saved is not None:
            return saved
        position = compute()
        self.capture.write_state(self.initial_state_file, position)
        return position

    def acked(self, position: Any) -> None:  # noqa: B027 - optional hook
        """Everything up to ``position`` is durable in the broker."""


def dump_key(values: Any) -> list[Any]:
    return [dump_cursor(v) for v in values]


def load_key(values: list[Any]) -> tuple[Any, ...]:
    return tuple(load_cursor(v) for v in values)
