"""The sql source against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from backbone import FatalError, RetriableError
from backbone.connectors.sql import SqlSource, SqlSourceOptions
from tests.connectors.test_sql_support import (
    Proxy,
    afters,
    context,
    dialect,
    execute,
    read_n,
    read_quiet,
    serial,
    source,
)

pytestmark = pytest.mark.timeout(60)


def orders(url: str) -> None:
    execute(
        url,
        f"CREATE TABLE orders (id {serial(url)}, name TEXT NOT NULL, amount NUMERIC(10, 2), "
        "updated_at TIMESTAMP NOT NULL, payload BYTEA)".replace(
            "BYTEA", "BLOB" if dialect(url) == "sqlite" else "BYTEA"
        ),
    )


def insert(url: str, *names: str, at: dt.datetime | None = None) -> None:
    at = at or dt.datetime(2024, 5, 1, 12, 0, 0)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(
                    sa.text("INSERT INTO orders (name, amount, updated_at) VALUES (:n, :a, :t)"),
                    {"n": name, "a": "12.50", "t": at},
                )
    finally:
        engine.dispose()


# -- incrementing --------------------------------------------------------------


async def test_incrementing_emits_inserts_as_change_envelopes(url: str, tmp_path: Path) -> None:
    orders(url)
    execute(
        url,
        "INSERT INTO orders (name, amount, updated_at, payload) VALUES "
        "('a', 12.50, '2024-05-01 12:00:00', :blob)",
        params=[{"blob": b"\x00\xff"}],
    )
    src = source(url, tmp_path, table="orders", mode="incrementing", incrementing_column="id")
    await src.open(None)
    try:
        [record] = await read_n(src, 1)
        insert(url, "b", "c")
        more = await read_n(src, 2)
    finally:
        await src.close()
    assert record.key == {"id": 1}
    value = record.value
    assert value["op"] == "r"  # there at the first start: a snapshot read
    assert value["before"] is None
    assert value["after"] == {
        "id": 1,
        "name": "a",
        "amount": "12.50",
        "updated_at": "2024-05-01T12:00:00+00:00",
        "payload": base64.b64encode(b"\x00\xff").decode(),
    }
    assert value["source"]["connector"] == "orders-db"
    assert value["source"]["table"] == "orders"
    assert value["source"]["position"] == record.position
    assert record.position == {"id": None, "seen": [[1, 1]], "snapshot_until": 1}
    assert isinstance(value["ts_ms"], int)
    assert afters(more) == [2, 3]
    assert [r.value["op"] for r in more] == ["c", "c"]
    assert more[-1].position == {"id": 3, "seen": []}  # past the snapshot
    assert [r.key for r in more] == [{"id": 2}, {"id": 3}]


async def test_incrementing_resumes_strictly_after_the_saved_position(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    insert(url, "a", "b", "c")
    src = source(
        url, tmp_path, table="orders", mode="incrementing", incrementing_column="id", batch_size=2
    )
    await src.open(None)
    first = await read_n(src, 3)
    await src.close()
    insert(url, "d")
    again = source(
        url, tmp_path, table="orders", mode="incrementing", incrementing_column="id", batch_size=2
    )
    await again.open(first[1].position)  # crashed after the broker acked only two records
    try:
        rest = await read_n(again, 2)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert afters(first) == [1, 2, 3]
    assert afters(rest) == [3, 4]


async def test_incrementing_initial_latest_skips_existing_rows_even_across_restarts(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    insert(url, "old")
    src = source(
        url,
        tmp_path,
        table="orders",
        mode="incrementing",
        incrementing_column="id",
        initial="latest",
    )
    await src.open(None)
    assert await read_quiet(src) == []
    await src.close()
    insert(url, "new")  # while stopped, before any position was saved
    again = source(
        url,
        tmp_path,
        table="orders",
        mode="incrementing",
        incrementing_column="id",
        initial="latest",
    )
    await again.open(None)
    try:
        got = await read_n(again, 1)
    finally:
        await again.close()
    assert afters(got, "name") == ["new"]


@pytest.mark.postgres
async def test_incrementing_catches_an_id_committed_late(postgres_url: str, tmp_path: Path) -> None:
    orders(postgres_url)
    engine = sa.create_engine(postgres_url)
    src = source(
        postgres_url,
        tmp_path,
        table="orders",
        mode="incrementing",
        incrementing_column="id",
        lag="30s",
    )
    await src.open(None)
    try:
        with engine.connect() as slow:
            slow.execute(
                sa.text("INSERT INTO orders (name, updated_at) VALUES ('slow', now())")
            )  # takes id 1, not committed yet
            insert(postgres_url, "fast")  # id 2, committed
            first = await read_n(src, 1)
            slow.commit()
        late = await read_n(src, 1)
        assert await read_quiet(src) == []
    finally:
        await src.close()
        engine.dispose()
    assert afters(first) == [2]
    assert afters(late) == [1]
    assert late[0].position == {"id": None, "seen": [[1, 2]]}


async def test_incrementing_with_zero_lag_moves_the_watermark_at_once(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    insert(url, "a", "b")
    src = source(url, tmp_path, table="orders", mode="incrementing", incrementing_column="id")
    await src.open(None)
    try:
        await read_n(src, 2)
        insert(url, "c")
        [third] = await read_n(src, 1)
    finally:
        await src.close()
    assert third.position == {"id": 3, "seen": []}


# -- timestamp modes -----------------------------------------------------------


async def test_timestamp_mode_reads_a_group_sharing_one_timestamp_whole(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    shared = dt.datetime(2024, 5, 1, 12, 0, 0)
    insert(url, "a", "b", "c", "d", "e", at=shared)
    insert(url, "f", at=shared + dt.timedelta(seconds=1))
    src = source(
        url, tmp_path, table="orders", mode="timestamp", timestamp_column="updated_at", batch_size=2
    )
    await src.open(None)
    try:
        got = await read_n(src, 6)
    finally:
        await src.close()
    assert sorted(afters(got, "name")) == ["a", "b", "c", "d", "e", "f"]
    assert {r.value["op"] for r in got} == {"r"}  # all there at the first start
    # the position moves past the shared timestamp only with the group's last row
    group_positions = [r.position for r in got if r.value["after"]["name"] != "f"]
    assert [p["ts"] for p in group_positions[:-1]] == [None] * 4
    again = source(url, tmp_path, table="orders", mode="timestamp", timestamp_column="updated_at")
    await again.open(got[2].position)
    try:
        replay = await read_n(again, 6)
    finally:
        await again.close()
    assert sorted(afters(replay, "name")) == ["a", "b", "c", "d", "e", "f"]


async def test_timestamp_incrementing_pages_by_ts_and_id_and_captures_updates(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    shared = dt.datetime(2024, 5, 1, 12, 0, 0)
    insert(url, "a", "b", "c", "d", "e", at=shared)
    options = {
        "table": "orders",
        "mode": "timestamp+incrementing",
        "timestamp_column": "updated_at",
        "incrementing_column": "id",
        "batch_size": 2,
    }
    src = source(url, tmp_path, **options)
    await src.open(None)
    first = await read_n(src, 3)
    await src.close()
    assert afters(first) == [1, 2, 3, 4]  # two pages of two
    stored = (
        "2024-05-01 12:00:00"  # SQLite: the stored text, compared as stored
        if dialect(url) == "sqlite"
        else {"datetime": "2024-05-01T12:00:00"}
    )
    assert first[1].position == {"ts": stored, "id": 2, "snapshot_until": {"ts": stored, "id": 5}}
    again = source(url, tmp_path, **options)
    await again.open(first[2].position)
    try:
        rest = await read_n(again, 2)
        execute(
            url,
            "UPDATE orders SET name = 'B', updated_at = :t WHERE id = 2",
            params=[{"t": shared + dt.timedelta(minutes=1)}],
        )
        [update] = await read_n(again, 1)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert afters(rest) == [4, 5]
    assert update.value["after"]["name"] == "B"
    assert update.value["op"] == "u"
    assert update.value["source"]["ts_ms"] == int(
        dt.datetime(2024, 5, 1, 12, 1, tzinfo=dt.UTC).timestamp() * 1000
    )


async def test_timestamp_mode_waits_lag_before_reading_recent_rows(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    insert(url, "old", at=now - dt.timedelta(minutes=5))
    insert(url, "recent", at=now)
    src = source(
        url, tmp_path, table="orders", mode="timestamp", timestamp_column="updated_at", lag="4s"
    )  # a lag wide enough that a loaded machine still polls inside it
    await src.open(None)
    try:
        first = await read_n(src, 1)
        assert afters(first, "name") == ["old"]
        assert await read_quiet(src, 2) == []
        later = await read_n(src, 1, within=20)
    finally:
        await src.close()
    assert afters(later, "name") == ["recent"]


@pytest.mark.postgres
async def test_timestamp_mode_keeps_a_transaction_that_commits_late(
    postgres_url: str, tmp_path: Path
) -> None:
    orders(postgres_url)
    engine = sa.create_engine(postgres_url)
    src = source(
        postgres_url,
        tmp_path,
        table="orders",
        mode="timestamp+incrementing",
        timestamp_column="updated_at",
        incrementing_column="id",
        lag="4s",  # the slow transaction commits inside the lag even on a loaded machine
    )
    await src.open(None)
    try:
        with engine.connect() as slow:
            # timestamp taken now, commit later: a zero-lag cursor would pass it
            slow.execute(
                sa.text(
                    "INSERT INTO orders (name, updated_at) VALUES ('slow', "
                    "clock_timestamp() AT TIME ZONE 'UTC')"
                )
            )
            await asyncio.sleep(0.2)
            execute(
                postgres_url,
                "INSERT INTO orders (name, updated_at) VALUES ('fast', "
                "clock_timestamp() AT TIME ZONE 'UTC')",
            )
            assert await read_quiet(src, 3) == []
            slow.commit()
        got = await read_n(src, 2, within=20)
    finally:
        await src.close()
        engine.dispose()
    assert afters(got, "name") == ["slow", "fast"]


# -- bulk ----------------------------------------------------------------------


async def test_bulk_reads_the_whole_table_every_interval(url: str, tmp_path: Path) -> None:
    orders(url)
    insert(url, "a", "b", "c")
    src = source(url, tmp_path, table="orders", mode="bulk", batch_size=2, poll_interval="100ms")
    await src.open(None)
    try:
        first = await read_n(src, 3)
        execute(url, "DELETE FROM orders WHERE id = 2")
        second = await read_n(src, 2)
    finally:
        await src.close()
    assert afters(first) == [1, 2, 3]
    assert {r.value["op"] for r in first} == {"r"}
    assert [r.position for r in first] == [
        {"run": 1, "after": [1]},
        {"run": 1, "after": [2]},
        {"run": 1, "done": True},
    ]
    assert afters(second) == [1, 3]


async def test_bulk_query_without_key_pages_by_offset(url: str, tmp_path: Path) -> None:
    orders(url)
    insert(url, "a", "b", "c")
    src = source(
        url, tmp_path, query="SELECT name FROM orders ORDER BY id", mode="bulk", batch_size=2
    )
    await src.open(None)
    try:
        got = await read_n(src, 3)
    finally:
        await src.close()
    assert afters(got, "name") == ["a", "b", "c"]
    assert got[0].key is None
    assert got[0].value["source"]["table"] == "query"


# -- changelog -----------------------------------------------------------------


async def test_changelog_captures_inserts_updates_and_deletes(url: str, tmp_path: Path) -> None:
    orders(url)
    insert(url, "existing")
    src = source(
        url, tmp_path, table="orders", mode="changelog", install_triggers=True, tombstones=True
    )
    await src.open(None)
    try:
        [snapshot] = await read_n(src, 1)
        insert(url, "new")
        execute(url, "UPDATE orders SET name = 'changed' WHERE id = 1")
        execute(url, "DELETE FROM orders WHERE id = 2")
        got = await read_n(src, 5)
    finally:
        await src.close()
    assert snapshot.value["op"] == "r"
    assert snapshot.value["after"]["name"] == "existing"
    ops = [(r.value["op"] if r.value else None, r.key) for r in got]
    # events carry the row as it is when read: id 2 was deleted before the log was read
    assert ops == [
        ("d", {"id": 2}),
        (None, {"id": 2}),
        ("u", {"id": 1}),
        ("d", {"id": 2}),
        (None, {"id": 2}),
    ]
    assert got[2].value["after"]["name"] == "changed"
    assert got[3].value["before"] == {"id": 2}
    assert got[3].value["after"] is None
    # one change, two records: the delete does not advance (None), its tombstone does
    assert got[3].position is None
    assert got[4].position is not None and got[4].position != got[2].position


async def test_changelog_resumes_after_restart_without_gaps(url: str, tmp_path: Path) -> None:
    orders(url)
    options = {
        "table": "orders",
        "mode": "changelog",
        "install_triggers": True,
        "initial": "latest",
    }
    src = source(url, tmp_path, **options)
    await src.open(None)
    insert(url, "a", "b")
    got = await read_n(src, 2)
    await src.close()
    insert(url, "c")
    execute(url, "DELETE FROM orders WHERE id = 1")
    again = source(url, tmp_path, **options)
    await again.open(got[-1].position)
    try:
        rest = await read_n(again, 2)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert [(r.value["op"], r.key["id"]) for r in got] == [("c", 1), ("c", 2)]
    assert [(r.value["op"], r.key["id"]) for r in rest] == [("c", 3), ("d", 1)]


async def test_changelog_without_install_triggers_names_the_option(
    url: str, tmp_path: Path
) -> None:
    orders(url)
    src = source(url, tmp_path, table="orders", mode="changelog")
    with pytest.raises(FatalError) as check:
        await src.check()
    with pytest.raises(FatalError) as opened:
        await src.open(None)
    message = str(opened.value)
    assert str(check.value) == message
    assert message.startswith("changelog table 'backbone_changelog_orders' does not exist in ")
    assert message.endswith(
        "; set install_triggers: true to create it and its triggers, or create them yourself"
    )


@pytest.mark.postgres
async def test_changelog_holds_changes_of_a_transaction_in_flight(
    postgres_url: str, tmp_path: Path
) -> None:
    orders(postgres_url)
    src = source(
        postgres_url,
        tmp_path,
        table="orders",
        mode="changelog",
        install_triggers=True,
        initial="latest",
    )
    await src.open(None)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as slow:
            slow.execute(sa.text("INSERT INTO orders (name, updated_at) VALUES ('slow', now())"))
            insert(postgres_url, "fast")
            assert await read_quiet(src, 3) == []  # the open transaction holds the window
            slow.commit()
        got = await read_n(src, 2)
    finally:
        await src.close()
        engine.dispose()
    assert [(r.value["op"], r.value["after"]["name"]) for r in got] == [
        ("c", "slow"),
        ("c", "fast"),
    ]


# -- snapshot_diff -------------------------------------------------------------


async def test_snapshot_diff_emits_creates_updates_and_deletes(url: str, tmp_path: Path) -> None:
    orders(url)
    insert(url, "a", "b")
    options = {
        "table": "orders",
        "mode": "snapshot_diff",
        "poll_interval": "50ms",
        "tombstones": True,
    }
    src = source(url, tmp_path, **options)
    await src.open(None)
    first = await read_n(src, 2)
    insert(url, "c")
    execute(url, "UPDATE orders SET name = 'A' WHERE id = 1")
    execute(url, "DELETE FROM orders WHERE id = 2")
    diff = await read_n(src, 4)
    await src.ack(diff[-1].position)
    await src.close()
    assert [(r.value["op"], r.key) for r in first] == [("r", {"id": 1}), ("r", {"id": 2})]
    assert [(r.value and r.value["op"], r.key) for r in diff] == [
        ("u", {"id": 1}),
        ("c", {"id": 3}),
        ("d", {"id": 2}),
        (None, {"id": 2}),
    ]
    assert diff[2].value["before"] == {"id": 2}
    assert [r.position for r in diff] == [None, None, None, {"gen": 2}]
    state = tmp_path / "state" / "orders-db"
    assert sorted(p.name for p in state.glob("snapshot-*.json")) == ["snapshot-2.json"]
    execute(url, "UPDATE orders SET name = 'C' WHERE id = 3")
    again = source(url, tmp_path, **options)
    await again.open(diff[-1].position)
    try:
        [update] = await read_n(again, 1)
        assert await read_quiet(again) == []
    finally:
        await again.close()
    assert (update.value["op"], update.value["after"]["name"]) == ("u", "C")


# -- errors --------------------------------------------------------------------


async def test_missing_table_is_a_clear_error_at_check_and_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    execute(url, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    src = source(url, tmp_path, table="ordres", mode="bulk")
    expected = (
        f"table: table 'ordres' does not exist in sqlite:///{tmp_path / 'shop.db'}; "
        "check the name (schema.table) and the url"
    )
    with pytest.raises(FatalError, match=r"^table: table 'ordres' does not exist") as check:
        await src.check()
    assert str(check.value) == expected
    with pytest.raises(FatalError) as opened:
        await src.open(None)
    assert str(opened.value) == expected


async def test_missing_column_is_a_clear_error(url: str, tmp_path: Path) -> None:
    orders(url)
    src = source(url, tmp_path, table="orders", mode="timestamp", timestamp_column="modified")
    with pytest.raises(FatalError) as check:
        await src.check()
    assert str(check.value) == (
        "timestamp_column: column 'modified' does not exist "
        "(columns: id, name, amount, updated_at, payload)"
    )


async def test_numeric_timestamp_column_is_refused(url: str, tmp_path: Path) -> None:
    orders(url)
    src = source(url, tmp_path, table="orders", mode="timestamp", timestamp_column="id")
    with pytest.raises(
        FatalError, match=r"^timestamp_column: column 'id' is INTEGER, not a date/time"
    ):
        await src.open(None)


def test_options_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="mode 'incrementing' needs 'incrementing_column'"):
        SqlSourceOptions(url="sqlite://", table="t", mode="incrementing")
    with pytest.raises(ValueError, match="give exactly one of 'table' and 'query'"):
        SqlSourceOptions(url="sqlite://", mode="bulk")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        SqlSourceOptions(url="sqlite://", table="t", mode="bulk", timezone="Mars/Base")
    with pytest.raises(ValueError, match="'install_triggers' only applies to mode 'changelog'"):
        SqlSourceOptions(url="sqlite://", table="t", mode="bulk", install_triggers=True)


@pytest.mark.postgres
async def test_unreachable_database_is_retriable_and_nothing_is_skipped(
    postgres_url: str, postgres_server: object, tmp_path: Path
) -> None:
    orders(postgres_url)
    insert(postgres_url, "a")
    proxy = Proxy(postgres_server.port)  # type: ignore[attr-defined]
    await proxy.start()
    proxied = postgres_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")  # type: ignore[attr-defined]
    src = source(proxied, tmp_path, table="orders", mode="incrementing", incrementing_column="id")
    await src.open(None)
    try:
        first = await read_n(src, 1)
        await proxy.stop()
        insert(postgres_url, "b")
        with pytest.raises(RetriableError, match="while polling for new rows"):
            await read_n(src, 1)
        await proxy.start(proxy.port)
        rest = await read_n(src, 1)
    finally:
        await src.close()
        await proxy.stop()
    assert afters(first + rest, "name") == ["a", "b"]


async def test_unreachable_postgres_at_open_is_retriable(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    src = SqlSource(SqlSourceOptions(url=url, table="orders", mode="bulk"), context(tmp_path))
    with pytest.raises(
        RetriableError, match=r"^cannot reach postgresql\+psycopg://postgres@127.0.0.1:\d+/nothing"
    ):
        await src.open(None)
    await src.close()


async def test_a_query_naming_a_missing_table_is_fatal_not_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    execute(url, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    src = source(url, tmp_path, query="SELECT id FROM nowhere", mode="bulk")
    with pytest.raises(FatalError) as caught:
        await src.check()
    assert str(caught.value) == (
        f"sqlite:///{tmp_path / 'shop.db'}: no such table: nowhere (while describing the query)"
    )


async def test_a_locked_sqlite_database_is_retriable(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    orders(url)
    insert(url, "a")
    src = source(url, tmp_path, table="orders", mode="bulk")
    await src.open(None)
    holder = sqlite3.connect(tmp_path / "shop.db", timeout=0)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(RetriableError, match="database is locked"):
            await src.read()
        holder.rollback()
        holder.close()
        got = await read_n(src, 1)
    finally:
        await src.close()
    assert afters(got, "name") == ["a"]


async def test_changelog_change_time_is_utc_whatever_the_timezone_option(
    url: str, tmp_path: Path
) -> None:
    """The changelog's own change time is stored in UTC; ``timezone`` (for the table's
    naive columns) must not shift it (Asia/Tokyo would put it 9 hours off)."""
    orders(url)
    insert(url, "existing")
    src = source(
        url, tmp_path, table="orders", mode="changelog", install_triggers=True,
        timezone="Asia/Tokyo",
    )  # fmt: skip
    await src.open(None)
    try:
        [snapshot] = await read_n(src, 1)
        insert(url, "new")
        [record] = await read_n(src, 1)
    finally:
        await src.close()
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    assert (snapshot.value["op"], record.value["op"]) == ("r", "c")
    assert abs(record.value["source"]["ts_ms"] - now_ms) < 3600 * 1000
