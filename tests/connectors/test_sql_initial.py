"""The first start: ``initial: snapshot`` emits the rows already there as ``op: r`` (also
after a restart mid-snapshot); ``initial: latest`` skips them in every mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backbone import SourceRecord
from tests.connectors.test_sql_support import execute, read_n, read_quiet, source

pytestmark = pytest.mark.timeout(60)


def items(url: str, *ids: int, at: str = "2024-05-01 12:00:00") -> None:
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP)")
    add(url, *ids, at=at)


def add(url: str, *ids: int, at: str = "2024-05-01 12:00:00") -> None:
    for i in ids:
        execute(url, f"INSERT INTO items VALUES ({i}, 'n{i}', '{at}')")


def ops(records: list[SourceRecord]) -> list[tuple[Any, Any]]:
    return [(r.value and r.value["op"], r.key and r.key["id"]) for r in records]


INC = {"table": "items", "mode": "incrementing", "incrementing_column": "id"}
TS = {"table": "items", "mode": "timestamp", "timestamp_column": "updated_at"}
TSINC = {**TS, "mode": "timestamp+incrementing", "incrementing_column": "id"}


async def test_incrementing_snapshot_is_r_even_after_a_restart_mid_snapshot(
    url: str, tmp_path: Path
) -> None:
    items(url, 1, 2, 3)
    src = source(url, tmp_path, **INC, batch_size=2)
    await src.open(None)
    try:
        first = await read_n(src, 2)
    finally:
        await src.close()
    add(url, 4)
    again = source(url, tmp_path, **INC, batch_size=2)
    await again.open(first[-1].position)
    try:
        rest = await read_n(again, 2)
        add(url, 5)
        later = await read_n(again, 1)
    finally:
        await again.close()
    assert ops(first + rest + later) == [("r", 1), ("r", 2), ("r", 3), ("c", 4), ("c", 5)]
    assert first[-1].position["snapshot_until"] == 3
    assert "snapshot_until" not in later[-1].position


async def test_incrementing_restart_before_any_record_keeps_the_first_start(
    url: str, tmp_path: Path
) -> None:
    items(url, 1, 2)
    src = source(url, tmp_path, **INC)
    await src.open(None)
    await src.close()  # no record was read, so no position was saved
    add(url, 3)
    again = source(url, tmp_path, **INC)
    await again.open(None)
    try:
        got = await read_n(again, 3)
    finally:
        await again.close()
    assert ops(got) == [("r", 1), ("r", 2), ("c", 3)]


@pytest.mark.parametrize("options", [TS, TSINC], ids=["timestamp", "timestamp+incrementing"])
async def test_timestamp_snapshot_is_r_then_updates_are_u(
    url: str, tmp_path: Path, options: dict[str, Any]
) -> None:
    items(url, 1, 2, 3)
    src = source(url, tmp_path, **options, batch_size=2)
    await src.open(None)
    try:
        first = await read_n(src, 3)
    finally:
        await src.close()
    again = source(url, tmp_path, **options, batch_size=2)
    await again.open(first[0].position)  # restart inside the snapshot
    try:
        replay = await read_n(again, 2 if options is TSINC else 3)
        execute(url, "UPDATE items SET name = 'x', updated_at = '2024-05-02 12:00:00' WHERE id = 2")
        [update] = await read_n(again, 1)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert sorted(ops(first)) == [("r", 1), ("r", 2), ("r", 3)]
    assert {op for op, _ in ops(replay)} == {"r"}
    assert ops([update]) == [("u", 2)]
    assert update.value["after"]["name"] == "x"
    assert "snapshot_until" not in update.position


async def test_incrementing_latest_skips_the_rows_there(url: str, tmp_path: Path) -> None:
    items(url, 1, 2)
    src = source(url, tmp_path, **INC, initial="latest")
    await src.open(None)
    try:
        assert await read_quiet(src) == []
        add(url, 3)
        got = await read_n(src, 1)
    finally:
        await src.close()
    assert ops(got) == [("c", 3)]


@pytest.mark.parametrize("options", [TS, TSINC], ids=["timestamp", "timestamp+incrementing"])
async def test_timestamp_latest_skips_the_rows_there_even_across_a_restart(
    url: str, tmp_path: Path, options: dict[str, Any]
) -> None:
    items(url, 1, 2)
    src = source(url, tmp_path, **options, initial="latest")
    await src.open(None)
    try:
        assert await read_quiet(src) == []
    finally:
        await src.close()
    add(url, 3, at="2024-05-03 12:00:00")
    execute(url, "UPDATE items SET updated_at = '2024-05-02 12:00:00' WHERE id = 1")
    again = source(url, tmp_path, **options, initial="latest")
    await again.open(None)  # nothing saved: the first start's cursor still holds
    try:
        got = await read_n(again, 2)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert ops(got) == [("u", 1), ("u", 3)]


async def test_bulk_latest_waits_one_interval_then_reads_every_row(
    url: str, tmp_path: Path
) -> None:
    items(url, 1, 2)
    src = source(url, tmp_path, table="items", mode="bulk", initial="latest", poll_interval="1s")
    await src.open(None)
    try:
        assert await src.read() == []  # no run at the start
        got = await read_n(src, 2)
    finally:
        await src.close()
    assert ops(got) == [("r", 1), ("r", 2)]
    assert got[-1].position == {"run": 1, "done": True}


async def test_snapshot_diff_latest_emits_only_changes(url: str, tmp_path: Path) -> None:
    items(url, 1, 2)
    options = {"table": "items", "mode": "snapshot_diff", "initial": "latest"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        assert await read_quiet(src) == []
        add(url, 3)
        execute(url, "UPDATE items SET name = 'x' WHERE id = 1", "DELETE FROM items WHERE id = 2")
        got = await read_n(src, 3)
    finally:
        await src.close()
    assert ops(got) == [("u", 1), ("c", 3), ("d", 2)]


@pytest.mark.parametrize("options", [TS, TSINC], ids=["timestamp", "timestamp+incrementing"])
async def test_a_row_stamped_in_the_future_does_not_stretch_the_snapshot(
    url: str, tmp_path: Path, options: dict[str, Any]
) -> None:
    items(url, 1)
    add(url, 2, at="2099-01-01 00:00:00")  # read only in 2099, and then as a change
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        first = await read_n(src, 1)
        execute(url, "UPDATE items SET updated_at = '2024-05-02 12:00:00' WHERE id = 1")
        second = await read_n(src, 1)
    finally:
        await src.close()
    assert ops(first + second) == [("r", 1), ("u", 1)]
    assert "snapshot_until" not in first[0].position
