"""The sql sink's hot path: per-column converters and PostgreSQL's COPY upsert.

:func:`converters` turns a table into one converter per column, chosen once: a
column whose JSON needs no conversion (text, integer, boolean, JSON...) gets
``None`` and its values are used as they are; the others get a function doing
what :func:`~._values.from_json` does (which they call for anything but the
common case, so values and error messages stay the same).

:class:`StagedUpsert` upserts rows into a PostgreSQL table (psycopg 3) without a
statement per row: ``COPY`` the rows into a temporary staging table with the
target's column types, then one ``INSERT INTO target SELECT ... FROM stage ON
CONFLICT (key) DO UPDATE``. It runs inside the caller's transaction, so the rows
are written (and checked: NOT NULL, constraints, triggers) by the INSERT at the
same point, and a rejected row rolls back the whole batch, as an ``executemany``
would. The staging table (``ON COMMIT DELETE ROWS``) is created once per
connection and column set; rows keep their database errors (a value the column
type refuses fails in the COPY with the message an INSERT would give).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from ._values import from_json

__all__ = ["Converter", "StagedUpsert", "converters", "staging_allowed"]

Converter = Callable[[Any], Any]

#: Python types of the columns whose JSON values :func:`from_json` converts.
_CONVERTED = (
    dt.datetime,
    dt.date,
    dt.time,
    float,
    decimal.Decimal,
    bytes,
    dt.timedelta,
    uuid.UUID,
)
#: A timestamp parsed by :meth:`datetime.datetime.fromisoformat` that ``isoformat()``
#: writes back the same (after the conversion to UTC, which leaves it as it is), but for
#: ``Z`` (written ``+00:00``): the common text of a change event's timestamps, kept as
#: text in a COPY without paying ``isoformat()`` (the slowest step of the conversion).
#: ``.000000`` is left out: ``isoformat()`` drops a zero fraction.
_canonical_timestamp = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?(\+00:00|Z)?"
).fullmatch
_STAGES = "backbone_sql_sink_stages"
"""Key in a pooled connection's ``info``: the staging tables that exist on it."""


def _converter(column: sa.Column[Any], text: bool) -> Converter | None:
    """The converter of ``column``'s non-null JSON values (None: used as they are)."""
    kind = column.type
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return None
    name = column.name
    if python_type is dt.datetime:
        zoned = bool(getattr(kind, "timezone", False))
        parse = dt.datetime.fromisoformat
        utc = dt.UTC

        def to_datetime(value: Any) -> Any:
            if type(value) is str:
                try:
                    parsed = parse(value)
                except ValueError:
                    return from_json(value, column, name)  # raises, naming the field
                if text:
                    canonical = _canonical_timestamp(value)
                    if canonical is not None:  # the text below, without making it
                        offset = canonical.group(1)
                        if offset is None:
                            return value
                        if not zoned:
                            return value[: -len(offset)]
                        return value if offset == "+00:00" else value[:-1] + "+00:00"
                if parsed.tzinfo is not None:
                    if not zoned:
                        parsed = parsed.astimezone(utc).replace(tzinfo=None)
                    elif text:  # one text per instant: rows of one key still merge
                        parsed = parsed.astimezone(utc)
                return parsed.isoformat() if text else parsed
            return from_json(value, column, name)

        return to_datetime
    if text and python_type in (dt.date, dt.time):

        def to_iso(value: Any) -> Any:
            converted = from_json(value, column, name)
            if type(value) is not str or getattr(converted, "tzinfo", None) is not None:
                return converted  # a time with an offset: equal times differ in text
            return converted.isoformat()

        return to_iso
    if python_type is decimal.Decimal:
        make = decimal.Decimal

        def to_decimal(value: Any) -> Any:
            if type(value) is str:
                try:
                    return make(value)
                except decimal.InvalidOperation:
                    return from_json(value, column, name)  # raises, naming the field
            return from_json(value, column, name)

        return to_decimal
    if python_type is float:

        def to_float(value: Any) -> Any:
            return from_json(value, column, name) if type(value) is str else value

        return to_float
    if python_type in _CONVERTED:
        return lambda value: from_json(value, column, name)
    return None


def converters(table: sa.Table, *, text: bool = False) -> dict[str, Converter | None]:
    """Column name -> converter of its non-null JSON values (None: no conversion).

    With ``text`` (rows for a text COPY) dates, times and timestamps stay text: the
    checked value in ISO 8601, a timestamp with an offset moved to UTC (so one instant
    has one text and the rows of one key still merge), which PostgreSQL reads as the
    same value; psycopg's datetime dumper costs several times more per value.
    """
    return {column.name: _converter(column, text) for column in table.columns}


def staging_allowed(engine: sa.Engine) -> bool:
    """Whether upserts can go through :class:`StagedUpsert`: PostgreSQL through psycopg 3
    (COPY from Python rows) and a user allowed to create temporary tables (PostgreSQL
    grants it to everybody unless an administrator revoked it); else ``executemany``."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return False
    with engine.connect() as conn:
        query = sa.text("SELECT has_database_privilege(current_database(), 'TEMPORARY')")
        return bool(conn.execute(query).scalar())


class StagedUpsert:
    """COPY into a staging table, then INSERT ... ON CONFLICT (see the module docstring)."""

    def __init__(self, table: sa.Table, key: Sequence[str], dialect: sa.Dialect) -> None:
        self._table = table
        self._key = list(key)
        preparer = dialect.identifier_preparer
        self._quote = preparer.quote
        self._target = preparer.format_table(table)
        self._statements: dict[tuple[str, ...], tuple[str, str, str, str]] = {}
        self._processors: dict[tuple[str, ...], list[tuple[int, Converter]]] = {}
        self._dialect = dialect

    def processors(self, names: tuple[str, ...]) -> list[tuple[int, Converter]]:
        """(position, bind processor) of the columns in ``names`` whose values the
        dialect processes before sending them (JSON -> psycopg ``Json``...)."""
        found = self._processors.get(names)
        if found is None:
            found = []
            for index, name in enumerate(names):
                column_type = self._table.c[name].type
                process = column_type.dialect_impl(self._dialect).bind_processor(self._dialect)
                if process is not None:
                    found.append((index, process))
            self._processors[names] = found
        return found

    def _sql(self, names: tuple[str, ...]) -> tuple[str, str, str, str]:
        """(stage name, COPY, INSERT ... SELECT, TRUNCATE) for the column set ``names``."""
        found = self._statements.get(names)
        if found is None:
            quote = self._quote
            digest = hashlib.blake2b(
                repr((self._target, names)).encode(), digest_size=8
            ).hexdigest()
            stage = quote(f"backbone_stage_{digest}")
            columns = ", ".join(quote(n) for n in names)
            others = [n for n in names if n not in self._key]
            conflict = ", ".join(quote(k) for k in self._key)
            if others:
                action = "DO UPDATE SET " + ", ".join(
                    f"{quote(n)} = EXCLUDED.{quote(n)}" for n in others
                )
            else:
                action = "DO NOTHING"
            insert = (
                f"INSERT INTO {self._target} ({columns}) SELECT {columns} FROM {stage} "
                f"ON CONFLICT ({conflict}) {action}"
            )
            found = (stage, f"COPY {stage} ({columns}) FROM STDIN", insert, f"TRUNCATE {stage}")
            self._statements[names] = found
        return found

    def write(
        self,
        conn: Connection,
        names: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        used: set[str],
    ) -> None:
        """Upsert ``rows`` (values in ``names`` order, keys unique) inside ``conn``'s
        transaction. ``used`` holds the staging tables this transaction filled already
        (emptied first); the caller keeps it for one transaction."""
        stage, copy_sql, insert_sql, truncate_sql = self._sql(names)
        pooled = conn.connection
        raw = pooled.driver_connection
        assert raw is not None
        with _translated(conn, copy_sql), raw.cursor() as cursor:
            if stage in used:
                cursor.execute(truncate_sql)
            elif stage not in pooled.info.get(_STAGES, ()):
                cursor.execute(self._create_sql(cursor, stage, names))
            used.add(stage)
            with cursor.copy(copy_sql) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            cursor.execute(insert_sql)

    @staticmethod
    def committed(conn_info: dict[Any, Any], used: set[str]) -> None:
        """After COMMIT: the staging tables ``used`` exist on that connection from now on
        (created inside a transaction, they vanish with its rollback)."""
        if used:
            conn_info.setdefault(_STAGES, set()).update(used)

    def _create_sql(self, cursor: Any, stage: str, names: tuple[str, ...]) -> str:
        """CREATE TEMP TABLE for the stage, with the target columns' exact types (from
        the catalog, so no SELECT privilege on the target is needed and typmods stay)."""
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (self._target,),
        )
        types = dict(cursor.fetchall())
        columns = ", ".join(f"{self._quote(n)} {types[n]}" for n in names)
        return f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({columns}) ON COMMIT DELETE ROWS"


@contextmanager
def _translated(conn: Connection, statement: str) -> Iterator[None]:
    """Driver errors raised outside SQLAlchemy's execute become SQLAlchemy's exceptions
    (IntegrityError, DataError, OperationalError...), as its execute would raise them, so
    that :func:`~._database.translate` maps them the same way; a lost connection is
    invalidated, so the pool does not hand it out again."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            statement,
            None,
            exc,
            dbapi.Error,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc
