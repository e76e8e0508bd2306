"""``backbone groups list|describe|reset`` against a running broker with real consumers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.core.operating import BrokerProcess, broker_process, cli, ok

pytestmark = pytest.mark.timeout(180)

BASE = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with broker_process(tmp_path) as running:
        yield running


async def fill(bootstrap: str, topic: str) -> None:
    """Six records on two partitions (three each), one minute apart from BASE."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(6):
            stamp = int((BASE + dt.timedelta(minutes=n)).timestamp() * 1000)
            await producer.send_and_wait(
                topic, f"r{n}".encode(), partition=n % 2, timestamp_ms=stamp
            )
    finally:
        await producer.stop()


async def run(*args: str) -> str:
    return await asyncio.to_thread(ok, *args)


async def test_describe_a_live_group_and_refuse_to_reset_it(broker: BrokerProcess) -> None:
    config = str(broker.config)
    await run("topics", "create", "orders", "-p", "2", "--config", config)
    await fill(broker.bootstrap, "orders")
    consumer = AIOKafkaConsumer(
        "orders",
        bootstrap_servers=broker.bootstrap,
        group_id="billing",
        client_id="billing-app",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = 0
        while seen < 4:  # read four, commit them: 2 left
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=1)).items():
                await consumer.commit({tp: messages[-1].offset + 1})
                seen += len(messages)
        listing = (await run("groups", "list", "--config", config)).splitlines()
        assert listing[0].split() == ["GROUP", "STATE", "MEMBERS", "LAG", "TOPICS"]
        assert listing[1].split() == ["billing", "Stable", "1", "2", "orders"]
        described = json.loads(await run("groups", "describe", "billing", "-c", config, "--json"))
        assert described["state"] == "Stable" and described["lag"] == 2
        assert [m["client_id"] for m in described["members"]] == ["billing-app"]
        assert described["members"][0]["assignment"] == {"orders": [0, 1]}
        assert described["members"][0]["host"] == "127.0.0.1"
        assert sum(p["committed"] for p in described["partitions"]) == 4
        assert [(p["end_offset"], p["member"]) for p in described["partitions"]] == [
            (3, "billing-app"),
            (3, "billing-app"),
        ]
        text = (await run("groups", "describe", "billing", "-c", config)).splitlines()
        assert text[0] == "group billing: Stable, 1 member(s), lag 2"
        assert text[1].split() == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]
        refused = await asyncio.to_thread(
            cli, "groups", "reset", "billing", "--topic", "orders", "--to", "earliest", "-c", config
        )
        assert refused.returncode == 1
        assert refused.stderr == (
            "error: consumer group 'billing' has 1 live member(s) (billing-app on 127.0.0.1); "
            "stop its consumers first (its offsets can be moved only while it is empty)\n"
        )
    finally:
        await consumer.stop()
    after = json.loads(await run("groups", "describe", "billing", "-c", config, "--json"))
    assert sum(p["committed"] for p in after["partitions"]) == 4  # the refusal changed nothing


async def test_reset_to_earliest_time_offset_and_latest(broker: BrokerProcess) -> None:
    config = str(broker.config)
    await run("topics", "create", "audit", "-p", "2", "--config", config)
    await fill(broker.bootstrap, "audit")
    await run("consume", "audit", "--group", "auditors", "-c", config)  # commits 3 and 3

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()

    async def committed() -> list[int]:
        found = await admin.list_consumer_group_offsets("auditors")
        return [found[TopicPartition("audit", p)].offset for p in (0, 1)]

    try:
        await check_resets(config, committed)
    finally:
        await admin.close()


async def check_resets(config: str, committed: Callable[[], Awaitable[list[int]]]) -> None:
    assert await committed() == [3, 3]
    dry = await run(
        "groups", "reset", "auditors", "-t", "audit", "--to", "earliest", "--dry-run", "-c", config
    )
    assert dry.splitlines() == [
        "TOPIC  PARTITION  CURRENT  NEW",
        "audit          0        3    0",
        "audit          1        3    0",
        "dry run: nothing changed",
    ]
    assert await committed() == [3, 3]
    # r0..r5 at 12:00..12:05 alternate partitions: from 12:03 that is r3 (p1) and r4 (p0)
    when = "2024-05-01T12:03:00Z"
    moved = await run("groups", "reset", "auditors", "-t", "audit", "--to", when, "-c", config)
    assert moved.splitlines()[-1] == "group auditors: offsets of audit moved"
    assert await committed() == [2, 1]
    printed = await run("consume", "audit", "--group", "auditors", "-c", config)
    again = [json.loads(line)["value"] for line in printed.splitlines()]
    assert sorted(again) == ["r3", "r4", "r5"]
    await run("groups", "reset", "auditors", "-t", "audit", "--to", "1", "-c", config)
    assert await committed() == [1, 1]
    await run("groups", "reset", "auditors", "-t", "audit", "--to", "99", "-c", config)
    assert await committed() == [3, 3]  # clamped to the end
    await run("groups", "reset", "auditors", "-t", "audit", "--to", "earliest", "-c", config)
    await run("groups", "reset", "auditors", "-t", "audit", "--to", "latest", "-c", config)
    assert await committed() == [3, 3]
    bad = await asyncio.to_thread(
        cli, "groups", "reset", "auditors", "-t", "audit", "--to", "soon", "-c", config
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: --to: expected earliest, latest, an offset or an ISO-8601 date-time like "
        "2024-05-01T12:00:00Z (got 'soon')\n"
    )
    unknown = await asyncio.to_thread(cli, "groups", "describe", "nobody", "-c", config)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "error: consumer group 'nobody' does not exist\n",
    )
