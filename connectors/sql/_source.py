"""The ``sql`` source: polls a table (or query) and emits change envelopes.

The runner calls ``open(position)``, then ``read()`` in a loop, ``ack(position)``
and ``close()`` (see :mod:`backbone.connector`). ``check()`` is the live check of
``backbone validate --check``. Every database call runs in ``asyncio.to_thread``;
the mode computes a new state there and the source adopts it only once the call
returned, so a read cancelled mid-query changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backbone.sdk import ConnectorContext, FatalError, Offload, Source, SourceRecord

from ._capture import Capture, ModeBase, Poll, unique_ids
from ._changelog import Changelog, changelog_name, install
from ._database import (
    column_of,
    create,
    errors,
    redacted,
    reflect_table,
    require_file,
    resolve_url,
)
from ._modes import Bulk, Incrementing, Timestamp
from ._options import SqlSourceOptions
from ._snapshot import SnapshotDiff

__all__ = ["SqlSource"]

MAX_WAIT = 1.0  # read() returns at least this often when idle


class SqlSource(Source[SqlSourceOptions]):
    """Database changes as change events (see the package docstring)."""

    def __init__(self, options: SqlSourceOptions, context: ConnectorContext) -> None:
        super().__init__(options, context)
        self._engine: Engine | None = None
        self._mode: ModeBase | None = None
        self._next_poll = 0.0
        self._call = Offload()
        # the next poll, started in its thread as soon as one returned a full batch, so the
        # database read overlaps the runtime's encoding and waits for acknowledgements
        self._ahead: asyncio.Future[Poll] | None = None

    # -- live check and setup (sync, in a worker thread) ---------------------------

    def _connect(self) -> Engine:
        """An engine; a missing SQLite file is a FatalError (never created as an empty file)."""
        url = resolve_url(self.options.url.get_secret_value(), self.context)
        require_file(url, "check the path (a relative path starts at the config file's folder)")
        return create(url, self.options.timezone)

    def _build(self, engine: Engine, *, installing: bool) -> ModeBase:
        """Describe the relation, check every named column, and make the mode."""
        options = self.options
        table: sa.Table | None = None
        if options.table is not None:
            table = reflect_table(engine, options.table)
            relation: sa.FromClause = table
            label = options.table
            key = list(options.key or [c.name for c in table.primary_key.columns])
        else:
            query = (options.query or "").strip().rstrip(";")
            with errors(engine, "describing the query"), engine.connect() as conn:
                names = list(
                    conn.execute(
                        sa.text(f"SELECT * FROM ({query}) AS _bb_probe WHERE 1 = 0")
                    ).keys()
                )
            relation = sa.text(query).columns(*[sa.column(n) for n in names]).subquery("_bb_query")
            label = "query"
            key = list(
                options.key
                or ([options.incrementing_column] if options.incrementing_column else [])
            )
        for option, names in (
            ("incrementing_column", [options.incrementing_column]),
            ("timestamp_column", [options.timestamp_column]),
            ("key", key),
        ):
            for name in names:
                if name:
                    column_of(relation, name, option)
        if options.mode in ("changelog", "snapshot_diff") and not key:
            raise FatalError(
                f"key: mode {options.mode!r} needs key columns and table {label!r} has no "
                f"primary key; set key: [column, ...]"
            )
        if options.timestamp_column and table is not None:
            column = table.c[options.timestamp_column]
            try:
                python_type = column.type.python_type
            except NotImplementedError:
                python_type = object
            if python_type in (int, float) or python_type.__name__ == "Decimal":
                raise FatalError(
                    f"timestamp_column: column {options.timestamp_column!r} is "
                    f"{column.type}, not a date/time column; use mode 'incrementing' for numbers"
                )
        capture = Capture(
            engine=engine,
            relation=relation,
            label=label,
            key=key,
            zone=ZoneInfo(options.timezone),
            options=options,
            connector=self.context.name,
            state=self.context.state,
            table=table,
        )
        if options.mode == "changelog":
            assert table is not None and options.table is not None
            if installing and options.install_triggers:
                install(engine, table, key)
            log_name = changelog_name(options.table)
            try:
                log = reflect_table(engine, log_name)
            except FatalError:
                raise FatalError(
                    f"changelog table {log_name!r} does not exist in {redacted(engine.url)}; "
                    f"set install_triggers: true to create it and its triggers, or create "
                    f"them yourself"
                ) from None
            return Changelog(capture, log)
        if options.mode == "incrementing":
            return Incrementing(capture)
        if options.mode in ("timestamp", "timestamp+incrementing"):
            return Timestamp(capture)
        if options.mode == "bulk":
            return Bulk(capture)
        return SnapshotDiff(capture)

    def _check(self) -> None:
        engine = self._connect()
        try:
            if self.options.install_triggers:
                self._build_check_triggers(engine)
            else:
                self._build(engine, installing=False)
        finally:
            engine.dispose()

    def _build_check_triggers(self, engine: Engine) -> None:
        """With install_triggers the changelog may not exist yet: check the table only."""
        options = self.options
        assert options.table is not None
        table = reflect_table(engine, options.table)
        key = options.key or [c.name for c in table.primary_key.columns]
        for name in key:
            column_of(table, name, "key")
        if not key:
            raise FatalError(
                f"key: mode 'changelog' needs key columns and table {options.table!r} has "
                f"no primary key; set key: [column, ...]"
            )

    def _open(self, position: Any | None) -> None:
        """Connect and build the mode (in a thread). The engine is kept on ``self`` here,
        not returned, so that ``close()`` disposes of it even when ``open()`` was
        cancelled while this thread still ran."""
        engine = self._connect()
        try:
            mode = self._build(engine, installing=True)
            mode.state = mode.start(position)
        except BaseException:
            engine.dispose()
            raise
        self._engine, self._mode = engine, mode

    # -- the contract ---------------------------------------------------------------

    async def check(self) -> None:
        """Connect and check the table/query and every named column exist."""
        await self._call(self._check)

    async def open(self, position: Any | None) -> None:
        """Connect, describe the table, install triggers if asked, resume after ``position``.

        Raises RetriableError when the database is unreachable and FatalError when
        the table, a column or the changelog table is missing.
        """
        await self._call(self._open, position)
        assert self._engine is not None
        self._next_poll = 0.0
        self.context.logger.info(
            "sql source %s: capturing %s (mode %s) from %s",
            self.context.name,
            self.options.table or "query",
            self.options.mode,
            redacted(self._engine.url),
        )

    async def read(self) -> list[SourceRecord]:
        """The next changes (possibly none); returns within about a second when idle."""
        if self._mode is None:
            raise FatalError("the sql source was not opened")
        wait = self._next_poll - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, MAX_WAIT))
            if self._next_poll - time.monotonic() > 0:
                return []
        mode = self._mode
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                result = await asyncio.shield(ahead)
            except asyncio.CancelledError:
                if not ahead.done():
                    self._ahead = ahead  # the next read() takes it
                raise
        else:
            result = await self._call(mode.poll, mode.state, time.time(), time.monotonic())
        mode.state = result.state
        self._next_poll = time.monotonic() + (0.0 if result.more else self.options.poll_interval)
        if result.more and type(mode).acked is ModeBase.acked:
            # more is ready: read it now (the mode's poll is pure, its state is adopted only
            # when a read() returns it); not for modes whose ack() uses the database
            self._ahead = asyncio.ensure_future(
                self._call(mode.poll, result.state, time.time(), time.monotonic())
            )
        return result.records if result.unique else unique_ids(result.records)

    async def ack(self, position: Any) -> None:
        """Let the mode drop state older than ``position``: ``snapshot_diff`` deletes older
        snapshot files, ``changelog`` deletes acknowledged changelog rows."""
        if self._mode is not None and type(self._mode).acked is not ModeBase.acked:
            await self._call(self._mode.acked, position)

    async def close(self) -> None:
        """Wait for a left-behind query, then dispose of the engine; idempotent."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:  # a poll read ahead that no read() took: its outcome is dropped
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        await self._call.settle()
        engine, self._engine, self._mode = self._engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)
