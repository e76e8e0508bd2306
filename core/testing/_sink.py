"""Conformance checks for sinks (see :mod:`backbone.testing`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from backbone.connector import Sink, SinkRecord
from backbone.errors import ConnectorError, DataError

__all__ = [
    "SinkFactory",
    "check_sink",
    "check_sink_data_error_is_all_or_nothing",
    "check_sink_errors_are_typed",
    "check_sink_writes",
]

SinkFactory = Callable[[], Sink[Any]]
"""A zero-argument callable returning a fresh, unopened sink instance."""

ReadBack = Callable[[], Awaitable[list[Any]]]
"""Reads what the target system holds now (rows, lines...), in a comparable form."""


async def check_sink_writes(
    make: SinkFactory,
    records: Sequence[SinkRecord],
    read_back: ReadBack,
    expected: list[Any],
) -> None:
    """``write()`` returns after the batch is in the target; ``close()`` twice works.

    ``read_back()`` is awaited right after ``write`` returned (no wait, no retry):
    what a sink was told is written must be there.
    """
    sink = make()
    await sink.open()
    try:
        await sink.write(list(records))
        assert await read_back() == expected, "the target does not hold the written batch"
    finally:
        await sink.close()
        await sink.close()


async def check_sink_data_error_is_all_or_nothing(
    make: SinkFactory,
    good_then_bad: Sequence[SinkRecord],
    read_back: ReadBack,
) -> None:
    """A batch with a bad record raises ``DataError`` and writes nothing of the batch.

    The runtime then writes the batch one record at a time so that only the bad
    records go to the dead-letter topic: a ``write`` that raised must leave nothing
    of its batch behind, or the good records would be written twice.
    """
    sink = make()
    await sink.open()
    try:
        before = await read_back()
        try:
            await sink.write(list(good_then_bad))
        except DataError:
            pass
        else:
            raise AssertionError("write() of a batch with a bad record did not raise DataError")
        assert await read_back() == before, "write() raised DataError but wrote part of the batch"
    finally:
        await sink.close()


async def check_sink_errors_are_typed(
    make: SinkFactory,
    records: Sequence[SinkRecord],
    breaks: Callable[[], Awaitable[None]],
) -> ConnectorError:
    """A failing target makes ``write()`` raise an error *type* the runtime acts on.

    Opens a sink, awaits ``breaks()`` (make the target fail: drop the table, stop
    the server, remove the folder), writes ``records``: ``write`` must raise a
    :class:`~backbone.errors.ConnectorError` -- ``RetriableError`` (retried with
    backoff), ``DataError`` (dead-letter topic) or ``FatalError`` (stop FAILED) --
    not a library's own exception. Returns the error. ``close()`` still works.
    """
    sink = make()
    await sink.open()
    try:
        await breaks()
        try:
            await sink.write(list(records))
        except ConnectorError as exc:
            return exc
        except Exception as exc:
            raise AssertionError(
                f"write() to a broken target raised {type(exc).__name__}: {exc}; raise "
                "RetriableError, DataError or FatalError (backbone.sdk) instead"
            ) from exc
        raise AssertionError("write() to a broken target returned as if it had written")
    finally:
        await sink.close()


async def check_sink(
    make: SinkFactory,
    *,
    records: Sequence[SinkRecord],
    read_back: ReadBack,
    expected: list[Any],
    good_then_bad: Sequence[SinkRecord] | None = None,
    breaks: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Every sink check: :func:`check_sink_writes`, then, when given,
    :func:`check_sink_data_error_is_all_or_nothing` (``good_then_bad``) and
    :func:`check_sink_errors_are_typed` (``breaks``, last: it breaks the target)."""
    await check_sink_writes(make, records, read_back, expected)
    if good_then_bad is not None:
        await check_sink_data_error_is_all_or_nothing(make, good_then_bad, read_back)
    if breaks is not None:
        await check_sink_errors_are_typed(make, records, breaks)
