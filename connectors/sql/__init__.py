"""The ``sql`` connector kind: database changes to topics, and topics to tables.

Source (:class:`SqlSource`, options :class:`SqlSourceOptions`) -- change data
capture by polling, with SQLAlchemy 2 (tested on SQLite and PostgreSQL):

=========================  =============================================  ======  =======
mode                       finds changes by                               ops     deletes
=========================  =============================================  ======  =======
``incrementing``           ``incrementing_column > last``                 r,c     no
``timestamp``              ``timestamp_column > last`` (older than lag)   r,u     no
``timestamp+incrementing`` keyset ``(ts, id) > (last_ts, last_id)``       r,u     no
``bulk``                   the whole table every ``poll_interval``        r       no
``changelog``              trigger-fed changelog table                    r,c,u,d yes
``snapshot_diff``          row hashes vs the previous snapshot            r,c,u,d yes
=========================  =============================================  ======  =======

``r`` is the initial snapshot (``initial: snapshot``): the rows there at the very
first start. The incrementing and timestamp modes remember the highest id /
``(ts[, id])`` of that moment (in the state folder, then as ``snapshot_until`` in the
position until the cursor passed it), so a restart mid-snapshot still emits ``r``;
later rows are ``c`` (incrementing) or ``u`` (timestamp modes cannot tell inserts
from updates).

Each event: key = JSON object of the key columns (default: primary key); value =
``{"op": "c"|"u"|"d"|"r", "before": {...}|null, "after": {...}|null, "source":
{"connector", "table", "ts_ms", "position"}, "ts_ms"}`` (``r`` = snapshot read;
polling modes cannot know the previous row, so ``before`` is null except on
deletes, where it holds the key columns). With ``tombstones: true`` a delete is
followed by a null-valued record with the same key. Every record carries its own
CloudEvents ``ce_id`` header: a UUIDv5 of the connector name, the table (or query),
the key JSON, the op (``tombstone`` for tombstones) and the change (the row's id in
``incrementing``, its ``(ts, id)`` in the timestamp modes, the changelog ``bb_seq``,
else the position; plus a row hash when there is no key), so records sharing a
position still differ and reading the same changes again repeats the same ids.

JSON mapping of column values (source; the sink maps back by column type):

====================================  ===============================================
database type                          JSON
====================================  ===============================================
integer, float, boolean, text          number, number, true/false, string
NaN / Infinity floats                  string ``"nan"``, ``"inf"``
NUMERIC / DECIMAL                      string (exact), e.g. ``"12.50"``
TIMESTAMP WITH TIME ZONE               ISO-8601 with offset ``"2024-05-01T12:00:00+00:00"``
TIMESTAMP (naive), SQLite DATETIME     ISO-8601 with the ``timezone`` option's offset
DATE / TIME                            ``"2024-05-01"`` / ``"12:00:00"``
INTERVAL                               number of seconds
BYTEA / BLOB                           base64 string
UUID                                   string
JSON / JSONB / ARRAY                   JSON as is (nested values mapped the same way)
anything else                          its text (``str(value)``)
====================================  ===============================================

A JSON ``null`` stored in a JSON column and SQL NULL both become ``null``; the sink
writes SQL NULL for it. The sink turns ``"nan"``/``"inf"``/``"-inf"`` back into floats.

Late commits: the timestamp modes only read rows whose timestamp is older than
``lag``; the incrementing mode keeps ids seen within ``lag`` above its watermark
and reads lower ids that appear later (see :class:`~._modes.Incrementing`); the
changelog mode on PostgreSQL reads only changes of finished transactions (see
:mod:`._changelog`). Positions are each mode's cursor (JSON); a restart resumes
strictly after it.

Sink (:class:`SqlSink`, options :class:`SqlSinkOptions`): change envelopes
(``after`` written, ``op: d`` deleted) and plain JSON objects; ``insert`` /
``upsert`` (``INSERT ... ON CONFLICT`` on PostgreSQL and SQLite) / ``update``; one
transaction per batch.

Other connectors that run queries (the ``schedule`` source's ``sql`` job) use the
same database handling through this package's public names: :func:`resolve_url`
(a relative SQLite path against the config folder), :func:`require_file`,
:func:`create_engine`, :func:`database_errors` (database errors as
``RetriableError``/``FatalError``/``DataError``), :func:`redacted` and
:func:`to_json` (column values as JSON, the table above).
"""

from __future__ import annotations

from backbone.sdk import ConnectorKind

from ._database import create as create_engine
from ._database import errors as database_errors
from ._database import redacted, require_file, resolve_url
from ._options import SqlSinkOptions, SqlSourceOptions
from ._sink import SqlSink
from ._source import SqlSource
from ._values import to_json

__all__ = [
    "CONNECTOR",
    "SqlSink",
    "SqlSinkOptions",
    "SqlSource",
    "SqlSourceOptions",
    "create_engine",
    "database_errors",
    "redacted",
    "require_file",
    "resolve_url",
    "to_json",
]

EXAMPLE = """\
sources:
  orders-db:
    type: sql
    topic: shop.orders
    url: sqlite:///shop.db
    table: orders
    mode: timestamp+incrementing
    timestamp_column: updated_at
    incrementing_column: id
    poll_interval: 1s
    lag: 5s
sinks:
  warehouse:
    type: sql
    topics: [shop.orders]
    url: postgresql+psycopg://app@localhost/warehouse
    table: orders
    insert_mode: upsert
    delete_on_tombstone: true
"""

CONNECTOR = ConnectorKind(
    name="sql",
    summary="Database changes to topics (CDC by polling) and topics to tables (SQLAlchemy).",
    source=SqlSource,
    source_options=SqlSourceOptions,
    sink=SqlSink,
    sink_options=SqlSinkOptions,
    example=EXAMPLE,
)
