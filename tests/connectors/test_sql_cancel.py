"""A cancelled ``open()`` of the sql connectors leaves no database connection behind.

Real PostgreSQL behind a loopback proxy that holds each new connection for a moment,
so ``open()`` is cancelled while its thread is still connecting; ``close()`` must
then dispose of the engine that thread goes on to build.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from backbone.testing import wait_until
from tests.connectors.test_sql_support import Proxy, execute, rows, sink, source

pytestmark = [pytest.mark.timeout(60), pytest.mark.postgres]


class SlowProxy(Proxy):
    """A :class:`Proxy` that waits ``delay`` seconds before connecting each client."""

    delay = 1.0
    accepted = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1  # the connector's thread is connecting now
        await asyncio.sleep(self.delay)
        await super()._handle(reader, writer)


def _sessions(url: str, app: str) -> int:
    query = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
    return int(rows(url, query)[0][0])


async def _no_sessions_left(url: str, app: str) -> int:
    for _ in range(100):  # up to 10 s: a backend ends a moment after its client hung up
        if not (count := _sessions(url, app)):
            break
        await asyncio.sleep(0.1)
    return count


@pytest.mark.parametrize("kind", ["source", "sink"])
async def test_cancelled_open_then_close_leaves_no_connection(
    kind: str, postgres_url: str, postgres_server: Any, tmp_path: Path
) -> None:
    execute(postgres_url, "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT)")
    proxy = SlowProxy(postgres_server.port)
    await proxy.start()
    app = f"cancel-{uuid.uuid4().hex[:8]}"
    proxied = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    proxied += f"?application_name={app}"
    if kind == "source":
        connector: Any = source(proxied, tmp_path, table="orders", mode="bulk")
        opening = asyncio.create_task(connector.open(None))
    else:
        connector = sink(proxied, tmp_path, table="orders")
        opening = asyncio.create_task(connector.open())
    try:
        await wait_until(lambda: proxy.accepted, within=20, what="the connection attempt")
        assert not opening.done()  # held in the proxy's delay
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        await asyncio.wait_for(connector.close(), 20)  # waits for the thread, disposes
        assert await _no_sessions_left(postgres_url, app) == 0
    finally:
        await proxy.stop()
