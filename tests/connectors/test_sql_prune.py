"""The changelog table is pruned of acknowledged changes, never of unread ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backbone import SourceRecord
from tests.connectors.test_sql_support import dialect, execute, read_n, read_quiet, rows, source

pytestmark = pytest.mark.timeout(60)


OPTIONS: dict[str, Any] = {
    "table": "items",
    "mode": "changelog",
    "install_triggers": True,
    "initial": "latest",
}


def log_seqs(url: str) -> list[int]:
    return [s for (s,) in rows(url, "SELECT bb_seq FROM backbone_changelog_items ORDER BY bb_seq")]


def changes(records: list[SourceRecord]) -> list[tuple[str, Any]]:
    return [(r.value["op"], r.key["id"]) for r in records]


async def test_acked_changes_leave_the_log_and_a_restart_sees_every_later_change(
    url: str, tmp_path: Path
) -> None:
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    src = source(url, tmp_path, **OPTIONS)
    await src.open(None)
    try:
        for statement in (
            "INSERT INTO items VALUES (1, 'a')",
            "INSERT INTO items VALUES (2, 'b')",
            "INSERT INTO items VALUES (3, 'c')",
            "UPDATE items SET name = 'A' WHERE id = 1",
        ):
            execute(url, statement)  # one transaction each
        first = await read_n(src, 4)
        logged = log_seqs(url)
        acked = first[1].position
        await src.ack(acked)
        after_ack = log_seqs(url)
        await src.ack(first[-1].position)  # within PRUNE_INTERVAL of the first: no pruning
        after_second_ack = log_seqs(url)
    finally:
        await src.close()
    assert changes(first) == [("c", 1), ("c", 2), ("c", 3), ("u", 1)]
    assert len(logged) == 4
    seq = acked["seq"]
    if dialect(url) == "sqlite":
        # rows below the acked one go; the acked row stays to hold the sequence up
        assert after_ack == [s for s in logged if s >= seq] == logged[1:]
    else:
        # the acked window's rows up to the acked one go
        assert after_ack == [s for s in logged if s > seq] == logged[2:]
    assert after_second_ack == after_ack

    execute(url, "INSERT INTO items VALUES (4, 'd')")
    execute(url, "DELETE FROM items WHERE id = 2")
    again = source(url, tmp_path, **OPTIONS)
    await again.open(acked)
    try:
        replay = await read_n(again, 4)
        assert await read_quiet(again) == []
        await again.ack(replay[-1].position)
        pruned = log_seqs(url)
        execute(url, "UPDATE items SET name = 'C' WHERE id = 3")
        [later] = await read_n(again, 1)
    finally:
        await again.close()
    # every change after the acked position, none before it
    assert changes(replay) == [("c", 3), ("u", 1), ("c", 4), ("d", 2)]
    # SQLite keeps the last read row (the sequence), PostgreSQL the unfinished windows (none)
    assert len(pruned) == (1 if dialect(url) == "sqlite" else 0)
    assert (later.value["op"], later.value["after"]) == ("u", {"id": 3, "name": "C"})
    assert len(log_seqs(url)) == len(pruned) + 1  # the new change waits in the log


async def test_pruning_during_the_initial_snapshot_keeps_later_changes(
    url: str, tmp_path: Path
) -> None:
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    src = source(url, tmp_path, **{**OPTIONS, "initial": "snapshot", "batch_size": 1})
    await src.open(None)  # installs the triggers
    await src.close()
    execute(url, "INSERT INTO items VALUES (1, 'a')", "INSERT INTO items VALUES (2, 'b')")
    execute(url, "UPDATE items SET name = 'B' WHERE id = 2")
    await src.open(None)
    try:
        [snap] = await read_n(src, 1)
        logged = log_seqs(url)
        execute(url, "INSERT INTO items VALUES (3, 'c')")
        await src.ack(snap.position)  # mid-snapshot: only changes from before the start go
        after_ack = log_seqs(url)
        rest = await read_n(src, 3)
    finally:
        await src.close()
    assert "then" in snap.position
    assert len(logged) == 3  # the changes made before the start
    # row 3 is in the snapshot's later pages, and its insert stays in the log
    assert changes([snap, *rest]) == [("r", 1), ("r", 2), ("r", 3), ("c", 3)]
    new = max(after_ack)
    assert new not in logged
    if dialect(url) == "sqlite":
        assert after_ack == [logged[-1], new]  # the last row before the start holds the sequence
    else:
        assert after_ack == [new]


async def test_a_long_log_is_pruned_in_several_short_transactions(tmp_path: Path) -> None:
    from backbone.connectors.sql._changelog import PRUNE_BATCH

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    execute(url, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    src = source(url, tmp_path, **OPTIONS, batch_size=5000)
    await src.open(None)
    try:
        count = 2 * PRUNE_BATCH + 10
        execute(
            url,
            "INSERT INTO items (id, name) VALUES (:id, 'x')",
            params=[{"id": i} for i in range(1, count + 1)],
        )
        got = await read_n(src, count, within=30)
        await src.ack(got[-1].position)
    finally:
        await src.close()
    assert [r.key["id"] for r in got] == list(range(1, count + 1))
    assert log_seqs(url) == [got[-1].position["seq"]]
