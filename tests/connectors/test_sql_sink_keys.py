"""The sql sink's key handling: deletes never run without a key; explicit keys and fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backbone import DataError, FatalError
from tests.connectors.test_sql_support import execute, rows, sink, sink_record

pytestmark = pytest.mark.timeout(60)


def envelope(
    op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "op": op,
        "before": before,
        "after": after,
        "source": {"connector": "db", "table": "t", "ts_ms": 0, "position": None},
        "ts_ms": 0,
    }


async def test_a_delete_without_any_key_is_a_data_error_and_keeps_every_row(
    url: str, tmp_path: Path
) -> None:
    execute(url, "CREATE TABLE t (id INTEGER, name TEXT)")
    execute(url, "INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    out = sink(url, tmp_path, table="t", insert_mode="insert")
    await out.open()
    try:
        with pytest.raises(DataError) as caught:
            await out.write(
                [
                    sink_record(envelope("c", {"id": 4, "name": "d"}), {"id": 4}),
                    sink_record(envelope("d", None, {"id": 2}), {"id": 2}, offset=1),
                ]
            )
        # the batch is refused as a whole; a later good batch still writes
        await out.write([sink_record(envelope("c", {"id": 5, "name": "e"}), offset=2)])
    finally:
        await out.close()
    assert str(caught.value) == (
        "record shop.orders/0@1: cannot delete from table 't': it has no primary key and no "
        "'key' option; set key: [column, ...] to name the row to delete"
    )
    assert rows(url, "SELECT id, name FROM t ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (5, "e"),
    ]


async def test_delete_on_tombstone_without_any_key_is_refused_at_check_and_open(
    url: str, tmp_path: Path
) -> None:
    execute(url, "CREATE TABLE t (id INTEGER, name TEXT)")
    out = sink(url, tmp_path, table="t", insert_mode="insert", delete_on_tombstone=True)
    expected = (
        "key: delete_on_tombstone needs key columns and table 't' has no primary key; "
        "set key: [column, ...]"
    )
    with pytest.raises(FatalError) as at_check:
        await out.check()
    with pytest.raises(FatalError) as at_open:
        await out.open()
    await out.close()
    assert str(at_check.value) == expected
    assert str(at_open.value) == expected


async def test_an_explicit_key_that_is_not_the_primary_key_drives_upserts_and_deletes(
    url: str, tmp_path: Path
) -> None:
    execute(
        url,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT)",
        "INSERT INTO t (id, code, name) VALUES (1, 'A', 'ann'), (2, 'B', 'bob')",
    )
    out = sink(url, tmp_path, table="t", key="code", delete_on_tombstone=True)
    await out.open()
    try:
        await out.write(
            [
                # upsert by code: id 1 keeps its row, name changes
                sink_record(envelope("u", {"id": 1, "code": "A", "name": "anna"}), {"code": "A"}),
                sink_record(
                    envelope("c", {"id": 3, "code": "C", "name": "cy"}), {"code": "C"}, offset=1
                ),
                # delete by code only (the envelope's before holds the key)
                sink_record(envelope("d", None, {"code": "B"}), {"code": "B"}, offset=2),
                # tombstone with the key as a bare value
                sink_record(None, "C", offset=3),
            ]
        )
    finally:
        await out.close()
    assert rows(url, "SELECT id, code, name FROM t ORDER BY id") == [(1, "A", "anna")]


async def test_fields_as_a_list_selects_fields_and_drops_the_rest(url: str, tmp_path: Path) -> None:
    execute(url, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    out = sink(url, tmp_path, table="t", fields=["id", "name"])
    await out.open()
    try:
        await out.write(
            [
                sink_record({"id": 1, "name": "ann", "secret": "x", "extra": 1}),
                sink_record(
                    envelope("c", {"id": 2, "name": "bob", "secret": "y"}), {"id": 2}, offset=1
                ),
                sink_record(envelope("d", None, {"id": 1, "secret": "x"}), {"id": 1}, offset=2),
            ]
        )
    finally:
        await out.close()
    assert rows(url, "SELECT id, name FROM t ORDER BY id") == [(2, "bob")]


async def test_fields_naming_a_missing_column_is_refused_at_check(url: str, tmp_path: Path) -> None:
    execute(url, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    out = sink(url, tmp_path, table="t", fields=["id", "nickname"])
    with pytest.raises(FatalError) as caught:
        await out.check()
    assert str(caught.value) == "fields: column 'nickname' does not exist (columns: id, name)"


async def test_an_upsert_row_without_its_key_is_a_data_error_naming_the_first_such_row(
    url: str, tmp_path: Path
) -> None:
    execute(url, "CREATE TABLE pairs (a INTEGER, b INTEGER, v TEXT, PRIMARY KEY (a, b))")
    out = sink(url, tmp_path, table="pairs")
    await out.open()
    try:
        await out.write([sink_record({"a": 1, "b": 1, "v": "kept"})])
        with pytest.raises(DataError) as null_key:
            await out.write(
                [
                    sink_record({"a": 1, "b": 1, "v": "x"}, offset=1),
                    sink_record({"a": 2, "b": None, "v": "y"}, offset=2),
                    sink_record({"v": "z"}, offset=3),
                ]
            )
    finally:
        await out.close()
    assert str(null_key.value) == (
        "upsert: key column(s) ['b'] missing or null in {'a': 2, 'b': None, 'v': 'y'}"
    )
    assert rows(url, "SELECT a, b, v FROM pairs") == [(1, 1, "kept")]
