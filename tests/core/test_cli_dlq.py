"""``backbone dlq list|show|redrive`` against a running gateway (in-process, embedded broker)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from backbone.testing import FAST_RUNTIME, running, wait_until
from tests.core.operating import cli

pytestmark = pytest.mark.timeout(240)

JOURNAL = "tests.core.ops_plugins:JOURNAL"
LIST = "tests.core.plugins:LIST"


def journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def run(*args: str) -> Any:
    return await asyncio.to_thread(cli, *args)


async def show_json(config: str) -> list[dict[str, Any]]:
    shown = await run("dlq", "show", "store", "-c", config, "--json")
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


async def test_list_show_and_redrive_after_the_sink_is_fixed(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    values = [{"n": n} for n in range(6)]
    config.write_text(
        'broker: {embedded: {listen: "127.0.0.1:0", data_dir: data}}\n'
        + FAST_RUNTIME
        + "sources:\n"
        + f'  feed: {{type: "{LIST}", topic: events, values: {json.dumps(values)}, '
        + "error_at: [2], dead_letter_topic: events.dlq}\n"
        + "sinks:\n"
        + f'  store: {{type: "{JOURNAL}", topics: [events], path: journal.jsonl, '
        + "refuse: refuse.json, dead_letter_topic: store.dlq}\n"
    )
    refuse = tmp_path / "refuse.json"
    refuse.write_text(json.dumps([{"n": 1}, {"n": 4}]))
    written = tmp_path / "journal.jsonl"
    c = str(config)
    async with running(config) as runner:
        await wait_until(
            lambda: (
                runner.status["store"].dead_lettered == 2
                and [line["value"]["n"] for line in journal(written)] == [0, 3, 5]
            ),
            what="3 written, 2 dead-lettered",
        )
        listed = await run("dlq", "list", "-c", c)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines() == [
            "CONNECTOR  ROLE    TOPIC       PENDING",
            "feed       source  events.dlq        1",
            "store      sink    store.dlq         2",
        ]
        shown = await run("dlq", "show", "store", "-c", c)
        rows = shown.stdout.splitlines()
        assert rows[0].split() == ["DLQ", "TIME", "ERROR", "ORIGINAL", "KEY", "VALUE"]
        assert len(rows) == 3
        assert rows[1].split()[0] == "0@0" and rows[2].split()[0] == "0@1"
        assert 'DataError: refused value {"n": 1}' in rows[1]
        # record 2 never reached the topic (the source dead-lettered it): n=4 is offset 3
        assert "events[0]@1" in rows[1] and "events[0]@3" in rows[2]
        detailed = await show_json(c)
        assert [(d["error_class"], d["original_offset"], d["redriven"]) for d in detailed] == [
            ("DataError", 1, False),
            ("DataError", 3, False),
        ]
        assert detailed[0]["record"]["value"] == {"n": 1} and detailed[0]["attempts"] == 1

        refuse.write_text(json.dumps([{"n": 4}]))  # a partial fix: 4 is still refused
        partial = await run("dlq", "redrive", "store", "-c", c)
        assert partial.returncode == 1
        assert partial.stdout.splitlines() == [
            "redrive store: 2 record(s), 1 written through the sink, 1 failed again",
            '  failed again: DataError: refused value {"n": 4}',
        ]
        redriven = journal(written)[-1]
        # written as the record it was: its own topic, partition and offset, no error headers
        assert (redriven["topic"], redriven["partition"], redriven["offset"]) == ("events", 0, 1)
        assert redriven["value"] == {"n": 1}
        assert not any(h.startswith("backbone.") for h in redriven["headers"])
        assert "ce_id" in redriven["headers"]
        pending = await show_json(c)
        assert [(d["record"]["offset"], d["original_offset"]) for d in pending] == [(2, 3)]
        everything = await run("dlq", "show", "store", "--all", "-c", c, "--json")
        assert [json.loads(line)["redriven"] for line in everything.stdout.splitlines()] == [
            True,
            True,
            False,
        ]

        refuse.unlink()  # fixed
        fixed = await run("dlq", "redrive", "store", "-c", c)
        assert fixed.returncode == 0, fixed.stderr
        assert (
            fixed.stdout
            == "redrive store: 1 record(s), 1 written through the sink, 0 failed again\n"
        )
        assert sorted(line["value"]["n"] for line in journal(written)) == [0, 1, 3, 4, 5]
        assert (await run("dlq", "show", "store", "-c", c)).stdout.splitlines()[1:] == []
        nothing = await run("dlq", "redrive", "store", "-c", c)
        assert (
            nothing.stdout
            == "redrive store: 0 record(s), 0 written through the sink, 0 failed again\n"
        )

        # a source's dead letter never reached a topic: it is re-published there
        source = await run("dlq", "redrive", "feed", "-c", c)
        assert source.returncode == 0, source.stderr
        assert source.stdout == (
            "redrive feed: 1 record(s), 1 re-published to the source's topic, 0 failed again\n"
        )
        events = await run("consume", "events", "-c", c)
        assert json.loads(events.stdout.splitlines()[-1])["value"] == "raw-2"
        none = await run("dlq", "show", "nobody", "-c", c)
        assert (none.returncode, none.stderr) == (1, f"error: {config} has no connector 'nobody'\n")
