"""The sql sink's bulk upsert on PostgreSQL (COPY into a staging table, then one
INSERT ... ON CONFLICT) against a real server: several statements and column sets in
one transaction, staging tables that a rolled-back transaction took away, values the
driver processes (JSON), database errors, and a connection lost in the middle."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from backbone import DataError, RetriableError
from tests.connectors.test_sql_support import execute, rows, sink, sink_record

pytestmark = [pytest.mark.timeout(60), pytest.mark.postgres]


def items(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "SELECT id, name, doc, tags FROM items ORDER BY id")


def create_items(url: str) -> None:
    execute(
        url,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(5) NOT NULL, "
        "doc JSONB, tags TEXT[], seen TIMESTAMP)",
    )


async def test_batches_with_several_statements_and_column_sets_in_one_transaction(
    postgres_url: str, tmp_path: Path
) -> None:
    create_items(postgres_url)
    # batch_size 2: each column set takes several INSERT ... SELECT statements
    out = sink(postgres_url, tmp_path, table="items", batch_size=2)
    await out.open()
    try:
        await out.write(
            [
                sink_record({"id": 1, "name": "a", "doc": {"x": [1, None]}}),
                sink_record({"id": 2, "name": "b", "tags": ["p", "q r"]}, offset=1),
                sink_record({"id": 3, "name": "c", "doc": None}, offset=2),
                sink_record({"id": 1, "name": "A"}, offset=3),  # merged with offset 0
                sink_record({"id": 4, "name": "d", "doc": "text"}, offset=4),
                sink_record({"id": 5, "name": "e", "doc": [1, 2]}, offset=5),
                sink_record({"id": 2, "tags": [], "name": "B"}, offset=6),
            ]
        )
        # the staging tables exist now: a second transaction empties and reuses them
        await out.write(
            [
                sink_record({"id": 3, "name": "cc", "doc": {"y": True}}, offset=7),
                sink_record({"id": 6, "name": "f", "tags": None}, offset=8),
            ]
        )
    finally:
        await out.close()
    assert items(postgres_url) == [
        (1, "A", {"x": [1, None]}, None),
        (2, "B", None, []),
        (3, "cc", {"y": True}, None),
        (4, "d", "text", None),
        (5, "e", [1, 2], None),
        (6, "f", None, None),
    ]


async def test_a_rejected_first_batch_leaves_no_staging_table_behind_and_the_next_one_works(
    postgres_url: str, tmp_path: Path
) -> None:
    create_items(postgres_url)
    out = sink(postgres_url, tmp_path, table="items")
    await out.open()
    try:
        with pytest.raises(DataError) as too_long:
            await out.write(
                [sink_record({"id": 1, "name": "a"}), sink_record({"id": 2, "name": "toolong"}, 1)]
            )
        with pytest.raises(DataError) as null:
            await out.write([sink_record({"id": 3, "name": None})])
        # the staging tables were created by the rolled-back transactions, so gone
        await out.write([sink_record({"id": 1, "name": "a"}), sink_record({"id": 2, "name": "b"})])
        await out.write([sink_record({"id": 3, "name": "c", "seen": "2024-05-01T14:00:00+02:00"})])
    finally:
        await out.close()
    assert str(too_long.value).endswith(
        "rejected the record while writing 2 records to 'items': "
        "value too long for type character varying(5)"
    )
    assert str(null.value).endswith(
        'null value in column "name" of relation "items" violates not-null constraint'
    )
    assert rows(postgres_url, "SELECT id, name, seen::text FROM items ORDER BY id") == [
        (1, "a", None),
        (2, "b", None),
        (3, "c", "2024-05-01 12:00:00"),
    ]


async def test_a_connection_lost_in_the_middle_of_a_write_is_retriable_and_nothing_is_written(
    postgres_url: str, tmp_path: Path
) -> None:
    create_items(postgres_url)
    # a trigger that ends its own session when it sees the name 'boom': the connection
    # drops after the COPY, in the middle of the INSERT
    execute(
        postgres_url,
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'boom' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER boom BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION boom()",
    )
    out = sink(postgres_url, tmp_path, table="items")
    await out.open()
    try:
        await out.write([sink_record({"id": 1, "name": "a"})])
        with pytest.raises(RetriableError, match="while writing 2 records to 'items'"):
            await out.write(
                [sink_record({"id": 2, "name": "b"}), sink_record({"id": 3, "name": "boom"})]
            )
        await out.write([sink_record({"id": 2, "name": "b"})])  # a new connection
    finally:
        await out.close()
    assert [r[:2] for r in items(postgres_url)] == [(1, "a"), (2, "b")]


async def test_a_user_who_may_not_create_temporary_tables_upserts_row_by_row(
    postgres_url: str, tmp_path: Path
) -> None:
    create_items(postgres_url)
    role = f"limited_{uuid.uuid4().hex[:8]}"
    database = postgres_url.rsplit("/", 1)[1]
    execute(
        postgres_url,
        f"CREATE ROLE {role} LOGIN",
        f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC',
        f"GRANT SELECT, INSERT, UPDATE ON items TO {role}",
    )
    try:
        out = sink(postgres_url.replace("//postgres@", f"//{role}@"), tmp_path, table="items")
        await out.open()
        try:
            await out.write(
                [sink_record({"id": 1, "name": "a"}), sink_record({"id": 2, "name": "b"})]
            )
            await out.write([sink_record({"id": 2, "name": "B", "doc": {"k": 1}})])
        finally:
            await out.close()
    finally:
        execute(postgres_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
    assert items(postgres_url) == [(1, "a", None, None), (2, "B", {"k": 1}, None)]


async def test_dates_and_times_as_keys_and_values_upsert_and_delete(
    postgres_url: str, tmp_path: Path
) -> None:
    execute(
        postgres_url,
        "CREATE TABLE readings (at TIMESTAMPTZ, local TIMESTAMP, day DATE, clock TIME, "
        "value NUMERIC(6, 2), PRIMARY KEY (at, local))",
    )
    out = sink(postgres_url, tmp_path, table="readings")
    await out.open()
    try:
        await out.write(
            [
                sink_record(
                    {
                        "at": "2024-05-01T12:00:00+02:00",
                        "local": "2024-05-01T12:00:00+02:00",  # naive column: UTC
                        "day": "2024-05-01",
                        "clock": "23:59:59.5",
                        "value": "1.5",
                    }
                ),
                sink_record(
                    {"at": "2024-05-02T00:00:00", "local": "2024-05-02T00:00:00", "value": 2},
                    offset=1,
                ),
                sink_record(
                    {
                        "at": "2024-05-01T10:00:00Z",
                        "local": "2024-05-01T10:00:00",
                        "day": "2024-05-01",
                        "clock": "23:59:59.500",
                        "value": "3",
                    },
                    offset=2,
                ),  # the first row again (same instants, same columns): merged with it
            ]
        )
        await out.write(
            [
                sink_record(
                    {
                        "op": "d",
                        "before": {"at": "2024-05-02T02:00:00+02:00", "local": "2024-05-02T00:00"},
                        "after": None,
                    },
                    offset=3,
                )
            ]
        )
    finally:
        await out.close()
    assert rows(
        postgres_url,
        "SELECT at::text, local::text, day::text, clock::text, value::text FROM readings",
    ) == [("2024-05-01 10:00:00+00", "2024-05-01 10:00:00", "2024-05-01", "23:59:59.5", "3.00")]


async def test_batches_decode_each_value_as_json_would_big_integers_nan_and_digit_strings(
    postgres_url: str, tmp_path: Path
) -> None:
    """A batch is checked once for numbers orjson would round (19+ digits) and decoded
    with orjson when it has none; values orjson cannot read (NaN) still decode."""
    execute(
        postgres_url,
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount NUMERIC(40, 0), "
        "ratio DOUBLE PRECISION, note TEXT)",
    )
    nan = sink_record(None, offset=1)
    nan.value = b'{"id": 2, "amount": 5, "ratio": NaN}'
    nan_again = sink_record(None, offset=4)
    nan_again.value = b'{"id": 5, "ratio": NaN, "note": "x"}'
    out = sink(postgres_url, tmp_path, table="ledger")
    await out.open()
    try:
        await out.write(  # one value with a long number: the whole batch as json reads it
            [
                sink_record({"id": 1, "amount": 123456789012345678901234567890}),
                nan,
                sink_record({"id": 3, "amount": 7, "note": "12345678901234567890"}, offset=2),
            ]
        )
        await out.write(  # none: orjson, and json for what it refuses
            [sink_record({"id": 4, "amount": 9007199254740993}, offset=3), nan_again]
        )
    finally:
        await out.close()
    assert rows(
        postgres_url, "SELECT id, amount::text, ratio::text, note FROM ledger ORDER BY id"
    ) == [
        (1, "123456789012345678901234567890", None, None),
        (2, "5", "NaN", None),
        (3, "7", None, "12345678901234567890"),
        (4, "9007199254740993", None, None),
        (5, None, "NaN", "x"),
    ]
