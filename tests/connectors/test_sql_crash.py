"""A changelog-mode sql source through a process crash: ``backbone run`` is SIGKILLed
mid-stream and restarted; every change arrives at least once, in order per key."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from backbone.testing import broker_yaml, check_source_through_crash
from tests.connectors.test_sql_support import source

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ROWS = 120


def rank(line: dict[str, Any]) -> int:
    """How far a row's life an event shows: 0 inserted, 1 updated, 2 deleted."""
    value = line["value"]
    if value["op"] == "d":
        return 2
    return int(value["after"]["v"])


async def write_changes(db: Path) -> dict[int, int | None]:
    """Insert ROWS rows, update every third, delete every fifth, a few per 40 ms;
    returns the final table (id -> v, None = deleted)."""
    final: dict[int, int | None] = {}
    conn = sqlite3.connect(db, timeout=10)
    try:
        for i in range(1, ROWS + 1):
            with conn:
                conn.execute("INSERT INTO items (id, v) VALUES (?, 0)", (i,))
                final[i] = 0
                if i % 3 == 0:
                    conn.execute("UPDATE items SET v = 1 WHERE id = ?", (i - 1,))
                    final[i - 1] = 1
                if i % 5 == 0:
                    conn.execute("DELETE FROM items WHERE id = ?", (i - 2,))
                    final[i - 2] = None
            await asyncio.sleep(0.04)
    finally:
        conn.close()
    return final


async def test_changelog_source_through_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    conn.close()
    installer = source(
        f"sqlite:///{db}", tmp_path, table="items", mode="changelog", install_triggers=True
    )
    await installer.open(None)  # the triggers exist before the first change
    await installer.close()

    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO items (id, v) VALUES (0, 0)")  # the initial snapshot's row
    conn.close()
    tasks: list[asyncio.Task[dict[int, int | None]]] = []
    final: dict[int, int | None] = {0: 0}

    def kill_when(lines: list[dict[str, Any]]) -> bool:
        # the changes start once the source runs (a row deleted before its first start
        # is, rightly, in no snapshot); the kill comes while they are being made
        if lines and not tasks:
            tasks.append(asyncio.create_task(write_changes(db)))
        return len(lines) >= 30

    def done(lines: list[dict[str, Any]]) -> bool:
        if not tasks or not tasks[0].done():
            return False
        final.update(tasks[0].result())
        last: dict[int, dict[str, Any]] = {}
        for line in lines:
            last[line["key"]["id"]] = line["value"]
        return len(last) == ROWS + 1 and all(
            (value["op"] == "d")
            if final[key] is None
            else value["after"]
            == {
                "id": key,
                "v": final[key],
            }
            for key, value in last.items()
        )

    try:
        lines = await check_source_through_crash(
            broker=broker_yaml("embedded", data_dir=tmp_path / "broker"),
            tmp_path=tmp_path,
            source=(
                f'{{type: sql, url: "sqlite:///{db}", table: items, mode: changelog, '
                "install_triggers: true, poll_interval: 50ms, batch_size: 10}"
            ),
            kill_when=kill_when,
            done_when=done,
            within=60,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # every key arrived; per key the events never go back in the row's life
    by_key: dict[int, list[int]] = {}
    for line in lines:
        by_key.setdefault(line["key"]["id"], []).append(rank(line))
    assert sorted(by_key) == list(range(ROWS + 1))
    assert lines[0]["value"]["op"] == "r"
    for key, ranks in by_key.items():
        assert ranks == sorted(ranks), (key, ranks)
        expected_last = 2 if final[key] is None else final[key]
        assert ranks[-1] == expected_last, (key, ranks)
    updated = [k for k, v in final.items() if v == 1]
    assert updated and all(1 in by_key[k] for k in updated)
    # a replayed change keeps its ce_id; distinct changes have distinct ones
    ids: dict[str, Any] = {}
    for line in lines:
        change = (line["key"]["id"], line["value"]["source"]["position"], line["value"]["op"])
        assert ids.setdefault(line["headers"]["ce_id"], change) == change
