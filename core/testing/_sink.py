"""Conformance checks for sinks (see :mod:`backbone.testing`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from backbone.connector import Sink, SinkRecord, TopicPartition
from backbone.errors import ConnectorError, DataError

__all__ = [
    "SinkFactory",
    "check_sink",
    "check_sink_commits",
    "check_sink_data_error_is_all_or_nothing",
    "check_sink_errors_are_typed",
    "check_sink_writes",
    "written_offsets",
]

SinkFactory = Callable[[], Sink[Any]]
"""A zero-argument callable returning a fresh, unopened sink instance."""

ReadBack = Callable[[], Awaitable[list[Any]]]
"""Reads what the target system holds now (rows, lines...), in a comparable form."""


def written_offsets(records: Sequence[SinkRecord]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last of ``records`` (what the runtime hands
    to ``precommit`` once they were written)."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


async def _settle(sink: Sink[Any], records: Sequence[SinkRecord]) -> Mapping[TopicPartition, int]:
    """``flush`` the partitions of ``records`` and check ``precommit`` then covers them all."""
    given = written_offsets(records)
    await sink.flush(list(given))
    committable = dict(await sink.precommit(dict(given)))
    assert committable == given, (
        f"after flush({sorted(given)}), precommit returned {committable}, not every "
        f"written offset {given}: flush must make everything written durable"
    )
    return committable


async def check_sink_writes(
    make: SinkFactory,
    records: Sequence[SinkRecord],
    read_back: ReadBack,
    expected: list[Any],
) -> None:
    """What ``precommit`` reports durable is in the target; ``close()`` twice works.

    The batch is written; ``precommit`` may only report offsets that were written;
    then ``flush`` of the batch's partitions must make ``precommit`` cover the whole
    batch, and ``read_back()``, awaited at once (no wait, no retry), must return
    ``expected``: what a sink said is durable must be there. A sink without
    ``precommit``/``flush`` of its own is durable when ``write`` returns.
    """
    sink = make()
    await sink.open()
    try:
        await sink.write(list(records))
        given = written_offsets(records)
        early = dict(await sink.precommit(dict(given)))
        _within(early, given)
        await _settle(sink, records)
        assert await read_back() == expected, "the target does not hold the written batch"
    finally:
        await sink.close()
        await sink.close()


def _within(committable: Mapping[TopicPartition, int], given: Mapping[TopicPartition, int]) -> None:
    for tp, offset in committable.items():
        assert tp in given, f"precommit returned an offset for {tp}, which was not written"
        assert offset <= given[tp], (
            f"precommit returned offset {offset} for {tp}, beyond the written {given[tp]}"
        )


async def check_sink_commits(
    make: SinkFactory,
    records: Sequence[SinkRecord],
    read_back: ReadBack,
    expected: Sequence[Any],
    *,
    batch: int = 10,
) -> None:
    """Offsets are committed only for durable records; a crash loses and doubles nothing.

    ``expected[i]`` is what ``records[i]`` leaves in the target, and ``read_back()``
    returns those items (in any order). The check plays the runtime through a crash:

    1. a sink writes ``records`` in batches of ``batch``, calling ``precommit``
       after each, as the runtime does. Every offset it returns must have been
       written, and every record below it must be in the target (it may be
       committed now);
    2. the sink is closed without ``flush`` (a crash: nothing more is committed);
    3. a new sink gets every record from the last committed offsets on (what the
       runtime delivers again), then ``flush``: ``precommit`` must cover them all,
       and the target must hold each record's item exactly once -- a staged range
       is rewritten, not duplicated.
    """
    assert len(records) == len(expected), "give one expected item per record"
    committed: dict[TopicPartition, int] = {}
    first = make()
    await first.open()
    try:
        for start in range(0, len(records), batch):
            chunk = list(records[start : start + batch])
            await first.write(chunk)
            given = written_offsets(records[: start + batch])
            for tp, offset in committed.items():
                given.setdefault(tp, offset)
            durable = dict(await first.precommit(dict(given)))
            _within(durable, given)
            for tp, offset in durable.items():
                assert offset >= committed.get(tp, 0), (
                    f"precommit moved {tp} back from {committed[tp]} to {offset}"
                )
                committed[tp] = offset
            held = Counter(_hashable(item) for item in await read_back())
            for record, item in zip(records, expected, strict=True):
                tp = TopicPartition(record.topic, record.partition)
                if record.offset < committed.get(tp, 0):
                    assert held[_hashable(item)] >= 1, (
                        f"precommit reported {tp} durable up to {committed[tp]}, but the "
                        f"record at offset {record.offset} is not in the target"
                    )
    finally:
        await first.close()
    again = [
        record
        for record in records
        if record.offset >= committed.get(TopicPartition(record.topic, record.partition), 0)
    ]
    second = make()
    await second.open()
    try:
        for start in range(0, len(again), batch):
            await second.write(again[start : start + batch])
        if again:
            await _settle(second, again)
        held = Counter(_hashable(item) for item in await read_back())
        want = Counter(_hashable(item) for item in expected)
        assert held == want, (
            "after a crash and the redelivery of everything uncommitted, the target "
            f"holds {dict(held - want)} too many and misses {dict(want - held)}"
        )
    finally:
        await second.close()


def _hashable(item: Any) -> Any:
    if isinstance(item, dict):
        return tuple(sorted((key, _hashable(value)) for key, value in item.items()))
    if isinstance(item, list):
        return tuple(_hashable(value) for value in item)
    return item


async def check_sink_data_error_is_all_or_nothing(
    make: SinkFactory,
    good_then_bad: Sequence[SinkRecord],
    read_back: ReadBack,
) -> None:
    """A batch with a bad record raises ``DataError`` and writes nothing of the batch.

    The runtime then writes the batch one record at a time so that only the bad
    records go to the dead-letter topic: a ``write`` that raised must leave nothing
    of its batch behind (nor staged: the check flushes before looking), or the good
    records would be written twice.
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
        await sink.flush(list(written_offsets(good_then_bad)))
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
    :func:`check_sink_errors_are_typed` (``breaks``, last: it breaks the target).
    :func:`check_sink_commits` needs its own fresh target and one expected item per
    record: run it separately."""
    await check_sink_writes(make, records, read_back, expected)
    if good_then_bad is not None:
        await check_sink_data_error_is_all_or_nothing(make, good_then_bad, read_back)
    if breaks is not None:
        await check_sink_errors_are_typed(make, records, breaks)
