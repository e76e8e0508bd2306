"""The ``sql`` sink: records become rows, one transaction per ``write``.

A record's value is either a change envelope (``{"op", "before", "after", ...}``:
``c``/``u``/``r`` write ``after``, ``d`` deletes the row named by ``before`` or the
record key) or a plain JSON object (one row). A null value (tombstone) deletes the
row named by the record key when ``delete_on_tombstone`` is set and is skipped
otherwise. ``fields`` selects/renames fields before anything else.

The runner calls ``open()``, then ``write(records)`` repeatedly, ``close()``.
``write`` applies the batch in record order inside one transaction and returns
after COMMIT; on a rejected row (wrong type, NOT NULL, constraint) it rolls back
and raises :class:`DataError` carrying the database's message, so nothing of the
batch is written; a lost connection raises :class:`RetriableError`.

Upserts on PostgreSQL (psycopg) go through :class:`~._bulk.StagedUpsert` (COPY into a
staging table, one INSERT ... ON CONFLICT per column set); everything else through
SQLAlchemy statements, one ``executemany`` per ``batch_size`` rows. Rows of one key
within a batch are merged first (a later record's fields win).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import operator
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import sqlalchemy as sa
from orjson import loads as orjson_loads
from sqlalchemy.engine import URL, Connection, Engine

from backbone.sdk import (
    ConnectorContext,
    DataError,
    FatalError,
    Offload,
    Sink,
    SinkRecord,
    orjson_exact,
)

from ._bulk import Converter, StagedUpsert, converters, staging_allowed
from ._database import (
    column_of,
    create,
    errors,
    redacted,
    reflect_table,
    require_file,
    resolve_url,
    split_name,
    sqlite_file,
)
from ._options import SqlSinkOptions

__all__ = ["SqlSink"]

Op = tuple[str, dict[str, Any]]  # ("write" | "delete", fields)
ENVELOPE_OPS = {"c", "u", "r", "d"}
KEEP_IDLE = 5.0
"""Seconds a connection may sit idle between writes and still be used without a ping."""


def _infer(values: list[Any]) -> sa.types.TypeEngine[Any]:
    """A column type for the first non-null JSON value seen (``auto_create``)."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return sa.Boolean()
    if isinstance(sample, int):
        return sa.BigInteger()
    if isinstance(sample, float):
        return sa.Float()
    if isinstance(sample, dict | list):
        return sa.JSON()
    if isinstance(sample, str) and len(sample) >= 10:
        try:
            parsed = dt.datetime.fromisoformat(sample)
        except ValueError:
            return sa.Text()
        if len(sample) == 10:
            return sa.Date()
        return sa.DateTime(timezone=parsed.tzinfo is not None)
    return sa.Text()


class SqlSink(Sink[SqlSinkOptions]):
    """Writes records into a table (see the module docstring)."""

    # a database that stays unreachable (or locked) is never the records' fault: when the
    # retries run out the sink stops FAILED without committing, nothing is dead-lettered
    retries_exhausted = "fail"

    def __init__(self, options: SqlSinkOptions, context: ConnectorContext) -> None:
        super().__init__(options, context)
        self._engine: Engine | None = None
        self._table: sa.Table | None = None
        self._key: list[str] = []
        self._converters: dict[str, Converter | None] = {}
        self._bulk = False  # upserts through StagedUpsert (PostgreSQL, psycopg)
        self._staged: StagedUpsert | None = None
        self._statements: dict[tuple[str, ...], Any] = {}  # other upserts, per column set
        self._conn: Connection | None = None  # kept between writes (see _connection)
        self._used = 0.0  # time.monotonic() of the last write through it
        self._call = Offload()

    # -- setup -------------------------------------------------------------------

    def _url(self) -> URL:
        return resolve_url(self.options.url.get_secret_value(), self.context)

    def _connect(self) -> Engine:
        """An engine. A missing SQLite file is a FatalError unless ``auto_create`` is on,
        in which case ``open()`` creates it (with the table, on the first records)."""
        url = self._url()
        if not self.options.auto_create:
            require_file(url, "create it (with the table) or set auto_create: true")
        self._require_folder(url)
        return create(url, "UTC")

    @staticmethod
    def _require_folder(url: URL) -> None:
        path = sqlite_file(url)
        if path is not None and not path.parent.is_dir():
            raise FatalError(
                f"url: folder {path.parent} of SQLite database file {path} does not exist"
            )

    def _describe(self, engine: Engine) -> sa.Table | None:
        """The target table, None if missing and ``auto_create`` is on."""
        try:
            table = reflect_table(engine, self.options.table)
        except FatalError:
            if self.options.auto_create:
                return None
            raise FatalError(
                f"table: table {self.options.table!r} does not exist in "
                f"{redacted(engine.url)}; create it or set auto_create: true"
            ) from None
        self._check_table(table)
        return table

    def _check_table(self, table: sa.Table) -> None:
        """Check key and field columns; JSON columns get SQL NULL (not JSON ``null``) for
        null fields, as the source emits null for both."""
        for column in table.columns:
            if isinstance(column.type, sa.JSON):
                column.type.none_as_null = True
        key = self.options.key or [c.name for c in table.primary_key.columns]
        for name in key:
            column_of(table, name, "key")
        if isinstance(self.options.fields, dict):
            for target in self.options.fields.values():
                column_of(table, target, "fields")
        elif self.options.fields:
            for target in self.options.fields:
                column_of(table, target, "fields")
        if not key and self.options.insert_mode != "insert":
            raise FatalError(
                f"key: insert_mode {self.options.insert_mode!r} needs key columns and table "
                f"{self.options.table!r} has no primary key; set key: [column, ...]"
            )
        if not key and self.options.delete_on_tombstone:
            raise FatalError(
                f"key: delete_on_tombstone needs key columns and table {self.options.table!r} "
                f"has no primary key; set key: [column, ...]"
            )
        self._key = key
        self._converters = converters(
            table, text=self._bulk and self.options.insert_mode == "upsert"
        )
        self._staged = None
        self._statements = {}

    def _check(self) -> None:
        """The live check; creates nothing (not even a missing SQLite file)."""
        url = self._url()
        path = sqlite_file(url)
        if path is not None and not path.exists() and self.options.auto_create:
            self._require_folder(url)
            return  # open() creates the file and the table: nothing more to check
        engine = self._connect()
        try:
            self._describe(engine)
        finally:
            engine.dispose()

    def _open(self) -> None:
        """Connect and describe the table (in a thread). The engine is kept on ``self``
        here, not returned, so that ``close()`` disposes of it even when ``open()`` was
        cancelled while this thread still ran."""
        engine = self._connect()
        try:
            with errors(engine, "checking the privilege to create temporary tables"):
                self._bulk = staging_allowed(engine)
            table = self._describe(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine, self._table = engine, table

    def _create(self, engine: Engine, rows: list[dict[str, Any]], keys: list[Any]) -> sa.Table:
        """``auto_create``: create the table with types inferred from ``rows``."""
        key = list(self.options.key or [])
        if not key:
            sample = next((k for k in keys if isinstance(k, dict) and k), None)
            key = list(sample) if sample else []
        names: list[str] = list(dict.fromkeys(key))
        for row in rows:
            names.extend(n for n in row if n not in names)
        if not names:
            raise DataError("auto_create: the first records have no fields to make columns of")
        schema, name = split_name(self.options.table)
        columns = [
            sa.Column(
                n, _infer([r.get(n) for r in rows]), primary_key=n in key, nullable=n not in key
            )
            for n in names
        ]
        table = sa.Table(name, sa.MetaData(), *columns, schema=schema)
        with errors(engine, f"creating table {self.options.table!r}"):
            table.create(engine, checkfirst=True)
        self.context.logger.info(
            "sql sink %s: created table %s (%s)",
            self.context.name,
            self.options.table,
            ", ".join(names),
        )
        table = reflect_table(engine, self.options.table)
        self._check_table(table)
        return table

    # -- records to operations -------------------------------------------------------

    @staticmethod
    def _where(record: SinkRecord) -> str:
        return f"record {record.topic}/{record.partition}@{record.offset}"

    def _select(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Apply ``fields`` (select or select+rename); without it ``fields`` itself (the
        decoded value, never changed: :meth:`_convert` makes the row)."""
        chosen = self.options.fields
        if chosen is None:
            return fields
        if isinstance(chosen, dict):
            return {column: fields[name] for name, column in chosen.items() if name in fields}
        return {name: fields[name] for name in chosen if name in fields}

    def _operation(self, record: SinkRecord, exact: bool = False) -> Op | None:
        """The operation for one record (None = skip). The record key is decoded only
        when it names the row (tombstones, deletes without a ``before`` image).

        ``exact``: the batch's values passed :func:`~backbone.sdk.orjson_exact`,
        so orjson alone decodes the value as :meth:`SinkRecord.json` would (which still
        decodes, or refuses, what orjson cannot read)."""
        data = record.value
        if data is None:
            value = None
        elif exact:
            try:
                value = orjson_loads(data)
            except ValueError:
                value = record.json()
        else:
            value = record.json()
        if value is None:
            if not self.options.delete_on_tombstone:
                return None
            return "delete", self._key_fields(record.key_json(), record)
        if type(value) is not dict:
            raise DataError(
                f"{self._where(record)}: value must be a JSON object, got {type(value).__name__}"
            )
        op = value.get("op")
        if op in ENVELOPE_OPS and ("after" in value or "before" in value):
            if op == "d":
                before = value.get("before")
                image = before if isinstance(before, dict) else record.key_json()
                return "delete", self._key_fields(image, record)
            after = value.get("after")
            if not isinstance(after, dict):
                raise DataError(
                    f"{self._where(record)}: change event with op {op!r} has no 'after' object"
                )
            return "write", self._select(after)
        return "write", self._select(value)

    def _key_fields(self, image: Any, record: SinkRecord) -> dict[str, Any]:
        """The key columns naming the row to delete; never empty (DataError instead).

        A delete without key columns would be ``DELETE FROM table`` with no WHERE:
        with ``insert_mode: insert`` on a table without a primary key and no ``key``
        option, an ``op: d`` record is refused (dead-letter topic) instead.
        """
        where = self._where(record)
        if not self._key:
            raise DataError(
                f"{where}: cannot delete from table {self.options.table!r}: it has no primary "
                f"key and no 'key' option; set key: [column, ...] to name the row to delete"
            )
        if isinstance(image, dict):
            fields = self._select(image)
        elif len(self._key) == 1 and image is not None:
            fields = {self._key[0]: image}
        else:
            raise DataError(f"{where}: cannot tell which row to delete: no key (got {image!r})")
        missing = [k for k in self._key if k not in fields]
        if missing:
            raise DataError(
                f"{where}: cannot delete: key column(s) {missing} missing from {image!r}"
            )
        return {k: fields[k] for k in self._key}

    def _convert(self, fields: dict[str, Any], record: SinkRecord) -> dict[str, Any]:
        """The row for ``fields``: each value converted for its column (a new dict)."""
        converters = self._converters
        row: dict[str, Any] = {}
        name = ""
        try:
            for name, value in fields.items():
                convert = converters[name]
                row[name] = value if convert is None or value is None else convert(value)
        except KeyError:
            table = self._table
            assert table is not None
            raise DataError(
                f"{self._where(record)}: field {name!r} is not a column of table "
                f"{self.options.table!r} (columns: {', '.join(table.c.keys())}); select "
                f"fields with 'fields'"
            ) from None
        except ValueError as exc:
            raise DataError(f"{self._where(record)}: {exc}") from exc
        return row

    # -- writing -----------------------------------------------------------------------

    def _write(self, records: Sequence[SinkRecord]) -> None:
        engine = self._engine
        if engine is None:
            raise FatalError("the sql sink was not opened")
        ops: list[tuple[str, dict[str, Any], SinkRecord]] = []
        operation = self._operation
        exact = orjson_exact([r.value for r in records if r.value is not None])
        for record in records:
            op = operation(record, exact)
            if op is not None:
                ops.append((op[0], op[1], record))
        if not ops:
            return
        if self._table is None:
            keys = [record.key_json() for record in records]
            self._table = self._create(engine, [f for kind, f, _ in ops if kind == "write"], keys)
        table = self._table
        convert = self._convert
        converted = [(kind, convert(fields, record)) for kind, fields, record in ops]
        used: set[str] = set()  # staging tables this transaction filled (PostgreSQL)
        with errors(engine, f"writing {len(records)} records to {self.options.table!r}"):
            conn = self._connection(engine)
            try:
                with conn.begin():
                    info = conn.connection.info
                    start = 0
                    while start < len(converted):
                        kind = converted[start][0]
                        end = start
                        while end < len(converted) and converted[end][0] == kind:
                            end += 1
                        rows = [fields for _, fields in converted[start:end]]
                        if kind == "delete":
                            self._delete(conn, table, rows)
                        else:
                            self._store(conn, table, rows, used)
                        start = end
            except BaseException:
                self._release()  # whatever failed, the next write checks out (and pings)
                raise
        self._used = time.monotonic()
        StagedUpsert.committed(info, used)

    def _connection(self, engine: Engine) -> Connection:
        """The connection writes use: kept between writes that follow each other within
        :data:`KEEP_IDLE` seconds; else (and after any error) a fresh checkout from the
        pool, which pings it first (``pool_pre_ping``)."""
        conn = self._conn
        if conn is not None and time.monotonic() - self._used > KEEP_IDLE:
            self._release()
            conn = None
        if conn is None:
            conn = self._conn = engine.connect()
        return conn

    def _release(self) -> None:
        """Give the kept connection back to the pool (rolled back if in a transaction)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _dispose(self) -> None:
        engine, self._engine = self._engine, None
        try:
            self._release()
        finally:
            if engine is not None:
                engine.dispose()

    def _chunks(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Rows grouped by their column set (order kept within a group), then by batch_size."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        same: dict[tuple[str, ...], tuple[str, ...]] = {}  # columns in row order -> sorted
        last: tuple[str, ...] | None = None  # the previous row's columns, in its order
        group_rows: list[dict[str, Any]] = []
        for row in rows:
            names = tuple(row)
            if names != last:  # else the previous row's group (most rows)
                group = same.get(names)
                if group is None:
                    group = same[names] = tuple(sorted(names))
                group_rows = groups.setdefault(group, [])
                last = names
            group_rows.append(row)
        size = self.options.batch_size
        return [
            group[i : i + size] for group in groups.values() for i in range(0, len(group), size)
        ]

    def _merged(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows merged per key in order (a later record's fields win); a row whose key
        columns are missing or null is a DataError (the first such row, in order)."""
        merged: dict[Any, dict[str, Any]] = {}
        key = self._key
        if len(key) == 1:
            (name,) = key
            for row in rows:
                identity: Any = row.get(name)
                if identity is None:
                    self._refuse(row)
                earlier = merged.get(identity)
                merged[identity] = row if earlier is None else {**earlier, **row}
        else:
            for row in rows:
                identity = tuple([row.get(k) for k in key])
                if None in identity:
                    self._refuse(row)
                earlier = merged.get(identity)
                merged[identity] = row if earlier is None else {**earlier, **row}
        return list(merged.values())

    def _refuse(self, row: dict[str, Any]) -> NoReturn:
        missing = [k for k in self._key if row.get(k) is None]
        mode = self.options.insert_mode
        raise DataError(f"{mode}: key column(s) {missing} missing or null in {row!r}")

    def _store(
        self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]], used: set[str]
    ) -> None:
        mode = self.options.insert_mode
        if mode == "insert":
            chunks: list[list[dict[str, Any]]] = []
            for row in rows:  # keep order: consecutive rows with the same columns
                if (
                    chunks
                    and chunks[-1][0].keys() == row.keys()
                    and len(chunks[-1]) < self.options.batch_size
                ):
                    chunks[-1].append(row)
                else:
                    chunks.append([row])
            for chunk in chunks:
                conn.execute(table.insert(), chunk)
            return
        for chunk in self._chunks(self._merged(rows)):
            if mode == "update":
                self._update(conn, table, chunk)
            else:
                self._upsert(conn, table, chunk, used)

    def _upsert(
        self, conn: Connection, table: sa.Table, chunk: list[dict[str, Any]], used: set[str]
    ) -> None:
        names = tuple(chunk[0])
        if self._bulk:
            staged = self._staged
            if staged is None:
                staged = self._staged = StagedUpsert(table, self._key, conn.dialect)
            pick = operator.itemgetter(*names)
            values = [pick(row) for row in chunk]
            if len(names) == 1:
                values = [(value,) for value in values]
            processors = staged.processors(names)
            if processors:
                processed = [list(value) for value in values]
                for items in processed:
                    for index, process in processors:
                        items[index] = process(items[index])
                values = [tuple(items) for items in processed]
            staged.write(conn, names, values, used)
            return
        others = [n for n in names if n not in self._key]
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            statement = self._statements.get(names)
            if statement is None:
                statement = self._statements[names] = self._upsert_statement(dialect, table, others)
            conn.execute(statement, chunk)
            return
        for row in chunk:  # portable fallback: UPDATE, then INSERT when no row matched
            updated = 0
            if others:
                condition = sa.and_(*[table.c[k] == row[k] for k in self._key])
                updated = conn.execute(
                    table.update().where(condition).values({n: row[n] for n in others})
                ).rowcount
            if not updated:
                exists = conn.execute(
                    sa.select(sa.literal(1))
                    .where(*[table.c[k] == row[k] for k in self._key])
                    .select_from(table)
                ).first()
                if exists is None:
                    conn.execute(table.insert(), [row])

    def _upsert_statement(self, dialect: str, table: sa.Table, others: list[str]) -> Any:
        """INSERT ... ON CONFLICT for PostgreSQL (other drivers) and SQLite; built once
        per column set (the compiled form is cached by SQLAlchemy)."""
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        statement = insert(table)
        if others:
            return statement.on_conflict_do_update(
                index_elements=[table.c[k] for k in self._key],
                set_={n: statement.excluded[n] for n in others},
            )
        return statement.on_conflict_do_nothing(index_elements=[table.c[k] for k in self._key])

    def _update(self, conn: Connection, table: sa.Table, chunk: list[dict[str, Any]]) -> None:
        others = [n for n in chunk[0] if n not in self._key]
        if not others:
            return
        statement = (
            table.update()
            .where(*[table.c[k] == sa.bindparam(f"_bb_key_{k}") for k in self._key])
            .values({n: sa.bindparam(f"_bb_set_{n}") for n in others})
        )
        params = [
            {
                **{f"_bb_key_{k}": row[k] for k in self._key},
                **{f"_bb_set_{n}": row[n] for n in others},
            }
            for row in chunk
        ]
        conn.execute(statement, params)

    def _delete(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not self._key:  # _key_fields refuses such records; never DELETE without WHERE
            raise DataError(f"cannot delete from table {self.options.table!r} without key columns")
        statement = table.delete().where(
            *[table.c[k] == sa.bindparam(f"_bb_key_{k}") for k in self._key]
        )
        size = self.options.batch_size
        params = [{f"_bb_key_{k}": row[k] for k in self._key} for row in rows]
        for i in range(0, len(params), size):
            conn.execute(statement, params[i : i + size])

    # -- the contract ---------------------------------------------------------------------

    async def check(self) -> None:
        """Connect; check the table (unless auto_create), key and field columns exist."""
        await self._call(self._check)

    async def open(self) -> None:
        """Connect and describe the table (FatalError if missing without auto_create)."""
        await self._call(self._open)
        assert self._engine is not None
        self.context.logger.info(
            "sql sink %s: writing to %s (%s) in %s",
            self.context.name,
            self.options.table,
            self.options.insert_mode,
            redacted(self._engine.url),
        )

    async def write(self, records: Sequence[SinkRecord]) -> None:
        """Apply the batch in one transaction; returns after COMMIT (see the module docstring)."""
        await self._call(self._write, records)

    async def close(self) -> None:
        """Wait for a left-behind write, then dispose of the engine; idempotent."""
        await self._call.settle()
        if self._engine is not None or self._conn is not None:
            await asyncio.to_thread(self._dispose)
