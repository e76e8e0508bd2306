"""The schedule source inside the real runtime and a real broker: bad command output on
the dead-letter topic, and ``backbone run`` SIGKILLed and restarted with
``catch_up: all`` -- every fire of the downtime is emitted, in order, ids kept."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest

from backbone import testing

pytestmark = [pytest.mark.timeout(120)]


async def test_bad_command_output_reaches_the_dead_letter_topic(tmp_path: Path) -> None:
    async def inject() -> None:
        return None  # every run prints a bad line

    dead = await testing.check_source_dead_letters(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "broker"),
        tmp_path=tmp_path,
        source="{type: schedule, interval: 200ms, job: {type: command, shell: true,"
        ' output: jsonl, command: "echo \'{\\"ok\\": 1}\'; echo not-json"}}',
        inject=inject,
        count=1,
    )
    headers = dict(dead[0].headers)
    assert dead[0].value == b"not-json"
    assert headers["backbone.error.message"].startswith(b"stdout line 2 is not JSON")
    assert headers["schedule.time"].endswith(b"Z")


@pytest.mark.slow
async def test_fires_missed_during_a_crash_are_caught_up(tmp_path: Path) -> None:
    step = 0.2

    def fires(lines: list[dict[str, Any]]) -> list[dt.datetime]:
        return sorted({dt.datetime.fromisoformat(line["value"]["scheduled"]) for line in lines})

    def kill_when(lines: list[dict[str, Any]]) -> bool:
        return len(fires(lines)) >= 10

    def done_when(lines: list[dict[str, Any]]) -> bool:
        seen = fires(lines)
        return len(seen) >= 40

    lines = await testing.check_source_through_crash(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "broker"),
        tmp_path=tmp_path,
        source=f"{{type: schedule, interval: {int(step * 1000)}ms, catch_up: all}}",
        kill_when=kill_when,
        done_when=done_when,
        within=90,
    )
    seen = fires(lines)
    # no fire is missing between the first and the last, downtime included
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert set(gaps) == {dt.timedelta(seconds=step)}, [g for g in gaps if g.total_seconds() != step]
    # a fire emitted twice (in flight at the kill) kept its CloudEvents id
    ids: dict[str, str] = {}
    for line in lines:
        scheduled = line["value"]["scheduled"]
        assert ids.setdefault(scheduled, line["headers"]["ce_id"]) == line["headers"]["ce_id"]
        assert line["headers"]["schedule.time"].endswith("Z")
