"""End to end through the runner: database -> sql source -> topic -> sql sink -> database."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from backbone.connectors.sql import CONNECTOR
from backbone.registry import Registry
from backbone.runner import ConnectorState
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running, wait_until
from tests.connectors.test_sql_support import execute

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture(params=["tansu", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "tansu":
        return broker_yaml("tansu", tansu=request.getfixturevalue("tansu"))
    return broker_yaml("embedded", data_dir=tmp_path / "broker")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return str(request.getfixturevalue("postgres_url"))


def registry() -> Registry:
    """The installed kinds, plus sql until its entry point is in pyproject.toml."""
    kinds = Registry.from_entry_points()
    if "sql" not in kinds:
        kinds.add(CONNECTOR)
    return kinds


def snapshot(url: str) -> list[tuple[Any, ...]]:
    """The orders table, normalized across SQLite and PostgreSQL for comparison."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, name, amount, updated_at FROM orders ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    out = []
    for id_, name, amount, at in rows:
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        if isinstance(at, dt.datetime) and at.tzinfo is not None:
            at = at.astimezone(dt.UTC).replace(tzinfo=None)
        amount = (
            None
            if amount is None
            else decimal.Decimal(str(amount)).quantize(decimal.Decimal("0.01"))
        )
        out.append((id_, name, amount, at))
    return out


def create_orders(url: str, *, strict_name: bool = False) -> None:
    postgres = url.startswith("postgresql")
    execute(
        url,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT"
        + (" NOT NULL" if strict_name else "")
        + ", amount NUMERIC(10, 2), updated_at "
        + ("TIMESTAMPTZ" if postgres else "TIMESTAMP")
        + ")",
    )


def config(tmp_path: Path, broker: str, target: str, topic: str) -> Path:
    """Source ``orders-<suffix>`` -> ``topic`` -> sink ``warehouse-<suffix>``.

    Names are unique per test: Tansu lives for the whole session, and a saved source
    position or a sink group from another test must not apply here.
    """
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        broker
        + FAST_RUNTIME
        + f"""
topics:
  {topic}: {{partitions: 3}}
  {topic}.dlq: {{partitions: 1}}
sources:
  orders-{topic.rsplit(".", 1)[1]}:
    type: sql
    topic: {topic}
    url: sqlite:///source.db
    table: orders
    mode: changelog
    install_triggers: true
    tombstones: true
    poll_interval: 50ms
    lag: 0s
sinks:
  warehouse-{topic.rsplit(".", 1)[1]}:
    type: sql
    topics: [{topic}]
    start: earliest
    dead_letter_topic: {topic}.dlq
    url: "{target}"
    table: orders
    insert_mode: upsert
    delete_on_tombstone: true
"""
    )
    return path


async def test_source_topic_sink_keeps_a_second_database_equal(
    broker: str, target: str, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    create_orders(source)
    create_orders(target)
    at = "2024-05-01 12:00:00"
    execute(
        source,
        *[f"INSERT INTO orders VALUES ({i}, 'o{i}', {i}.25, '{at}')" for i in range(1, 21)],
    )
    topic = f"shop.orders.{uuid.uuid4().hex[:8]}"
    async with running(config(tmp_path, broker, target, topic), registry=registry()) as runner:
        await wait_until(lambda: snapshot(target) == snapshot(source), what="initial copy")
        execute(
            source,
            "UPDATE orders SET name = 'renamed', amount = 99.99 WHERE id <= 5",
            "DELETE FROM orders WHERE id BETWEEN 6 AND 10",
            "INSERT INTO orders VALUES (21, 'new', NULL, '2024-05-02 08:30:00')",
            "UPDATE orders SET id = 30 WHERE id = 20",
        )
        execute(source, "DELETE FROM orders WHERE id = 21")
        execute(source, "INSERT INTO orders VALUES (21, 'back', 1.5, '2024-05-03 00:00:00')")
        await wait_until(lambda: snapshot(target) == snapshot(source), what="changes copied")
        suffix = topic.rsplit(".", 1)[1]
        assert runner.status[f"orders-{suffix}"].state is ConnectorState.RUNNING
        assert runner.status[f"warehouse-{suffix}"].state is ConnectorState.RUNNING
    assert [r[0] for r in snapshot(target)] == [
        1,
        2,
        3,
        4,
        5,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        21,
        30,
    ]


async def test_rows_the_target_rejects_go_to_the_dead_letter_topic(
    broker: str, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'warehouse.db'}"
    source = f"sqlite:///{tmp_path / 'source.db'}"
    create_orders(source)
    create_orders(target, strict_name=True)
    execute(
        source,
        "INSERT INTO orders VALUES (1, 'ok', 1, '2024-05-01 12:00:00')",
        "INSERT INTO orders VALUES (2, NULL, 2, '2024-05-01 12:00:00')",
        "INSERT INTO orders VALUES (3, 'ok too', 3, '2024-05-01 12:00:00')",
    )
    topic = f"shop.orders.{uuid.uuid4().hex[:8]}"
    async with running(config(tmp_path, broker, target, topic), registry=registry()) as runner:
        await wait_until(lambda: len(snapshot(target)) == 2, what="good rows written")
        bootstrap = runner.bootstrap
        assert bootstrap is not None
        [dead] = await consume(bootstrap, f"{topic}.dlq", count=1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["backbone.error.class"] == "DataError"
    assert headers["backbone.error.message"].endswith("NOT NULL constraint failed: orders.name")
    assert [r[0] for r in snapshot(target)] == [1, 3]


async def test_a_locked_database_stops_the_sink_and_loses_nothing(tmp_path: Path) -> None:
    """Retries run out on a database that stays locked: the sink stops FAILED with nothing
    dead-lettered or committed; once the lock goes, a restart writes every row."""
    import sqlite3

    from backbone import testing

    path = tmp_path / "locked.db"
    target = f"sqlite:///{path}"
    execute(target, "CREATE TABLE t (n INTEGER PRIMARY KEY)")
    holder = sqlite3.connect(path, isolation_level=None)

    async def breaks() -> None:
        holder.execute("BEGIN IMMEDIATE")  # a writer's lock: readers go on, writes wait
        holder.execute("INSERT INTO t VALUES (-1)")

    async def repairs() -> None:
        holder.execute("ROLLBACK")

    async def read_back() -> list[Any]:
        with sqlite3.connect(path) as conn:
            return [row[0] for row in conn.execute("SELECT n FROM t ORDER BY n")]

    try:
        error = await testing.check_sink_stops_when_retries_run_out(
            broker=broker_yaml("embedded", data_dir=tmp_path / "data"),
            tmp_path=tmp_path,
            sink=f'{{type: sql, url: "{target}", table: t}}',
            values=[{"n": n} for n in range(5)],
            breaks=breaks,
            repairs=repairs,
            read_back=read_back,
            expected=[0, 1, 2, 3, 4],
            within=90,
        )
    finally:
        holder.close()
    assert error.startswith("FatalError: "), error
    assert "database is locked" in error, error
    assert error.endswith(
        "(still failing after 3 attempts); stopped without committing: the records are "
        "delivered again after a restart"
    ), error
