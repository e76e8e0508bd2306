"""The sql sink against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backbone import DataError, FatalError, RetriableError
from tests.connectors.test_sql_support import Proxy, dialect, execute, rows, sink, sink_record

pytestmark = pytest.mark.timeout(60)


def customers(url: str) -> None:
    execute(
        url,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "balance NUMERIC(10, 2), seen_at TIMESTAMP)",
    )


def envelope(
    op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "op": op,
        "before": before,
        "after": after,
        "source": {"connector": "db", "table": "customers", "ts_ms": 0, "position": None},
        "ts_ms": 0,
    }


def table(url: str) -> list[tuple[Any, ...]]:
    """The customers rows; balances as floats (SQLite NUMERIC keeps 2.00 as the integer 2)."""
    return [
        (i, name, None if balance is None else float(balance), seen)
        for i, name, balance, seen in rows(
            url, "SELECT id, name, balance, seen_at FROM customers ORDER BY id"
        )
    ]


def stamp(url: str, text: str) -> Any:
    import datetime as dt

    value = dt.datetime.fromisoformat(text)
    return text.replace("T", " ") + ".000000" if dialect(url) == "sqlite" else value


async def test_upsert_applies_change_envelopes_in_order(url: str, tmp_path: Path) -> None:
    customers(url)
    out = sink(url, tmp_path, table="customers")
    await out.open()
    try:
        await out.write(
            [
                sink_record(
                    envelope("r", {"id": 1, "name": "ann", "balance": "1.50", "seen_at": None}),
                    {"id": 1},
                ),
                sink_record(
                    envelope(
                        "c",
                        {
                            "id": 2,
                            "name": "bob",
                            "balance": "2.00",
                            "seen_at": "2024-05-01T12:00:00+00:00",
                        },
                    ),
                    {"id": 2},
                    1,
                ),
                sink_record(
                    envelope("u", {"id": 1, "name": "ANN", "balance": "9.99", "seen_at": None}),
                    {"id": 1},
                    2,
                ),
                sink_record(
                    envelope("c", {"id": 3, "name": "cy", "balance": None, "seen_at": None}),
                    {"id": 3},
                    3,
                ),
                sink_record(envelope("d", None, {"id": 3}), {"id": 3}, 4),
                sink_record(None, {"id": 3}, 5),  # tombstone: skipped (delete_on_tombstone off)
            ]
        )
    finally:
        await out.close()
    assert table(url) == [
        (1, "ANN", 9.99, None),
        (2, "bob", 2.0, stamp(url, "2024-05-01T12:00:00")),
    ]


async def test_replaying_the_same_records_with_upsert_is_idempotent(
    url: str, tmp_path: Path
) -> None:
    customers(url)
    batch = [
        sink_record({"id": i, "name": f"n{i}", "balance": i}, {"id": i}, i) for i in range(1, 6)
    ] + [sink_record(envelope("d", None, {"id": 2}), {"id": 2}, 6)]
    out = sink(url, tmp_path, table="customers", batch_size=2)
    await out.open()
    try:
        await out.write(batch)
        once = table(url)
        await out.write(batch)
        await out.write(batch[2:])
    finally:
        await out.close()
    assert table(url) == once
    assert [r[0] for r in once] == [1, 3, 4, 5]


async def test_insert_mode_plain_objects_and_fields_rename(url: str, tmp_path: Path) -> None:
    customers(url)
    out = sink(
        url,
        tmp_path,
        table="customers",
        insert_mode="insert",
        fields={"customer_id": "id", "full_name": "name"},
    )
    await out.open()
    try:
        await out.write(
            [
                sink_record({"customer_id": 7, "full_name": "zed", "ignored": True}),
                sink_record({"customer_id": 8, "full_name": "yan"}, offset=1),
            ]
        )
    finally:
        await out.close()
    assert table(url) == [(7, "zed", None, None), (8, "yan", None, None)]


async def test_update_mode_changes_only_existing_rows(url: str, tmp_path: Path) -> None:
    customers(url)
    execute(url, "INSERT INTO customers (id, name) VALUES (1, 'ann')")
    out = sink(url, tmp_path, table="customers", insert_mode="update")
    await out.open()
    try:
        await out.write(
            [
                sink_record({"id": 1, "balance": "5.25"}),
                sink_record({"id": 2, "name": "ghost"}, offset=1),
            ]
        )
    finally:
        await out.close()
    assert table(url) == [(1, "ann", 5.25, None)]


async def test_delete_on_tombstone_deletes_by_record_key(url: str, tmp_path: Path) -> None:
    customers(url)
    execute(url, "INSERT INTO customers (id, name) VALUES (1, 'ann'), (2, 'bob')")
    out = sink(url, tmp_path, table="customers", delete_on_tombstone=True)
    await out.open()
    try:
        await out.write([sink_record(None, {"id": 1}), sink_record(None, 2, offset=1)])
    finally:
        await out.close()
    assert table(url) == []


async def test_not_null_violation_is_a_data_error_and_nothing_of_the_batch_is_written(
    url: str, tmp_path: Path
) -> None:
    customers(url)
    out = sink(url, tmp_path, table="customers")
    await out.open()
    try:
        with pytest.raises(DataError) as caught:
            await out.write(
                [
                    sink_record({"id": 1, "name": "ann"}),
                    sink_record({"id": 2, "name": None}, offset=1),
                ]
            )
    finally:
        await out.close()
    message = str(caught.value)
    assert "rejected the record while writing 2 records to 'customers'" in message
    if dialect(url) == "sqlite":
        assert message.endswith("NOT NULL constraint failed: customers.name")
    else:
        assert message.endswith(
            'null value in column "name" of relation "customers" violates not-null constraint'
        )
    assert table(url) == []


@pytest.mark.postgres
async def test_wrong_type_is_a_data_error_with_the_database_message(
    postgres_url: str, tmp_path: Path
) -> None:
    customers(postgres_url)
    out = sink(postgres_url, tmp_path, table="customers")
    await out.open()
    try:
        await out.write([sink_record({"id": 1, "name": "ann"})])
        with pytest.raises(DataError) as caught:
            await out.write(
                [
                    sink_record({"id": 2, "name": "bob"}),
                    sink_record({"id": "three", "name": "x"}, offset=1),
                ]
            )
        with pytest.raises(DataError) as decimal:
            await out.write([sink_record({"id": 4, "name": "x", "balance": "lots"})])
    finally:
        await out.close()
    assert str(caught.value).startswith("postgresql+psycopg://postgres@127.0.0.1:") and str(
        caught.value
    ).endswith(
        "rejected the record while writing 2 records to 'customers': "
        'invalid input syntax for type integer: "three"'
    )
    assert str(decimal.value).startswith(
        "record shop.orders/0@0: field 'balance': 'lots' is not a valid Decimal "
        "for column 'balance'"
    )
    assert [r[0] for r in table(postgres_url)] == [1]


async def test_bad_records_name_the_record_and_the_fix(url: str, tmp_path: Path) -> None:
    customers(url)
    out = sink(url, tmp_path, table="customers")
    await out.open()
    try:
        with pytest.raises(DataError) as unknown:
            await out.write([sink_record({"id": 1, "name": "a", "colour": "red"}, offset=4)])
        with pytest.raises(DataError) as not_object:
            await out.write([sink_record([1, 2], offset=5)])
        with pytest.raises(DataError) as bad_time:
            await out.write([sink_record({"id": 1, "name": "a", "seen_at": "yesterday"}, offset=6)])
        bad_json = sink_record(None, offset=7)
        bad_json.value = b"{not json"
        with pytest.raises(DataError) as not_json:
            await out.write([bad_json])
    finally:
        await out.close()
    assert str(unknown.value) == (
        "record shop.orders/0@4: field 'colour' is not a column of table 'customers' "
        "(columns: id, name, balance, seen_at); select fields with 'fields'"
    )
    assert str(not_object.value) == "record shop.orders/0@5: value must be a JSON object, got list"
    assert str(bad_time.value).startswith(
        "record shop.orders/0@6: field 'seen_at': 'yesterday' is not a valid datetime "
        "for column 'seen_at'"
    )
    assert str(not_json.value).startswith("record shop.orders/0@7 is not JSON:")
    assert table(url) == []


async def test_auto_create_infers_columns_from_the_first_records(url: str, tmp_path: Path) -> None:
    out = sink(url, tmp_path, table="events", auto_create=True)
    await out.open()
    try:
        await out.write(
            [
                sink_record(
                    envelope(
                        "c",
                        {
                            "id": 1,
                            "name": "a",
                            "score": 1.5,
                            "ok": True,
                            "at": "2024-05-01T12:00:00+00:00",
                        },
                    ),
                    {"id": 1},
                ),
                sink_record(
                    envelope("u", {"id": 1, "name": "b", "score": 2.5, "ok": False, "at": None}),
                    {"id": 1},
                    1,
                ),
            ]
        )
    finally:
        await out.close()
    assert rows(url, "SELECT id, name, score, ok, at FROM events") == [(1, "b", 2.5, False, None)]


async def test_missing_table_without_auto_create_is_fatal(url: str, tmp_path: Path) -> None:
    execute(url, "CREATE TABLE other (id INTEGER PRIMARY KEY)")  # the database file exists
    out = sink(url, tmp_path, table="nowhere")
    with pytest.raises(FatalError) as caught:
        await out.check()
    assert str(caught.value).startswith("table: table 'nowhere' does not exist in ")
    assert str(caught.value).endswith("; create it or set auto_create: true")


async def test_upsert_without_any_key_is_fatal(url: str, tmp_path: Path) -> None:
    execute(url, "CREATE TABLE log (line TEXT)")
    out = sink(url, tmp_path, table="log")
    with pytest.raises(FatalError) as caught:
        await out.open()
    assert str(caught.value) == (
        "key: insert_mode 'upsert' needs key columns and table 'log' has no primary key; "
        "set key: [column, ...]"
    )


@pytest.mark.postgres
async def test_lost_connection_is_retriable_and_the_retry_writes_the_batch(
    postgres_url: str, postgres_server: Any, tmp_path: Path
) -> None:
    customers(postgres_url)
    proxy = Proxy(postgres_server.port)
    await proxy.start()
    proxied = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    out = sink(proxied, tmp_path, table="customers")
    await out.open()
    batch = [sink_record({"id": 1, "name": "ann"}), sink_record({"id": 2, "name": "bob"}, offset=1)]
    try:
        await proxy.stop()
        with pytest.raises(RetriableError, match="while writing 2 records to 'customers'"):
            await out.write(batch)
        assert table(postgres_url) == []
        await proxy.start(proxy.port)
        await out.write(batch)
    finally:
        await out.close()
        await proxy.stop()
    assert [r[:2] for r in table(postgres_url)] == [(1, "ann"), (2, "bob")]
