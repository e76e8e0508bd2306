"""Small helpers of the conformance suite: contexts, records, waits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backbone.clock import Clock, SystemClock
from backbone.connector import ConnectorContext, SinkRecord, Source, SourceRecord

__all__ = ["context", "identity", "read_at_least", "sink_record", "wait_until"]


def context(
    tmp_path: Path,
    name: str = "conformance",
    *,
    http: Any = None,
    push: Any = None,
    clock: Clock | None = None,
) -> ConnectorContext:
    """A connector context rooted in ``tmp_path`` (state in ``tmp_path/state/<name>``).

    ``http``: an :class:`~backbone.httpapp.HttpApp` (the connector gets its routes
    handle, as in the runtime); ``push``: a push path such as
    :class:`~backbone.testing.PushRecorder`; ``clock``: default the real clock, pass
    a :class:`~backbone.testing.ManualClock` to drive time.
    """
    return ConnectorContext(
        name=name,
        base_dir=tmp_path,
        state_dir=tmp_path / "state" / name,
        logger=logging.getLogger(f"backbone.testing.{name}"),
        http=None if http is None else http.routes_for(name),
        push=push,
        clock=clock or SystemClock(),
    )


def identity(record: SourceRecord) -> str:
    """What makes two source records "the same" for the checks: key, value, topic."""
    value = record.value
    if isinstance(value, bytes):
        value = {"bytes": value.hex()}
    key = record.key.hex() if isinstance(record.key, bytes) else record.key
    return json.dumps([key, value, record.topic], sort_keys=True, default=str)


async def read_at_least(
    source: Source[Any], minimum: int, *, within: float = 20.0
) -> list[SourceRecord]:
    """Call ``read()`` until at least ``minimum`` records came (or fail after ``within`` s)."""
    records: list[SourceRecord] = []
    deadline = time.monotonic() + within
    while len(records) < minimum:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(records)} of {minimum} records within {within}s")
        # one read may take up to 5 s however short ``within`` is (a loaded machine):
        # running out of time is then reported by the check above, not as a timeout
        records += await asyncio.wait_for(source.read(), max(within, 5.0))
    return records


async def wait_until(
    predicate: Callable[[], Any], *, within: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` (sync or async) every 50 ms until truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def sink_record(value: Any, offset: int, *, topic: str = "t", key: Any = None) -> SinkRecord:
    """A sink record holding ``value`` (and ``key``) as JSON, at ``offset`` of partition 0."""
    return SinkRecord(
        topic=topic,
        partition=0,
        offset=offset,
        key=None if key is None else json.dumps(key).encode(),
        value=None if value is None else json.dumps(value).encode(),
        headers=[("ce_id", str(offset).encode())],
        timestamp_ms=1_700_000_000_000 + offset,
    )
