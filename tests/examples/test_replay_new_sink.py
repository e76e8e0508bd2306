"""examples/replay-new-sink: the demo, run as its README says: history, a new sink's
catch-up, lost files, and ``backbone replay`` re-feeding exactly the last day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.examples.support import copy_example, run_script
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_new_sink_catches_up_and_replay_refeeds_only_the_last_day(tmp_path: Path) -> None:
    folder = copy_example("replay-new-sink", tmp_path)
    result = run_script(folder, "demo.py", {"BROKER_PORT": str(free_port())})
    lines = result.stdout.splitlines()
    today = dt.datetime.now(dt.UTC).date()
    first, last = today - dt.timedelta(days=7), today - dt.timedelta(days=1)
    assert lines[0] == (
        f"history: 1260 orders on shop.orders, 7 days back-dated ({first} .. {last}), 3 partitions"
    ), result.stdout + result.stderr[-3000:]
    assert lines[1].startswith("new sink (start: earliest): 1260 orders in 21 daily files after")
    assert lines[1].endswith("(gateway exit 0)")
    assert lines[2] == f"lost: 3 files of {last} deleted from data/archive"
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    figures = json.loads((folder / "data" / "result.json").read_text())
    assert figures["replay_exit"] == 0 and figures["exactly_once"] is True
    assert figures["archived"] == figures["history"] == 1260 and figures["files"] == 21
    assert (
        figures["rewritten"]
        == figures["lost"]
        == [f"shop.orders-{p}-{360:020d}.jsonl" for p in range(3)]
    )
    # the replay re-fed only the last day: 60 orders on each of the 3 partitions
    assert figures["replay_summary"].startswith("replayed 180 record(s) into sink archive from ")
    archive = folder / "data" / "archive"
    for p in range(3):
        text = (archive / f"shop.orders-{p}-{360:020d}.jsonl").read_text()
        rows = [json.loads(x) for x in text.splitlines()]
        assert [r["day"] for r in rows] == [str(last)] * 60
