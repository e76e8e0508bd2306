"""``backbone replay``: the gateway stopped (the command runs the sink alone) and running."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from backbone.broker import Broker, BrokerConfig
from backbone.clients import KafkaClients
from backbone.kafka_admin import commit_offsets
from backbone.testing import FAST_RUNTIME, Gateway, wait_until
from tests.core.operating import ROOT, cli
from tests.servers import free_port

pytestmark = pytest.mark.timeout(240)

JOURNAL = "tests.core.ops_plugins:JOURNAL"
COUNT = "tests.core.ops_plugins:COUNT"
BASE = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text('broker: {embedded: {listen: "127.0.0.1:0", data_dir: data}}\n' + body)
    return path


async def fill(
    data_dir: Path, topic: str, partitions: int, values: list[tuple[int, int]], group: str
) -> dict[TopicPartition, int]:
    """Records ``(partition, timestamp_ms)`` into ``topic`` (value = their index) with the
    embedded broker on ``data_dir``; ``group`` committed at the end, as if it had read
    everything. The end offsets."""
    async with Broker(BrokerConfig(data_dir=data_dir, port=0)) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        await producer.start()
        try:
            sent = [
                await producer.send(topic, str(n).encode(), partition=p, timestamp_ms=stamp)
                for n, (p, stamp) in enumerate(values)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        ends = {
            TopicPartition(topic, p): sum(1 for q, _ in values if q == p) for p in range(partitions)
        }
        await commit_offsets(KafkaClients(broker.bootstrap), group, ends)
        return ends


async def committed(data_dir: Path, group: str) -> dict[int, int]:
    async with Broker(BrokerConfig(data_dir=data_dir, port=0)) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items()}


def printed(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


async def test_replay_of_100000_records_arrives_complete_and_in_order(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "sinks:\n  out: {type: stdout, topics: [big], headers: false}\n"
    )
    stamp = int(BASE.timestamp() * 1000)
    ends = await fill(
        tmp_path / "data", "big", 3, [(n % 3, stamp) for n in range(100_000)], "backbone.out"
    )
    result = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "out", "--from", "earliest", timeout=200
    )
    assert result.returncode == 0, result.stderr
    lines = printed(result.stdout)
    assert len(lines) == 100_000
    for tp, end in ends.items():
        offsets = [line["offset"] for line in lines if line["partition"] == tp.partition]
        assert offsets == list(range(end))  # complete, once, in order
    assert sorted(int(line["value"]) for line in lines) == list(range(100_000))
    assert result.stderr.splitlines()[-1] == (
        "replayed 100000 record(s) into sink out from earliest (100000 written); "
        "group backbone.out is back where it was"
    )
    assert "replay out: 100000/100000 records (100%)" in result.stderr  # not a TTY: plain lines
    assert await committed(tmp_path / "data", "backbone.out") == {0: 33334, 1: 33333, 2: 33333}


async def test_replay_from_and_to_a_datetime(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sinks:\n  out: {type: stdout, topics: [timed]}\n")
    minute = 60_000
    start = int(BASE.timestamp() * 1000)
    # 20 records one minute apart (12:00..12:19), alternating over 2 partitions
    await fill(
        tmp_path / "data", "timed", 2, [(n % 2, start + n * minute) for n in range(20)],
        "backbone.out",
    )  # fmt: skip
    result = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "out", "--from", "2024-05-01T12:13:00"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(int(r["value"]) for r in printed(result.stdout)) == list(range(13, 20))
    assert all(r["timestamp"] >= start + 13 * minute for r in printed(result.stdout))
    window = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "out",
        "--from", "2024-05-01T14:05:00+02:00", "--to", "2024-05-01T12:08:00Z",
    )  # fmt: skip
    assert window.returncode == 0, window.stderr
    assert sorted(int(r["value"]) for r in printed(window.stdout)) == [5, 6, 7]
    # the sink goes on where it was: nothing after --to is delivered again
    assert await committed(tmp_path / "data", "backbone.out") == {0: 10, 1: 10}
    none = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "out", "--from", "2030-01-01T00:00:00Z"
    )
    assert (none.returncode, none.stdout) == (0, "")
    bad = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "nope", "--from", "earliest"
    )
    assert bad.returncode == 1
    assert bad.stderr == f"error: {config} has no sink 'nope' (its sinks: out)\n"


def journal(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)["value"]["n"] for line in path.read_text().splitlines()]


async def test_replay_with_the_gateway_running_pauses_moves_and_resumes(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        f"http: {{listen: 127.0.0.1:{port}}}\n"
        + FAST_RUNTIME
        + f'sources:\n  count: {{type: "{COUNT}", topic: events, count: 50}}\n'
        + f'sinks:\n  journal: {{type: "{JOURNAL}", topics: [events], path: journal.jsonl}}\n',
    )
    gateway = Gateway(config, tmp_path / "out.txt", tmp_path / "log.txt", pythonpath=[ROOT])
    journal_file = tmp_path / "journal.jsonl"
    try:
        gateway.start()
        await wait_until(lambda: journal(journal_file) == list(range(50)), within=60, what="50")
        refused = await asyncio.to_thread(
            cli, "replay", str(config), "--sink", "journal", "--from", "earliest",
            "--to", "2030-01-01T00:00:00Z",
        )  # fmt: skip
        assert refused.returncode == 2
        assert refused.stderr == (
            "error: --to needs the gateway stopped (the replay then runs the sink alone up to "
            "--to); with the gateway running the sink goes on from --from to the newest record\n"
        )
        result = await asyncio.to_thread(
            cli, "replay", str(config), "--sink", "journal", "--from", "earliest"
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            "sink journal: paused",
            "sink journal: group backbone.journal moved back 50 record(s)",
            "sink journal: resumed; it delivers its topics again from --from",
        ]
        await wait_until(
            lambda: journal(journal_file) == [*range(50), *range(50)], within=60, what="again"
        )
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    log = (tmp_path / "log.txt").read_text()
    assert "sink journal paused" in log and "sink journal resumed" in log


async def test_replay_refuses_a_live_sink_without_an_admin_api(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        FAST_RUNTIME
        + f'sources:\n  count: {{type: "{COUNT}", topic: events, count: 5}}\n'
        + f'sinks:\n  journal: {{type: "{JOURNAL}", topics: [events], path: journal.jsonl}}\n',
    )
    gateway = Gateway(config, tmp_path / "out.txt", tmp_path / "log.txt", pythonpath=[ROOT])
    try:
        gateway.start()
        await wait_until(lambda: len(journal(tmp_path / "journal.jsonl")) == 5, within=60)
        result = await asyncio.to_thread(
            cli, "replay", str(config), "--sink", "journal", "--from", "earliest"
        )
        assert result.returncode == 1
        assert result.stderr == (
            "error: consumer group 'backbone.journal' has 1 live member(s) (backbone.journal@"
            f"{socket.gethostname()}:{gateway.proc.pid} on 127.0.0.1); stop its consumers first "
            "(its offsets can be moved only while it is empty)\n"
        )
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    assert journal(tmp_path / "journal.jsonl") == list(range(5))  # nothing moved


async def test_a_stopped_gateways_static_member_does_not_block_reset_or_replay(
    tmp_path: Path,
) -> None:
    # the sink consumes with static membership (group.instance.id), so it stays a member
    # of its group after a clean stop until its session times out (session_timeout: 60s
    # here, longer than the test); the commands remove it, as its slot is free
    config = write_config(
        tmp_path,
        FAST_RUNTIME.replace("session_timeout: 6s", "session_timeout: 60s")
        + f'sources:\n  count: {{type: "{COUNT}", topic: events, count: 5}}\n'
        + f'sinks:\n  journal: {{type: "{JOURNAL}", topics: [events], path: journal.jsonl}}\n',
    )
    gateway = Gateway(config, tmp_path / "out.txt", tmp_path / "log.txt", pythonpath=[ROOT])
    try:
        gateway.start()
        await wait_until(lambda: len(journal(tmp_path / "journal.jsonl")) == 5, within=60)
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    described = await asyncio.to_thread(
        cli, "groups", "describe", "backbone.journal", "--config", str(config), "--json"
    )
    assert described.returncode == 0, described.stderr
    [member] = json.loads(described.stdout)["members"]  # still there after the stop
    assert member["client_id"] == f"backbone.journal@{socket.gethostname()}:{gateway.proc.pid}"
    reset = await asyncio.to_thread(
        cli, "groups", "reset", "backbone.journal", "--topic", "events", "--to", "3",
        "--config", str(config),
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines()[-1] == "group backbone.journal: offsets of events moved"
    result = await asyncio.to_thread(
        cli, "replay", str(config), "--sink", "journal", "--from", "earliest"
    )
    assert result.returncode == 0, result.stderr
    # up to where the group was (the reset put it at 3), then left there
    assert journal(tmp_path / "journal.jsonl") == [*range(5), 0, 1, 2]
