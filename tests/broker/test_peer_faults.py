"""Log noise from bad connections: one WARNING per bad connection, rate-limited, no
tracebacks; every bad connection is either logged or counted in a summary line.

Lines are counted by a handler that keeps only the formatted text (like a log file):
pytest's log capture keeps the records, whose arguments would keep the connection's
objects alive, and so hide the ERROR asyncio writes when an unretrieved task is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from backbone.broker import Broker
from tests.broker.test_connection_limits import until
from tests.broker.test_server import Raw, assert_serves, frame

pytestmark = pytest.mark.timeout(90)

GARBAGE = frame(b"\xff\x01\x02")  # one frame too short to hold a request header
SUMMARY = re.compile(
    r"^(\d+) more warnings about misbehaving connections were not logged in the last 1s "
    r"\(at most 5 are logged per 1s\)$"
)


async def collect_garbage() -> None:
    """Let the connection's objects go: an unretrieved task exception is logged (as an
    ERROR with a traceback) only when the task is collected."""
    for _ in range(5):
        with warnings.catch_warnings():  # sockets other tests left to the collector
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Line:
    level: int
    logger: str
    message: str
    traceback: bool


class Lines(logging.Handler):
    """The WARNING-or-worse lines of the broker (and of asyncio on its behalf)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[Line] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("backbone.broker", "asyncio")):
            line = Line(record.levelno, record.name, record.getMessage(), bool(record.exc_info))
            self.lines.append(line)


@contextlib.contextmanager
def only_lines() -> Iterator[Lines]:
    """The only handler of the root logger meanwhile (pytest's handlers, added for each
    test phase, keep every record: see the module docstring)."""
    handler = Lines()
    root = logging.getLogger()
    others = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield handler
    finally:
        root.handlers[:] = others


async def test_three_malformed_frames_in_a_row_log_one_warning(broker: Broker) -> None:
    with only_lines() as lines:
        conn = await Raw.connect(broker.port)
        await conn.send(GARBAGE * 3)
        assert await conn.closed()
        await until(lambda: broker.server.connection_count == 0, "the connection is still open")
        await collect_garbage()
    assert [(line.level, line.logger, line.traceback) for line in lines.lines] == [
        (logging.WARNING, "backbone.broker.server", False)
    ], lines.lines
    assert "undecodable request header" in lines.lines[0].message
    await assert_serves(broker.port)


async def test_a_flood_of_garbage_connections_is_rate_limited_and_counted(
    broker: Broker,
) -> None:
    """300 connections with three malformed frames each: at most 5 lines per second plus
    one summary per second; the lines and the summaries account for every connection."""
    faults = broker.server.faults
    faults.limit, faults.window_s = 5, 1.0
    count = 300

    async def bad() -> None:
        conn = await Raw.connect(broker.port)
        await conn.send(GARBAGE * 3)
        assert await conn.closed()

    def summarised() -> int:
        return sum(int(m[1]) for line in lines.lines if (m := SUMMARY.match(line.message)))

    with only_lines() as lines:
        for _ in range(count // 30):
            await asyncio.gather(*(bad() for _ in range(30)))
        await until(lambda: faults.logged + faults.suppressed == count, "not every connection")
        # the last summary is written when its window ends
        await until(lambda: summarised() == faults.suppressed, "the summaries do not add up", 10)
        await collect_garbage()
    each = [line for line in lines.lines if not SUMMARY.match(line.message)]
    assert all(line.level == logging.WARNING and not line.traceback for line in lines.lines)
    assert all("undecodable request header" in line.message for line in each)
    assert len(each) == faults.logged < count // 4
    assert len(each) + summarised() == count
    await assert_serves(broker.port)
