"""The conformance checks themselves: they pass a correct source and catch broken ones.

The sources here are small in-memory sources built for the purpose (a counter
with an idle wait); each broken variant breaks exactly one rule of the contract.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from backbone import ConnectorOptions, Source, SourceRecord
from tests import conformance

pytestmark = pytest.mark.timeout(60)


class CounterOptions(ConnectorOptions):
    limit: int = 30
    """Records available at first (more appear when ``extra`` is raised)."""


class Counter(Source[CounterOptions]):
    """Positions 1..limit, read in batches of 4; idle reads wait 50 ms and return []."""

    extra = 0

    async def open(self, position: Any | None) -> None:
        self.next = (position or 0) + 1

    async def read(self) -> list[SourceRecord]:
        await asyncio.sleep(0)
        end = min(self.next + 4, self.options.limit + self.extra + 1)
        if self.next >= end:
            await asyncio.sleep(0.05)
            return []
        out = [SourceRecord(value={"n": n}, key=f"k{n}", position=n) for n in range(self.next, end)]
        self.next = end
        return out

    async def close(self) -> None:
        return None


class SwallowsCancel(Counter):
    async def read(self) -> list[SourceRecord]:
        try:
            return await super().read()
        except asyncio.CancelledError:
            return []


class NeverSuspends(Counter):
    async def read(self) -> list[SourceRecord]:
        return []


class BrokenAfterCancel(Counter):
    async def read(self) -> list[SourceRecord]:
        if getattr(self, "cancelled", False):
            raise RuntimeError("source is wedged")
        try:
            return await super().read()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class CursorOnRead(Counter):
    """Keeps its own cursor in ``state_dir``, advanced on read (not on ack): loses records."""

    async def open(self, position: Any | None) -> None:
        self.cursor = self.context.state_dir / "cursor.json"
        saved = json.loads(self.cursor.read_text()) if self.cursor.exists() else 0
        self.next = max(position or 0, saved) + 1

    async def read(self) -> list[SourceRecord]:
        records = await super().read()
        if records:
            self.context.state_dir.mkdir(parents=True, exist_ok=True)
            self.cursor.write_text(json.dumps(records[-1].position))
        return records


def factory(kind: type[Counter], tmp_path: Path, **options: Any) -> conformance.SourceFactory:
    def make() -> Source[Any]:
        return kind(CounterOptions(**options), conformance.context(tmp_path))

    return make


async def test_a_correct_source_passes(tmp_path: Path) -> None:
    await conformance.check_source(factory(Counter, tmp_path), minimum=10)
    await conformance.check_source_idle_read(factory(Counter, tmp_path), drain=30)
    instances: list[Counter] = []

    def make() -> Source[Any]:
        instances.append(Counter(CounterOptions(), conformance.context(tmp_path)))
        return instances[-1]

    async def more() -> None:
        instances[-1].extra = 5

    await conformance.check_source_cancellation(make, more=more)


async def test_a_swallowed_cancellation_is_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await conformance.check_source_cancellation(factory(SwallowsCancel, tmp_path))
    assert str(info.value).startswith("read() swallowed the cancellation and returned []")


async def test_a_read_that_never_suspends_is_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await conformance.check_source_cancellation(factory(NeverSuspends, tmp_path), tries=20)
    assert str(info.value).startswith("read() never stayed pending in 20 tries: nothing to cancel")


async def test_a_source_broken_by_a_cancelled_read_is_caught(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as info:
        await conformance.check_source_cancellation(factory(BrokenAfterCancel, tmp_path))
    assert str(info.value) == "source is wedged"


async def test_no_new_records_after_a_cancel_is_caught(tmp_path: Path) -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(AssertionError) as info:
        await conformance.check_source_cancellation(
            factory(Counter, tmp_path), more=nothing, more_within=0.5
        )
    assert str(info.value) == "only 0 of 1 records within 0.5s"


async def test_a_cursor_moved_on_read_fails_replays(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await conformance.check_source_replays(factory(CursorOnRead, tmp_path), minimum=10)
    assert str(info.value).startswith("open(None) twice without an ack gave different records")
