"""SQL connector benchmark: ``python -m benchmarks.sql [--quick] [--rows N]``.

Three figures, each on this machine, printed as a table (and as JSON with ``--json``):

1. **snapshot**: rows/s from an N-row SQLite table (default 1,000,000) into a
   topic, through ``backbone run``'s runner with the embedded broker (sql source,
   mode ``incrementing``, ``initial: snapshot``) -- timed from start until the
   topic holds N records. Also the source alone (``SqlSource.read`` loop, no broker).
2. **changes**: steady-state changes/s in ``changelog`` mode: a writer commits
   inserts and updates in small transactions for a fixed time while the runner
   captures them; rate = changes captured / time until the last one is on the topic.
3. **sink**: rows/s written by the sql sink into PostgreSQL (``upsert``,
   ``write`` batches of 500 change envelopes, one transaction each), using a
   throwaway server like the test suite's (skipped if PostgreSQL is not installed).

``--quick`` uses 100,000 rows and shorter phases. Called by ``python -m benchmarks``
through :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from backbone import ConnectorContext, SinkRecord
from backbone.config import load_config
from backbone.connectors.sql import CONNECTOR, SqlSink, SqlSinkOptions, SqlSource, SqlSourceOptions
from backbone.registry import Registry
from backbone.runner import ConnectorState, Runner

logger = logging.getLogger("benchmarks.sql")
ROOT = Path(__file__).resolve().parents[1]


def _registry() -> Registry:
    registry = Registry.from_entry_points()
    if "sql" not in registry:
        registry.add(CONNECTOR)
    return registry


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _context(folder: Path, name: str) -> ConnectorContext:
    state = folder / "state" / name
    state.mkdir(parents=True, exist_ok=True)
    return ConnectorContext(name, folder, state, logging.getLogger(name))


def make_table(path: Path, rows: int) -> None:
    """An orders table with ``rows`` rows (ids 1..rows)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL, "
            "amount NUMERIC(10, 2), updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        chunk = 50_000
        for start in range(0, rows, chunk):
            conn.executemany(
                "INSERT INTO orders (customer, amount) VALUES (?, ?)",
                (
                    (f"customer-{i % 1000}", f"{i % 10000}.25")
                    for i in range(start, min(rows, start + chunk))
                ),
            )


def _config(folder: Path, source: str, topic: str) -> Path:
    path = folder / "bench.yaml"
    path.write_text(
        f"""broker:
  embedded: {{listen: "127.0.0.1:{_free_port()}", data_dir: data}}
runtime: {{state_dir: state, position_interval: 200ms}}
topics:
  {topic}: {{partitions: 3}}
sources:
  bench-db:
    type: sql
    topic: {topic}
    url: sqlite:///shop.db
    table: orders
{source}"""
    )
    return path


async def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _run_until(config: Path, topic: str, target: int) -> float:
    """Run ``config`` until ``topic`` holds ``target`` records; seconds from start."""
    registry = _registry()
    runner = Runner(load_config(config, registry), registry)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 120)
        started = time.perf_counter()
        assert runner.bootstrap is not None
        deadline = time.monotonic() + 1800
        while True:
            if await _topic_size(runner.bootstrap, topic) >= target:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic} did not reach {target} records within 1800s")
            if task.done():
                task.result()
                raise RuntimeError("the runner stopped early")
            await asyncio.sleep(0.25)
        return time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


async def bench_source_only(folder: Path, rows: int) -> float:
    """rows/s of the sql source alone (no broker)."""
    options = SqlSourceOptions(
        url=f"sqlite:///{folder / 'shop.db'}",
        table="orders",
        mode="incrementing",
        incrementing_column="id",
        batch_size=10_000,
        lag=0,
        poll_interval=0,
    )
    source = SqlSource(options, _context(folder, "alone"))
    await source.open(None)
    got = 0
    started = time.perf_counter()
    try:
        while got < rows:
            got += len(await source.read())
    finally:
        await source.close()
    return rows / (time.perf_counter() - started)


SNAPSHOT_SOURCE = """\
    mode: incrementing
    incrementing_column: id
    batch_size: 5000
    lag: 0s
    poll_interval: 100ms
"""

CHANGES_SOURCE = """\
    mode: changelog
    install_triggers: true
    initial: latest
    batch_size: 5000
    poll_interval: 100ms
"""


async def bench_snapshot(folder: Path, rows: int) -> float:
    """rows/s of an initial snapshot into a topic through the runner."""
    config = _config(folder, SNAPSHOT_SOURCE, "bench.snapshot")
    return rows / await _run_until(config, "bench.snapshot", rows)


def _write_changes(db: Path, seconds: float) -> int:
    """Commit one insert and one update per transaction for ``seconds``; changes made."""
    written = 0
    end = time.monotonic() + seconds
    with sqlite3.connect(db, timeout=30) as conn:
        while time.monotonic() < end:
            conn.execute("INSERT INTO orders (customer, amount) VALUES ('w', 1.5)")
            conn.execute(
                "UPDATE orders SET amount = amount + 1 WHERE id = ?", (written // 2 % 1000 + 1,)
            )
            conn.commit()
            written += 2
    return written


async def bench_changes(folder: Path, seconds: float) -> tuple[float, int]:
    """Steady state in changelog mode; returns (changes/s, changes)."""
    db = folder / "shop.db"
    make_table(db, 1000)
    config = _config(folder, CHANGES_SOURCE, "bench.changes")
    registry = _registry()
    runner = Runner(load_config(config, registry), registry)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 120)
        assert runner.bootstrap is not None
        deadline = time.monotonic() + 120
        while runner.status["bench-db"].state is not ConnectorState.RUNNING:
            if time.monotonic() > deadline:  # opened: triggers installed, start fixed
                raise RuntimeError(f"the source did not start: {runner.status['bench-db']}")
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        total = await asyncio.to_thread(_write_changes, db, seconds)
        deadline = time.monotonic() + 600
        while True:
            if await _topic_size(runner.bootstrap, "bench.changes") >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the changes did not all reach the topic within 600s")
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)
    return total / elapsed, total


async def bench_sink(folder: Path, rows: int) -> float | None:
    try:
        sys.path.insert(0, str(ROOT))
        from tests.servers import run_postgres
    except ImportError:
        return None
    import psycopg
    import pytest

    try:
        manager = run_postgres()
        server = manager.__enter__()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"sink: PostgreSQL unavailable ({exc})", file=sys.stderr)
        return None
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
            conn.commit()
        with psycopg.connect(server.dsn("bench"), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, "
                "amount NUMERIC(10, 2), updated_at TIMESTAMPTZ)"
            )
        sink = SqlSink(
            SqlSinkOptions(url=server.url("bench"), table="orders", insert_mode="upsert"),
            _context(folder, "sink"),
        )
        await sink.open()
        batch = 500
        started = time.perf_counter()
        try:
            for start in range(0, rows, batch):
                records = [
                    SinkRecord(
                        "bench",
                        0,
                        i,
                        json.dumps({"id": i}).encode(),
                        json.dumps(
                            {
                                "op": "c",
                                "before": None,
                                "after": {
                                    "id": i,
                                    "customer": f"c{i % 1000}",
                                    "amount": f"{i % 10000}.25",
                                    "updated_at": "2024-05-01T12:00:00+00:00",
                                },
                                "source": {
                                    "connector": "bench",
                                    "table": "orders",
                                    "ts_ms": None,
                                    "position": None,
                                },
                                "ts_ms": 0,
                            }
                        ).encode(),
                    )
                    for i in range(start, min(rows, start + batch))
                ]
                await sink.write(records)
        finally:
            await sink.close()
        return rows / (time.perf_counter() - started)
    finally:
        manager.__exit__(None, None, None)


async def run(rows: int, change_seconds: float, sink_rows: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "rows": rows,
        "sink_rows": sink_rows,
        "change_seconds": change_seconds,
    }
    with tempfile.TemporaryDirectory(prefix="backbone-bench-sql-") as tmp:
        folder = Path(tmp) / "snapshot"
        folder.mkdir()
        print(f"creating a {rows:,}-row SQLite table ...", file=sys.stderr, flush=True)
        make_table(folder / "shop.db", rows)
        print("source alone ...", file=sys.stderr, flush=True)
        results["source_rows_per_s"] = await bench_source_only(folder, rows)
        print("snapshot into a topic ...", file=sys.stderr, flush=True)
        results["snapshot_rows_per_s"] = await bench_snapshot(folder, rows)
        changes = Path(tmp) / "changes"
        changes.mkdir()
        print("changelog steady state ...", file=sys.stderr, flush=True)
        results["changes_per_s"], results["changes"] = await bench_changes(changes, change_seconds)
        sink = Path(tmp) / "sink"
        sink.mkdir()
        print("PostgreSQL sink ...", file=sys.stderr, flush=True)
        results["sink_rows_per_s"] = await bench_sink(sink, sink_rows)
    return results


def render(results: dict[str, Any]) -> str:
    """The results as a two-column text table."""

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f}"

    rows = [
        (f"sql source alone, {results['rows']:,} SQLite rows (rows/s)", "source_rows_per_s"),
        ("snapshot SQLite -> topic via the runner (rows/s)", "snapshot_rows_per_s"),
        (f"changelog steady state, {results['changes']:,} changes (changes/s)", "changes_per_s"),
        (
            f"sql sink -> PostgreSQL upsert, {results['sink_rows']:,} rows (rows/s)",
            "sink_rows_per_s",
        ),
    ]
    lines = [f"{'measure':<62} {'rate':>12}"]
    lines += [f"{label:<62} {rate(results[field]):>12}" for label, field in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (also called by ``python -m benchmarks``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sql", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="100,000 rows, shorter phases")
    parser.add_argument("--rows", type=int, help="rows in the snapshot table (default 1,000,000)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    change_seconds = 5.0 if args.quick else 15.0
    sink_rows = 50_000 if args.quick else 200_000
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(rows, change_seconds, sink_rows))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
