"""The conformance checks themselves: they pass a correct source and catch broken ones.

The sources here are small in-memory sources built for the purpose (a counter
with an idle wait); each broken variant breaks exactly one rule of the contract.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from backbone import ConnectorOptions, ContractError, DataError, Source, SourceRecord, testing

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


def factory(kind: type[Counter], tmp_path: Path, **options: Any) -> testing.SourceFactory:
    def make() -> Source[Any]:
        return kind(CounterOptions(**options), testing.context(tmp_path))

    return make


async def test_a_correct_source_passes(tmp_path: Path) -> None:
    await testing.check_source(factory(Counter, tmp_path), minimum=10)
    await testing.check_source_idle_read(factory(Counter, tmp_path), drain=30)
    instances: list[Counter] = []

    def make() -> Source[Any]:
        instances.append(Counter(CounterOptions(), testing.context(tmp_path)))
        return instances[-1]

    async def more() -> None:
        instances[-1].extra = 5

    await testing.check_source_cancellation(make, more=more)


async def test_a_swallowed_cancellation_is_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await testing.check_source_cancellation(factory(SwallowsCancel, tmp_path))
    assert str(info.value).startswith("read() swallowed the cancellation and returned []")


async def test_a_read_that_never_suspends_is_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await testing.check_source_cancellation(factory(NeverSuspends, tmp_path), tries=20)
    assert str(info.value).startswith("read() never stayed pending in 20 tries: nothing to cancel")


async def test_a_source_broken_by_a_cancelled_read_is_caught(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as info:
        await testing.check_source_cancellation(factory(BrokenAfterCancel, tmp_path))
    assert str(info.value) == "source is wedged"


async def test_no_new_records_after_a_cancel_is_caught(tmp_path: Path) -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(AssertionError) as info:
        await testing.check_source_cancellation(
            factory(Counter, tmp_path), more=nothing, more_within=0.5
        )
    assert str(info.value) == "only 0 of 1 records within 0.5s"


async def test_a_cursor_moved_on_read_fails_replays(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await testing.check_source_replays(factory(CursorOnRead, tmp_path), minimum=10)
    assert str(info.value).startswith("open(None) twice without an ack gave different records")


class SharedPositions(Counter):
    """Gives every record of a read the read's last position and no identity (rule 3)."""

    async def read(self) -> list[SourceRecord]:
        records = await super().read()
        for record in records:
            record.position = records[-1].position
        return records


class SameIdentity(Counter):
    """Sets one identity on every record: their ce_ids collide."""

    async def read(self) -> list[SourceRecord]:
        records = await super().read()
        for record in records:
            record.identity = "same"
        return records


class BadInput(Counter):
    """Line ``bad`` (when ``extra`` is raised past it) is reported as configured."""

    raises = False
    positioned = True

    async def read(self) -> list[SourceRecord]:
        records = await super().read()
        out = []
        for record in records:
            if record.position == self.options.limit + 1:
                if self.raises:
                    raise DataError("line 31 is not JSON")
                record = SourceRecord(
                    value=b"{broken",
                    error="not JSON",
                    position=record.position if self.positioned else None,
                    identity=None if self.positioned else "x",
                )
            out.append(record)
        return out


def bad_factory(tmp_path: Path, **flags: bool) -> tuple[testing.SourceFactory, Any]:
    instances: list[BadInput] = []

    def make() -> Source[Any]:
        source = BadInput(CounterOptions(), testing.context(tmp_path))
        for name, value in flags.items():
            setattr(source, name, value)
        instances.append(source)
        return source

    async def inject() -> None:
        instances[-1].extra = 1

    return make, inject


async def test_records_sharing_a_position_without_identity_are_caught(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as info:
        await testing.check_source_replays(factory(SharedPositions, tmp_path), minimum=10)
    assert str(info.value).startswith(
        "source conformance broke the connector contract: a record has the same position as "
        "the record before it (4) and no identity"
    )


async def test_colliding_ce_ids_are_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        await testing.check_source_replays(factory(SameIdentity, tmp_path), minimum=10)
    assert re.match(
        r"^open\(None\): record 1 repeats ce_id [0-9a-f-]{36} of another change", str(info.value)
    )


async def test_bad_input_as_a_record_passes(tmp_path: Path) -> None:
    make, inject = bad_factory(tmp_path)
    [bad] = await testing.check_source_bad_input(make, inject)
    assert (bad.value, bad.error, bad.position) == (b"{broken", "not JSON", 31)


async def test_bad_input_raised_as_data_error_is_caught(tmp_path: Path) -> None:
    make, inject = bad_factory(tmp_path, raises=True)
    with pytest.raises(AssertionError) as info:
        await testing.check_source_bad_input(make, inject)
    assert str(info.value).startswith(
        "read() raised DataError (line 31 is not JSON): report bad input as SourceRecord("
    )


async def test_bad_input_without_a_position_is_caught(tmp_path: Path) -> None:
    make, inject = bad_factory(tmp_path, positioned=False)
    with pytest.raises(AssertionError) as info:
        await testing.check_source_bad_input(make, inject)
    assert str(info.value).startswith("the record with error='not JSON' carries no position")
