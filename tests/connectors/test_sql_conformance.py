"""The connector conformance suite (tests/testing.py) applied to the sql source and sink."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from backbone import SourceRecord, testing
from backbone.connectors.sql import SqlSink, SqlSinkOptions, SqlSource, SqlSourceOptions
from tests.connectors.test_sql_support import dialect, execute, rows, serial

pytestmark = pytest.mark.timeout(90)

MODES: dict[str, dict[str, Any]] = {
    "incrementing": {"mode": "incrementing", "incrementing_column": "id"},
    "timestamp": {"mode": "timestamp", "timestamp_column": "updated_at"},
    "timestamp+incrementing": {
        "mode": "timestamp+incrementing",
        "timestamp_column": "updated_at",
        "incrementing_column": "id",
    },
    "bulk": {"mode": "bulk", "poll_interval": "1h"},
    "changelog": {"mode": "changelog", "install_triggers": True},
    "snapshot_diff": {"mode": "snapshot_diff", "poll_interval": "1h"},
}


def items(url: str, count: int = 12) -> None:
    execute(url, f"CREATE TABLE items (id {serial(url)}, name TEXT NOT NULL, updated_at TIMESTAMP)")
    start = dt.datetime(2024, 1, 1)
    execute(
        url,
        "INSERT INTO items (name, updated_at) VALUES (:name, :at)",
        params=[{"name": f"item-{i}", "at": start + dt.timedelta(seconds=i)} for i in range(count)],
    )


class ReplayComparable(SqlSource):
    """The sql source with the envelope's read time (``ts_ms``) removed from values.

    The conformance suite compares whole values between two reads of the same
    change; the envelope's top-level ``ts_ms`` is, by contract, *when the source read
    the row* and so differs between the reads, as does the PostgreSQL changelog's txid
    horizon in ``source.position``. Everything else is compared as is.
    """

    async def read(self) -> list[SourceRecord]:
        records = await super().read()
        for record in records:
            if isinstance(record.value, dict):
                record.value = {k: v for k, v in record.value.items() if k != "ts_ms"}
                source = record.value.get("source")
                if isinstance(source, dict) and isinstance(source.get("position"), dict):
                    # the changelog's txid horizon on PostgreSQL (lo, hi) is taken when the
                    # source starts: any transaction in between moves it
                    position = {
                        k: v for k, v in source["position"].items() if k not in ("lo", "hi")
                    }
                    record.value["source"] = {**source, "position": position}
        return records


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_source_conformance(url: str, tmp_path: Path, mode: str) -> None:
    items(url)
    options = {"url": url, "table": "items", "lag": 0, "poll_interval": "20ms", "batch_size": 4}
    options.update(MODES[mode])
    counter = iter(range(1000))

    def make(kind: type[SqlSource] = ReplayComparable) -> SqlSource:
        # each instance gets its own state folder, like a fresh process with a saved position
        context = testing.context(tmp_path / f"run-{next(counter)}", "items-db")
        return kind(SqlSourceOptions(**options), context)

    if mode != "snapshot_diff":
        # snapshot_diff positions name a whole diff generation: resuming redoes that diff
        await testing.check_source_resumes(make, minimum=10)
    await testing.check_source_replays(make, minimum=10)
    await testing.check_source_cancellation(lambda: make(SqlSource))
    await testing.check_source_idle_read(lambda: make(SqlSource), drain=12)


async def test_sink_conformance(url: str, tmp_path: Path) -> None:
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")

    def make() -> SqlSink:
        options = SqlSinkOptions(url=url, table="items")
        return SqlSink(options, testing.context(tmp_path, "items-sink"))

    async def read_back() -> list[Any]:
        return rows(url, "SELECT id, name FROM items ORDER BY id")

    records = [testing.sink_record({"id": i, "name": f"n{i}"}, i) for i in range(5)]
    await testing.check_sink_writes(make, records, read_back, [(i, f"n{i}") for i in range(5)])
    bad = [
        testing.sink_record({"id": 10, "name": "fine"}, 10),
        testing.sink_record({"id": 11, "name": None}, 11),
    ]
    await testing.check_sink_data_error_is_all_or_nothing(make, bad, read_back)
    assert dialect(url) in {"sqlite", "postgresql"}

    async def breaks() -> None:
        execute(url, "DROP TABLE items")

    error = await testing.check_sink_errors_are_typed(make, records, breaks)
    assert type(error).__name__ == "FatalError"
    assert "items" in str(error)
