"""Conformance checks for sources (see :mod:`backbone.testing`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from backbone.connector import Source, SourceRecord
from backbone.errors import ContractError, DataError
from backbone.events import SourceEncoder, shared_position_message
from backbone.testing._support import identity, read_at_least

__all__ = [
    "Identity",
    "SourceFactory",
    "check_source",
    "check_source_bad_input",
    "check_source_cancellation",
    "check_source_idle_read",
    "check_source_replays",
    "check_source_resumes",
    "check_source_rules",
    "event_ids",
]

SourceFactory = Callable[[], Source[Any]]
"""A zero-argument callable returning a fresh, unopened source instance."""

Identity = Callable[[SourceRecord], Any]
"""Maps a record to what must be equal when the same change is read again."""


def check_source_rules(name: str, records: Sequence[SourceRecord], start: Any) -> None:
    """The runtime's per-record checks, on records read after ``open(start)``.

    Raises :class:`~backbone.errors.ContractError` (the message the runtime gives) for
    a record that shares the position of the record before it (or has none) without
    an ``identity`` (rule 3), and :class:`AssertionError` for a position that is not
    JSON (it could not be saved), a bad-input record without the raw input, or a
    position-only record without a position (rule 6).
    """
    previous = start
    for record in records:
        if not record.produce:
            assert record.position is not None, (
                "a position-only record (SourceRecord.position_only) must carry a position"
            )
            previous = record.position
            continue
        if record.error is not None:
            assert isinstance(record.value, bytes | str), (
                f"a record with error={record.error!r} must carry the raw input (bytes or "
                f"text) as its value, not {type(record.value).__name__}"
            )
            continue
        position = record.position
        if record.identity is None and (position is None or position == previous):
            raise ContractError(shared_position_message(name, record, previous))
        previous = position
        if position is not None:
            text = json.dumps(position)
            assert json.loads(text) == position, f"position {position!r} is not JSON-able"


def event_ids(name: str, records: Sequence[SourceRecord]) -> list[str]:
    """The CloudEvents ``ce_id`` the runtime gives each record of connector ``name``
    (records with ``error`` and position-only records get none: they are not produced)."""
    encoder = SourceEncoder(connector=name, kind="conformance", topic="conformance")
    return [
        encoder.event_id(r.position, r.identity).decode()
        for r in records
        if r.error is None and r.produce
    ]


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for index, ce_id in enumerate(ids):
        assert ce_id not in seen, f"{what}: record {index} repeats ce_id {ce_id} of another change"
        seen.add(ce_id)


async def _run(
    make: SourceFactory, position: Any, minimum: int, *, within: float = 20.0
) -> tuple[str, list[SourceRecord]]:
    """Open a fresh instance at ``position``, read ``minimum`` records, close (no ack)."""
    source = make()
    await source.open(position)
    try:
        records = await read_at_least(source, minimum, within=within) if minimum else []
    finally:
        await source.close()
    check_source_rules(source.context.name, records, position)
    return source.context.name, records


def _resume_point(records: Sequence[SourceRecord], cut: int) -> int:
    """The first record at or after ``cut`` that carries a position (rules 1 and 2)."""
    for index in range(cut, len(records)):
        if records[index].position is not None:
            return index
    raise AssertionError(
        f"no record from index {cut} on carries a position: every change must end with "
        "a record that has one"
    )


async def check_source_resumes(
    make: SourceFactory, *, minimum: int, same: Identity = identity
) -> None:
    """Resume from a position after a restart, nothing skipped.

    An instance opened with the position of record k (the first record from
    ``minimum // 2`` on that carries one) returns exactly the records after k.
    ``same`` maps a record to what must be equal on replay (default: key, value,
    topic; pass one that leaves out volatile fields such as read times).
    """
    _, records = await _run(make, None, minimum)
    cut = _resume_point(records, minimum // 2)
    position = records[cut].position
    expected = [same(r) for r in records[cut + 1 : max(minimum, cut + 1)]]
    _, again = await _run(make, position, len(expected))
    assert [same(r) for r in again[: len(expected)]] == expected, (
        f"resuming after {position!r} did not give the records that followed it"
    )


async def check_source_replays(
    make: SourceFactory, *, minimum: int, same: Identity = identity
) -> None:
    """No position advance on failure; ``ce_id`` unique per change and stable on replay.

    The runtime acks a position only after the broker stored every record up to it;
    when producing fails (or the process dies) it reopens the source from the last
    *acked* position. This check injects that failure: an instance opened from
    position P reads records and is closed without any ``ack`` (the failed run); a
    second instance opened from the same P must return the same records with the
    same ``ce_id``s. The same is checked for the very first start (``open(None)``
    twice, no ack). A source that moved a cursor of its own on ``read`` (in
    ``state_dir``, in the database...) instead of on ``ack`` fails here. Within a
    run every change has its own ``ce_id``, and records obey the runtime's rules
    (:func:`check_source_rules`).
    """
    runs = [await _run(make, None, minimum) for _ in range(2)]
    name = runs[0][0]
    first = [[same(r) for r in records][:minimum] for _, records in runs]
    assert first[0] == first[1], "open(None) twice without an ack gave different records"
    ids = [event_ids(name, records[:minimum]) for _, records in runs]
    _unique(ids[0], "open(None)")
    assert ids[0] == ids[1], "open(None) twice without an ack gave different ce_ids"
    records = runs[0][1]
    cut = _resume_point(records, minimum // 2)
    position = records[cut].position
    need = max(minimum - cut - 1, 0)
    again = [await _run(make, position, need) for _ in range(2)]
    got = [[same(r) for r in records][:need] for _, records in again]
    assert got[0] == got[1], (
        f"reopening from {position!r} after a run that never acked gave different records"
    )
    ids = [event_ids(name, records[:need]) for _, records in again]
    _unique(ids[0], f"open({position!r})")
    assert ids[0] == ids[1], (
        f"reopening from {position!r} after a run that never acked gave different ce_ids"
    )


async def check_source_cancellation(
    make: SourceFactory,
    *,
    bound: float = 5.0,
    drain_within: float = 20.0,
    tries: int = 200,
    more: Callable[[], Awaitable[None]] | None = None,
    more_within: float = 20.0,
) -> None:
    """Cancelling a pending ``read()`` propagates ``CancelledError``; the source still works.

    1. Drain: ``read()`` until one returns ``[]`` (the source is idle) or
       ``drain_within`` seconds passed.
    2. Start a ``read()`` and let the loop run it to its first suspension (one
       ``sleep(0)``); if it already returned, start another -- up to ``tries``
       times. A read that never suspends fails the check: there is nothing to
       cancel and such a read blocks the event loop.
    3. Cancel the pending read: it must end with ``CancelledError`` within
       ``bound`` seconds (not swallow it, not return a batch).
    4. The same instance still works: a later ``read()`` returns a list within
       ``bound``; with ``more`` (a coroutine function adding new data to the
       system the source reads), the source must return at least one new record
       within ``more_within`` seconds. Then ``close()`` works, twice.
    """
    source = make()
    await source.open(None)
    try:
        deadline = time.monotonic() + drain_within
        while await asyncio.wait_for(source.read(), bound) and time.monotonic() < deadline:
            pass
        task: asyncio.Task[list[SourceRecord]] | None = None
        for _ in range(tries):
            task = asyncio.create_task(source.read())
            await asyncio.sleep(0)  # the read runs up to its first real await
            if not task.done():
                break
            assert isinstance(task.result(), list)
            task = None
        assert task is not None, f"read() never stayed pending in {tries} tries: nothing to cancel"
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=bound)
        assert done, f"read() did not end within {bound}s of being cancelled"
        if not task.cancelled():
            raise AssertionError(
                f"read() swallowed the cancellation and returned {task.result()!r}"
            )
        if more is not None:
            await more()
            assert await read_at_least(source, 1, within=more_within)
        else:
            assert isinstance(await asyncio.wait_for(source.read(), bound), list)
    finally:
        await source.close()
    await source.close()


async def check_source_idle_read(make: SourceFactory, *, drain: int, bound: float = 5.0) -> None:
    """After ``drain`` records, ``read()`` returns within ``bound`` seconds (maybe empty)."""
    source = make()
    await source.open(None)
    try:
        if drain:
            await read_at_least(source, drain)
        records = await asyncio.wait_for(source.read(), bound)  # TimeoutError past the bound
        assert isinstance(records, list)
    finally:
        await source.close()


async def check_source_bad_input(
    make: SourceFactory,
    inject: Callable[[], Awaitable[None]],
    *,
    within: float = 20.0,
    bound: float = 5.0,
) -> list[SourceRecord]:
    """Bad input is reported as a record with ``error`` (rule 4), never by raising.

    Opens a fresh instance, drains it (reads until ``[]``), awaits ``inject()`` (a
    coroutine function putting input the source cannot parse into the system it
    reads), then reads until records with ``error`` set arrive (within ``within``
    seconds). Each must carry a non-empty reason, the raw input (bytes or text) as
    its value and the position after it (or, inside a change that spans several
    records -- rule 2 -- ``position=None`` and an ``identity``, a later record of the
    change carrying the position: the check reads on until one does). A ``read()``
    raising ``DataError`` fails the check (the runtime treats it as a contract
    violation). Returns the records with errors;
    :func:`~backbone.testing.check_source_dead_letters` shows they reach the
    dead-letter topic through the runtime.
    """
    source = make()
    await source.open(None)
    bad: list[SourceRecord] = []
    ended = False  # whether a record with a position came after the last bad one
    end_by = 0.0
    try:
        deadline = time.monotonic() + within
        while await asyncio.wait_for(source.read(), bound) and time.monotonic() < deadline:
            pass
        await inject()
        while not bad or not ended:
            if bad and time.monotonic() > end_by:
                break  # reported below: the change never ended with a position
            if time.monotonic() > deadline:
                raise AssertionError(f"no record with error set within {within}s of inject()")
            try:
                records = await asyncio.wait_for(source.read(), bound)
            except DataError as exc:
                raise AssertionError(
                    f"read() raised DataError ({exc}): report bad input as "
                    "SourceRecord(value=<raw input>, error=<why>, position=<after it>)"
                ) from exc
            check_source_rules(source.context.name, records, None)
            for record in records:
                if record.error is not None:
                    bad.append(record)
                    ended = record.position is not None
                    end_by = time.monotonic() + bound  # the change ends soon after it
                elif bad and record.position is not None:
                    ended = True
    finally:
        await source.close()
    for record in bad:
        assert isinstance(record.error, str) and record.error, "error must be a non-empty reason"
        assert record.position is not None or (record.identity is not None and ended), (
            f"the record with error={record.error!r} carries no position: give it the "
            "position after the bad input, so a restart does not read it again (or, "
            "inside a change spanning several records, position=None and an identity, "
            "with the change's last record carrying the position)"
        )
    return bad


async def check_source(
    make: SourceFactory,
    *,
    minimum: int,
    same: Identity = identity,
    bad_input: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Every source check, in order: resumes, replays (with ``ce_id``), cancellation,
    and, given ``bad_input`` (see :func:`check_source_bad_input`), the bad-input rule."""
    await check_source_resumes(make, minimum=minimum, same=same)
    await check_source_replays(make, minimum=minimum, same=same)
    await check_source_cancellation(make)
    if bad_input is not None:
        await check_source_bad_input(make, bad_input)
