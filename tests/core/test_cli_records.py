"""``backbone produce`` and ``backbone consume`` against a running broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.core.operating import BACKBONE, ROOT, BrokerProcess, broker_process, cli, ok

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with broker_process(tmp_path) as running:
        yield running


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_produce_then_consume_json_lines(broker: BrokerProcess) -> None:
    config = str(broker.config)
    ok("topics", "create", "events", "-p", "2", "--config", config)
    headers = ["--header", "source=cli", "--header", "trace=1"]
    text = 'k1:{"n": 1}\nk2:plain text\n\nk1:{"n": 3}\nno separator\n'
    produced = ok("produce", "events", "--key-separator", ":", *headers, "-c", config, input=text)
    assert produced == "produced 4 record(s) to events\n"
    records = lines(ok("consume", "events", "--config", config))
    assert len(records) == 4
    for record in records:
        assert set(record) == {
            "topic",
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers",
        }
        assert record["topic"] == "events" and record["headers"] == {"source": "cli", "trace": "1"}
        assert abs(record["timestamp"] / 1000 - dt.datetime.now(dt.UTC).timestamp()) < 600
    by_key: dict[Any, list[Any]] = {}
    for record in records:
        by_key.setdefault(record["key"], []).append(
            (record["partition"], record["offset"], record["value"])
        )
    # one key, one partition, in order; JSON values decoded, text kept as text
    assert [v for _, _, v in by_key["k1"]] == [{"n": 1}, {"n": 3}]
    assert len({p for p, _, _ in by_key["k1"]}) == 1
    assert [v for _, _, v in by_key["k2"]] == ["plain text"]
    assert [v for _, _, v in by_key[None]] == ["no separator"]

    raw = ok("consume", "events", "--format", "raw", "--partition", "0", "-c", config)
    expected = [
        r["value"] if isinstance(r["value"], str) else json.dumps(r["value"])
        for r in records
        if r["partition"] == 0
    ]
    assert [line.replace(" ", "") for line in raw.splitlines()] == [
        e.replace(" ", "") for e in expected
    ]
    fixed = ok("produce", "events", "--key", "same", "-p", "1", "-c", config, input="x\ny\n")
    assert fixed == "produced 2 record(s) to events\n"
    last_two = lines(ok("consume", "events", "--partition", "1", "--offset", "-2", "-c", config))
    assert [(r["key"], r["value"]) for r in last_two] == [("same", "x"), ("same", "y")]
    first = lines(ok("consume", "events", "--offset", "0", "-n", "1", "-p", "1", "-c", config))
    assert len(first) == 1 and first[0]["offset"] == 0 and first[0]["partition"] == 1


async def test_consume_from_a_datetime(broker: BrokerProcess) -> None:
    ok("topics", "create", "timed", "--bootstrap", broker.bootstrap)
    base = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for minute in range(5):
            stamp = int((base + dt.timedelta(minutes=minute)).timestamp() * 1000)
            await producer.send_and_wait("timed", str(minute).encode(), timestamp_ms=stamp)
    finally:
        await producer.stop()
    result = await asyncio.to_thread(
        ok, "consume", "timed", "--from", "2024-05-01T12:02:00", "-b", broker.bootstrap
    )  # no offset: UTC
    assert [r["value"] for r in lines(result)] == [2, 3, 4]
    assert lines(result)[0]["timestamp"] == int(base.timestamp() * 1000) + 120_000
    later = await asyncio.to_thread(
        ok, "consume", "timed", "--from", "2024-05-01T14:03:30+02:00", "-b", broker.bootstrap
    )
    assert [r["value"] for r in lines(later)] == [4]
    bad = await asyncio.to_thread(
        cli, "consume", "timed", "--from", "yesterday", "-b", broker.bootstrap
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: --from: expected an ISO-8601 date-time like 2024-05-01T12:00:00Z "
        "(got 'yesterday')\n"
    )


def test_consume_with_a_group_commits_what_it_printed(broker: BrokerProcess) -> None:
    config = str(broker.config)
    ok("topics", "create", "jobs", "--config", config)
    ok("produce", "jobs", "--config", config, input="".join(f"job{n}\n" for n in range(5)))
    first = lines(ok("consume", "jobs", "--group", "workers", "-n", "2", "-c", config))
    assert [r["value"] for r in first] == ["job0", "job1"]
    rest = lines(ok("consume", "jobs", "--group", "workers", "-c", config))
    assert [r["value"] for r in rest] == ["job2", "job3", "job4"]
    described = json.loads(ok("groups", "describe", "workers", "-c", config, "--json"))
    assert [(p["committed"], p["end_offset"], p["lag"]) for p in described["partitions"]] == [
        (5, 5, 0)
    ]
    assert ok("consume", "jobs", "--group", "workers", "-c", config) == ""  # nothing new


def test_follow_waits_for_new_records(broker: BrokerProcess) -> None:
    config = str(broker.config)
    ok("topics", "create", "live", "--config", config)
    ok("produce", "live", "--config", config, input="before\n")
    follower = subprocess.Popen(
        [str(BACKBONE), "consume", "live", "--follow", "-n", "2", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["value"] == "before"  # it is reading
        ok("produce", "live", "--config", config, input="after\n")
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert [r["value"] for r in lines(out)] == ["after"]
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()


def test_produce_and_consume_errors(broker: BrokerProcess) -> None:
    config = str(broker.config)
    missing = cli("produce", "nowhere", "--config", config, input="x\n")
    assert (missing.returncode, missing.stderr) == (1, "error: topic 'nowhere' does not exist\n")
    ok("topics", "create", "small", "--config", config)
    partition = cli("produce", "small", "--partition", "3", "--config", config, input="x\n")
    assert partition.returncode == 2
    assert partition.stderr == "error: --partition 3: topic 'small' has 1 partition(s)\n"
    header = cli("produce", "small", "--header", "novalue", "--config", config, input="x\n")
    assert header.returncode == 2
    assert header.stderr == "error: --header expects NAME=VALUE (got 'novalue')\n"
    starts = cli("consume", "small", "--offset", "1", "--from-beginning", "--config", config)
    assert starts.returncode == 2
    assert starts.stderr == "error: give at most one of --from-beginning, --from and --offset\n"
