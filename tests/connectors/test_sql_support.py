"""Helpers (no tests) for the sql connector tests: databases, reading loops, a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backbone import ConnectorContext, SinkRecord, SourceRecord
from backbone.connectors.sql import SqlSink, SqlSinkOptions, SqlSource, SqlSourceOptions


def context(tmp_path: Path, name: str = "orders-db") -> ConnectorContext:
    state = tmp_path / "state" / name
    state.mkdir(parents=True, exist_ok=True)
    return ConnectorContext(
        name=name, base_dir=tmp_path, state_dir=state, logger=logging.getLogger(name)
    )


def source(url: str, tmp_path: Path, **options: Any) -> SqlSource:
    options.setdefault("poll_interval", "20ms")
    options.setdefault("lag", 0)
    return SqlSource(SqlSourceOptions(url=url, **options), context(tmp_path))


def sink(url: str, tmp_path: Path, **options: Any) -> SqlSink:
    return SqlSink(SqlSinkOptions(url=url, **options), context(tmp_path, "warehouse"))


def execute(url: str, *statements: str, params: list[dict[str, Any]] | None = None) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params or {})
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def dialect(url: str) -> str:
    return sa.engine.make_url(url).get_backend_name()


def serial(url: str) -> str:
    """An auto-incrementing integer primary key column type for the dialect."""
    return (
        "SERIAL PRIMARY KEY"
        if dialect(url) == "postgresql"
        else "INTEGER PRIMARY KEY AUTOINCREMENT"
    )


async def read_until(
    src: SqlSource, done: Callable[[list[SourceRecord]], bool], within: float = 10.0
) -> list[SourceRecord]:
    """read() until ``done(records so far)``; fail after ``timeout``."""
    got: list[SourceRecord] = []

    async def loop() -> None:
        while not done(got):
            got.extend(await src.read())

    await asyncio.wait_for(loop(), within)
    return got


async def read_n(src: SqlSource, count: int, within: float = 10.0) -> list[SourceRecord]:
    return await read_until(src, lambda got: len(got) >= count, within)


async def read_quiet(src: SqlSource, reads: int = 5) -> list[SourceRecord]:
    """Everything ``reads`` consecutive polls return (for 'nothing more' checks)."""
    got: list[SourceRecord] = []
    for _ in range(reads):
        got.extend(await asyncio.wait_for(src.read(), 10))
        await asyncio.sleep(0.03)
    return got


def values(records: list[SourceRecord]) -> list[Any]:
    return [r.value for r in records]


def afters(records: list[SourceRecord], column: str = "id") -> list[Any]:
    return [r.value["after"][column] for r in records if r.value is not None and r.value["after"]]


def sink_record(
    value: Any, key: Any = None, offset: int = 0, topic: str = "shop.orders"
) -> SinkRecord:
    import json

    return SinkRecord(
        topic=topic,
        partition=0,
        offset=offset,
        key=None if key is None else json.dumps(key).encode(),
        value=None if value is None else json.dumps(value).encode(),
    )


class Proxy:
    """A TCP proxy on 127.0.0.1 that can cut every connection (a database going away)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port or self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update({writer, up_writer})
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
