"""Capture details: timestamp-mode updates, the ``timezone`` option, a ``key`` that is not
the primary key, and ``query`` in modes other than bulk."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone import SourceRecord
from backbone.connectors.sql._modes import add_id
from tests.connectors.test_sql_support import execute, read_n, read_quiet, source

pytestmark = pytest.mark.timeout(60)


def items(url: str) -> None:
    execute(
        url,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT, "
        "updated_at TIMESTAMP NOT NULL)",
    )


def add(url: str, i: int, at: str = "2024-05-01 12:00:00", name: str | None = None) -> None:
    execute(url, f"INSERT INTO items VALUES ({i}, 'C{i}', '{name or f'n{i}'}', '{at}')")


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def summary(records: list[SourceRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.value and r.value["op"],
            r.key,
            r.value and (r.value["after"] or {}).get("name"),
        )
        for r in records
    ]


async def test_timestamp_mode_captures_updates_as_u_with_the_new_row(
    url: str, tmp_path: Path
) -> None:
    items(url)
    add(url, 1)
    add(url, 2)
    options = {"table": "items", "mode": "timestamp", "timestamp_column": "updated_at"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        await read_n(src, 2)
        execute(
            url, "UPDATE items SET name = 'two', updated_at = '2024-05-01 13:00:00' WHERE id = 2"
        )
        execute(
            url, "UPDATE items SET name = 'one', updated_at = '2024-05-01 14:00:00' WHERE id = 1"
        )
        updates = await read_n(src, 2)
        # an update that leaves the timestamp alone is not seen (documented limit)
        execute(url, "UPDATE items SET name = 'unseen' WHERE id = 2")
        assert await read_quiet(src) == []
    finally:
        await src.close()
    assert summary(updates) == [("u", {"id": 2}, "two"), ("u", {"id": 1}, "one")]
    assert [r.value["source"]["ts_ms"] for r in updates] == [
        ms("2024-05-01T13:00:00+00:00"),
        ms("2024-05-01T14:00:00+00:00"),
    ]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2024-05-01 12:00:00", "2024-05-01T12:00:00+02:00"),  # summer time
        ("2024-01-15 12:00:00", "2024-01-15T12:00:00+01:00"),
    ],
)
async def test_timezone_applies_to_naive_timestamp_columns(
    url: str, tmp_path: Path, stored: str, expected: str
) -> None:
    items(url)
    add(url, 1, at=stored)
    src = source(
        url,
        tmp_path,
        table="items",
        mode="timestamp",
        timestamp_column="updated_at",
        timezone="Europe/Berlin",
    )
    await src.open(None)
    try:
        [record] = await read_n(src, 1)
    finally:
        await src.close()
    assert record.value["after"]["updated_at"] == expected
    assert record.value["source"]["ts_ms"] == record.timestamp_ms == ms(expected)


async def test_a_key_that_is_not_the_primary_key_keys_the_changelog(
    url: str, tmp_path: Path
) -> None:
    items(url)
    options = {
        "table": "items",
        "mode": "changelog",
        "install_triggers": True,
        "key": "code",
        "tombstones": True,
    }
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        assert await read_quiet(src) == []
        add(url, 1)
        got = await read_n(src, 1)
        execute(url, "UPDATE items SET name = 'x' WHERE code = 'C1'")
        got += await read_n(src, 1)
        execute(url, "UPDATE items SET code = 'D1' WHERE id = 1")  # the key itself changes
        got += await read_n(src, 3)
        execute(url, "DELETE FROM items WHERE id = 1")
        got += await read_n(src, 2)
    finally:
        await src.close()
    assert summary(got) == [
        ("c", {"code": "C1"}, "n1"),
        ("u", {"code": "C1"}, "x"),
        ("d", {"code": "C1"}, None),
        (None, {"code": "C1"}, None),
        ("u", {"code": "D1"}, "x"),
        ("d", {"code": "D1"}, None),
        (None, {"code": "D1"}, None),
    ]
    assert got[2].value["before"] == {"code": "C1"}
    assert got[5].value["before"] == {"code": "D1"}


async def test_a_key_that_is_not_the_primary_key_keys_incrementing_records(
    url: str, tmp_path: Path
) -> None:
    items(url)
    add(url, 1)
    src = source(
        url, tmp_path, table="items", mode="incrementing", incrementing_column="id", key="code"
    )
    await src.open(None)
    try:
        add(url, 2)
        got = await read_n(src, 2)
    finally:
        await src.close()
    assert summary(got) == [("r", {"code": "C1"}, "n1"), ("c", {"code": "C2"}, "n2")]


QUERY = "SELECT id, name, updated_at FROM items WHERE name <> 'hidden'"


async def test_query_in_incrementing_mode_resumes_and_filters(url: str, tmp_path: Path) -> None:
    items(url)
    add(url, 1)
    add(url, 2, name="hidden")
    options = {"query": QUERY, "mode": "incrementing", "incrementing_column": "id"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        first = await read_n(src, 1)
        assert await read_quiet(src) == []
    finally:
        await src.close()
    add(url, 3)
    again = source(url, tmp_path, **options)
    await again.open(first[-1].position)
    try:
        rest = await read_n(again, 1)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert summary(first + rest) == [("r", {"id": 1}, "n1"), ("c", {"id": 3}, "n3")]
    assert first[0].value["source"]["table"] == "query"
    assert set(first[0].value["after"]) == {"id", "name", "updated_at"}


async def test_query_in_timestamp_mode_captures_updates(url: str, tmp_path: Path) -> None:
    items(url)
    add(url, 1)
    options = {"query": QUERY, "mode": "timestamp", "timestamp_column": "updated_at", "key": "id"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        first = await read_n(src, 1)
        execute(url, "UPDATE items SET name = 'x', updated_at = '2024-05-02 00:00:00' WHERE id = 1")
        second = await read_n(src, 1)
    finally:
        await src.close()
    assert summary(first + second) == [("r", {"id": 1}, "n1"), ("u", {"id": 1}, "x")]


async def test_query_in_snapshot_diff_mode_sees_rows_leave_the_query(
    url: str, tmp_path: Path
) -> None:
    items(url)
    add(url, 1)
    add(url, 2)
    src = source(url, tmp_path, query=QUERY, mode="snapshot_diff", key="id")
    await src.open(None)
    try:
        first = await read_n(src, 2)
        execute(url, "UPDATE items SET name = 'hidden' WHERE id = 1")
        [gone] = await read_n(src, 1)
    finally:
        await src.close()
    assert summary(first) == [("r", {"id": 1}, "n1"), ("r", {"id": 2}, "n2")]
    assert (gone.value["op"], gone.value["before"]) == ("d", {"id": 1})


@given(ids=st.lists(st.integers(min_value=0, max_value=60), max_size=40))
def test_seen_ranges_hold_exactly_the_ids_added(ids: list[int]) -> None:
    ranges: tuple[tuple[int, int], ...] = ()
    for value in ids:
        ranges = add_id(ranges, value)
    expected: list[tuple[int, int]] = []
    for value in sorted(set(ids)):  # maximal runs of consecutive ids
        if expected and value == expected[-1][1] + 1:
            expected[-1] = (expected[-1][0], value)
        else:
            expected.append((value, value))
    assert ranges == tuple(expected)


async def test_a_batch_read_ahead_survives_a_cancelled_read_and_is_dropped_by_close(
    url: str, tmp_path: Path
) -> None:
    """After a full batch the source reads the next one ahead; a cancelled ``read()``
    leaves it to the next one, and ``close()`` drops it (its rows come again)."""
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    execute(
        url,
        f"INSERT INTO items (id, name) VALUES {', '.join(f'({i}, {i!r})' for i in range(1, 31))}",
    )
    options = {
        "table": "items",
        "mode": "incrementing",
        "incrementing_column": "id",
        "batch_size": 10,
        "initial": "snapshot",
    }
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        got = await src.read()  # ids 1..10; 11..20 are being read ahead
        reading = asyncio.ensure_future(src.read())
        await asyncio.sleep(0)  # the read waits for the batch read ahead...
        reading.cancel()  # ...and is cancelled there (or it already returned the batch)
        with contextlib.suppress(asyncio.CancelledError):
            got += await reading
        while len(got) < 20:
            got += await asyncio.wait_for(src.read(), 10)
    finally:
        await src.close()  # ids 21..30 were being read ahead: dropped
    assert [r.key["id"] for r in got] == list(range(1, 21))
    again = source(url, tmp_path, **options)
    await again.open(got[-1].position)
    try:
        rest = await read_n(again, 10)
    finally:
        await again.close()
    assert [r.key["id"] for r in rest] == list(range(21, 31))
    assert {r.value["op"] for r in got + rest} == {"r"}
