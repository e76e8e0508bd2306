"""Every record of the sql source carries its own deterministic CloudEvents ``ce_id``."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from backbone import IdentityJSON, SourceRecord
from backbone.events import encode_source_record
from tests.connectors.test_sql_support import execute, read_n, source

pytestmark = pytest.mark.timeout(60)


def ce_id(record: SourceRecord) -> str:
    """The ``ce_id`` the runtime gives ``record`` (derived from its ``identity``)."""
    encoded = encode_source_record(record, connector="orders-db", kind="sql", topic="t", now_ms=0)
    [value] = [v for name, v in encoded.headers if name == "ce_id"]
    return str(uuid.UUID(value.decode()))


def items(url: str, *values: str, key: bool = True) -> None:
    execute(
        url,
        f"CREATE TABLE items (id INTEGER{' PRIMARY KEY' if key else ''}, name TEXT, "
        "updated_at TIMESTAMP NOT NULL)",
    )
    if values:
        execute(url, f"INSERT INTO items (id, name, updated_at) VALUES {', '.join(values)}")


async def test_ids_are_unique_within_a_snapshot_diff_and_equal_on_replay(
    url: str, tmp_path: Path
) -> None:
    items(url, *[f"({i}, 'n{i}', '2024-05-01 12:00:00')" for i in range(1, 5)])
    options = {"table": "items", "mode": "snapshot_diff", "tombstones": True}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        first = await read_n(src, 4)
        execute(
            url,
            "UPDATE items SET name = 'x' WHERE id IN (1, 2)",
            "DELETE FROM items WHERE id IN (3, 4)",
            "INSERT INTO items (id, name, updated_at) VALUES (5, 'n5', '2024-05-01 12:00:00')",
        )
        diff = await read_n(src, 7)
    finally:
        await src.close()
    assert [(r.value and r.value["op"], r.key) for r in diff] == [
        ("u", {"id": 1}),
        ("u", {"id": 2}),
        ("c", {"id": 5}),
        ("d", {"id": 3}),
        (None, {"id": 3}),
        ("d", {"id": 4}),
        (None, {"id": 4}),
    ]
    # every record of the diff but the last carries no position; the ids differ
    assert [r.position for r in diff][:-1] == [None] * 6
    ids = [ce_id(r) for r in first + diff]
    assert len(set(ids)) == len(ids) == 11
    again = source(url, tmp_path, **options)
    await again.open(first[-1].position)  # redo the diff from the same position
    try:
        replay = await read_n(again, 7)
    finally:
        await again.close()
    assert [ce_id(r) for r in replay] == [ce_id(r) for r in diff]


async def test_ids_are_unique_within_a_timestamp_group_and_equal_on_replay(
    url: str, tmp_path: Path
) -> None:
    items(
        url,
        "(1, 'a', '2024-05-01 11:00:00')",
        "(2, 'b', '2024-05-01 12:00:00')",
        "(3, 'c', '2024-05-01 12:00:00')",
        "(4, 'd', '2024-05-01 12:00:00')",
    )
    options = {"table": "items", "mode": "timestamp", "timestamp_column": "updated_at"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        got = await read_n(src, 4)
    finally:
        await src.close()
    group = got[1:]
    assert sorted(r.key["id"] for r in group) == [2, 3, 4]
    assert group[0].position == group[1].position  # one position for the group...
    ids = [ce_id(r) for r in got]
    assert len(set(ids)) == 4  # ...yet one id per row
    again = source(url, tmp_path, **options)
    await again.open(got[0].position)
    try:
        replay = await read_n(again, 3)
    finally:
        await again.close()
    assert {r.key["id"]: ce_id(r) for r in replay} == {r.key["id"]: ce_id(r) for r in group}


async def test_key_less_rows_sharing_a_timestamp_get_distinct_ids(url: str, tmp_path: Path) -> None:
    items(
        url,
        "(1, 'a', '2024-05-01 12:00:00')",
        "(1, 'a', '2024-05-01 12:00:00')",  # the very same row twice
        "(2, 'b', '2024-05-01 12:00:00')",
        key=False,
    )
    options = {"table": "items", "mode": "timestamp", "timestamp_column": "updated_at"}
    src = source(url, tmp_path, **options)
    await src.open(None)
    try:
        got = await read_n(src, 3)
    finally:
        await src.close()
    assert [r.key for r in got] == [None, None, None]
    assert len({ce_id(r) for r in got}) == 3
    again = source(url, tmp_path, **options)
    await again.open(None)
    try:
        replay = await read_n(again, 3)
    finally:
        await again.close()
    assert sorted(ce_id(r) for r in replay) == sorted(ce_id(r) for r in got)


async def test_a_delete_and_its_tombstone_have_different_ids_named_by_identity(
    url: str, tmp_path: Path
) -> None:
    items(url, "(1, 'a', '2024-05-01 12:00:00')")
    src = source(
        url, tmp_path, table="items", mode="changelog", install_triggers=True, tombstones=True
    )
    await src.open(None)
    try:
        await read_n(src, 1)
        execute(url, "DELETE FROM items WHERE id = 1")
        delete, tombstone = await read_n(src, 2)
    finally:
        await src.close()
    assert (delete.value["op"], tombstone.value) == ("d", None)
    assert tombstone.position == delete.value["source"]["position"]
    assert ce_id(delete) != ce_id(tombstone)
    for record in (delete, tombstone):  # the id comes from the identity, not the position
        assert record.identity is not None
        assert ce_id(dataclasses.replace(record, position=None)) == ce_id(record)


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "incrementing", "incrementing_column": "id"},
        {"mode": "timestamp", "timestamp_column": "updated_at"},
        {
            "mode": "timestamp+incrementing",
            "timestamp_column": "updated_at",
            "incrementing_column": "id",
        },
        {"mode": "changelog", "install_triggers": True, "initial": "latest"},
    ],
    ids=lambda o: o["mode"],
)
async def test_ids_do_not_depend_on_how_reads_were_batched(
    url: str, tmp_path: Path, options: dict[str, object]
) -> None:
    items(url)
    first_source = source(url, tmp_path, table="items", batch_size=1, **options)
    await first_source.open(None)
    try:
        for i in range(1, 6):
            execute(
                url,
                f"INSERT INTO items VALUES ({i}, 'n{i}', '2024-05-01 12:00:0{i % 2}')",
            )
        one_by_one = await read_n(first_source, 5)
    finally:
        await first_source.close()
    again = source(url, tmp_path, table="items", batch_size=100, **options)
    await again.open(None)  # the same first start, read in one batch
    try:
        at_once = await read_n(again, 5)
    finally:
        await again.close()
    assert {r.key["id"]: ce_id(r) for r in at_once} == {r.key["id"]: ce_id(r) for r in one_by_one}
    assert len({ce_id(r) for r in at_once}) == 5


async def test_ids_of_rows_read_in_batches_are_those_of_their_identity(
    url: str, tmp_path: Path
) -> None:
    """Incrementing polls hand identities over as their JSON text (built per batch): the
    ``ce_id`` is that of ``[key, op, {"id": N}, null]``, whatever the key's characters."""
    names = ["plain", "é ü 中", 'q"uote', "back\\slash", "tab\there", "del\x7f", "😀", ""]
    execute(url, "CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    execute(
        url,
        "INSERT INTO tags (name, n) VALUES (:name, :n)",
        params=[{"name": name, "n": n} for n, name in enumerate(names, 1)],
    )
    options = {"table": "tags", "mode": "incrementing", "incrementing_column": "n"}
    src = source(url, tmp_path, initial="snapshot", batch_size=3, **options)
    await src.open(None)
    try:
        got = await read_n(src, len(names))
    finally:
        await src.close()
    assert [r.key for r in got] == [{"name": name} for name in names]
    for n, record in enumerate(got, 1):
        assert type(record.identity) is IdentityJSON
        spelled = dataclasses.replace(
            record, identity=[{"name": names[n - 1]}, "r", {"id": n}, None]
        )
        assert ce_id(record) == ce_id(spelled)


def test_repeated_identities_given_as_json_are_numbered_like_lists() -> None:
    from backbone.connectors.sql._capture import unique_ids

    same = [{"id": 7}, "c", {"id": 7}, None]
    as_text = [
        SourceRecord(value=i, identity=IdentityJSON('[{"id":7},"c",{"id":7},null]'))
        for i in range(3)
    ]
    as_list = [SourceRecord(value=i, identity=list(same)) for i in range(3)]
    unique_ids(as_text)
    unique_ids(as_list)
    assert as_list[1].identity == [same, 1]
    assert [ce_id(r) for r in as_text] == [ce_id(r) for r in as_list]
    assert len({ce_id(r) for r in as_text}) == 3
