"""Engines, reflection and error translation shared by the ``sql`` source and sink.

Everything here is synchronous; callers run it inside ``asyncio.to_thread``.
Database errors become the contract's error types in :func:`translate`:

- cannot connect / connection lost / lock timeout -> :class:`RetriableError`;
- missing table or column, syntax, permission -> :class:`FatalError`;
- constraint or value rejected by the database -> :class:`DataError` (sink records).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from backbone.sdk import ConnectorContext, DataError, FatalError, RetriableError

__all__ = [
    "column_of",
    "create",
    "errors",
    "redacted",
    "reflect_table",
    "require_file",
    "resolve_url",
    "split_name",
    "sqlite_file",
    "translate",
]


def redacted(url: URL) -> str:
    """The URL with its password hidden, for messages."""
    return url.render_as_string(hide_password=True)


def resolve_url(raw: str, context: ConnectorContext) -> URL:
    """Parse ``raw``; a relative SQLite file path resolves against the config folder."""
    try:
        url = make_url(raw)
    except sa_exc.ArgumentError as exc:
        raise FatalError(f"url is not a valid SQLAlchemy URL: {exc}") from exc
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = url.database or ""
        if not database.startswith("file:"):
            url = url.set(database=str(context.resolve(database)))
    return url


def sqlite_file(url: URL) -> Path | None:
    """The database file of a file-backed SQLite URL; None for other URLs, ``sqlite://``,
    ``:memory:`` and ``file:`` URIs (whose options only SQLite interprets)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def require_file(url: URL, hint: str) -> None:
    """FatalError when ``url`` names a SQLite file that does not exist.

    Connecting to a missing SQLite file would create an empty one; the live check and
    the source never want that (``hint`` says what to do instead).
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise FatalError(f"url: SQLite database file {path} does not exist; {hint}")


def create(url: URL, timezone: str) -> Engine:
    """An engine for ``url``; PostgreSQL sessions use ``timezone`` for naive timestamps."""
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["options"] = f"-c TimeZone={timezone}"
        connect_args["connect_timeout"] = 5
    elif backend == "sqlite":
        connect_args["timeout"] = 5
    try:
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (sa_exc.ArgumentError, ImportError) as exc:
        hint = ""
        if backend == "postgresql" and isinstance(exc, ImportError):
            hint = (
                "; the PostgreSQL driver is not installed: pip install 'backbone[postgres]' "
                "installs psycopg 3 (urls postgresql+psycopg://...)"
            )
        raise FatalError(f"cannot use url {redacted(url)}: {exc}{hint}") from exc


def split_name(name: str) -> tuple[str | None, str]:
    """``"schema.table"`` -> ``("schema", "table")``; ``"table"`` -> ``(None, "table")``."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def reflect_table(engine: Engine, name: str, *, option: str = "table") -> sa.Table:
    """The table ``name`` as the database describes it; FatalError if it does not exist."""
    schema, table = split_name(name)
    with errors(engine, "reading the table definition"):
        metadata = sa.MetaData()
        try:
            return sa.Table(table, metadata, schema=schema, autoload_with=engine)
        except sa_exc.NoSuchTableError as exc:
            where = redacted(engine.url)
            raise FatalError(
                f"{option}: table {name!r} does not exist in {where}; check the name "
                f"(schema.table) and the url"
            ) from exc


def column_of(table: sa.Table | Any, name: str, option: str) -> sa.ColumnElement[Any]:
    """Column ``name`` of ``table`` (a Table or subquery); FatalError naming ``option``."""
    try:
        return table.c[name]
    except KeyError:
        available = ", ".join(table.c.keys())
        raise FatalError(
            f"{option}: column {name!r} does not exist (columns: {available})"
        ) from None


SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "interrupted")
"""SQLite OperationalError messages worth retrying; any other one is fatal."""


def translate(exc: sa_exc.SQLAlchemyError, engine: Engine, doing: str) -> Exception:
    """The contract error for a database error raised while ``doing`` something."""
    where = redacted(engine.url)
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError):
        return DataError(f"{where} rejected the record while {doing}: {message}")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return RetriableError(f"lost the connection to {where} while {doing}: {message}")
    if isinstance(exc, sa_exc.OperationalError):
        lowered = message.lower()
        if engine.dialect.name == "sqlite" and not any(t in lowered for t in SQLITE_TRANSIENT):
            # SQLite reports missing tables, syntax errors... as OperationalError too
            return FatalError(f"{where}: {message} (while {doing})")
        return RetriableError(f"cannot reach {where} while {doing}: {message}")
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return RetriableError(f"cannot reach {where} while {doing}: {message}")
    if isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError):
        return DataError(f"cannot send the record to {where} while {doing}: {message}")
    return FatalError(f"{where} failed while {doing}: {message}")


@contextlib.contextmanager
def errors(engine: Engine, doing: str) -> Iterator[None]:
    """Translate database errors raised inside the block (see :func:`translate`)."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, engine, doing) from exc
