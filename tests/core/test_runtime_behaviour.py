"""Runtime behaviour the issue promises, each checked on a real broker.

Backoff timing (unit), retry of a sink's retriable error (exactly once), one sink's
backoff not blocking another, ``start: latest``, consumer group names, topic
creation with configs (sizes and durations converted), and the grace period.
Runs against the embedded broker (the pipeline suite covers Tansu as well).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from backbone.config import RetryPolicy
from backbone.positions import POSITIONS_TOPIC
from backbone.retry import backoff_delay
from backbone.runner import ConnectorState
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running, wait_until

pytestmark = pytest.mark.timeout(90)

LIST = "tests.core.plugins:LIST"
FILE = "tests.core.plugins:FILE"
HANG = "tests.core.runtime_plugins:HANG"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def write_config(tmp_path: Path, body: str, runtime: str = FAST_RUNTIME) -> Path:
    path = tmp_path / f"runtime-{uid()}.yaml"
    path.write_text(broker_yaml("embedded", data_dir=tmp_path / "broker") + runtime + body)
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Admin:
    """An aiokafka admin client for one test."""

    def __init__(self, bootstrap: str) -> None:
        self.client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="test.admin")

    async def __aenter__(self) -> AIOKafkaAdminClient:
        await self.client.start()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


async def topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (resource,) = described.resources
    assert resource[0] == 0, resource  # error code
    return {entry[0]: entry[1] for entry in resource[4]}


async def partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    assert described["error_code"] == 0, described
    return len(described["partitions"])


# ------------------------------------------------------------------------ backoff


def test_backoff_doubles_caps_and_jitters_within_half_to_full() -> None:
    policy = RetryPolicy(initial_backoff="100ms", max_backoff="1s")
    rng, twin = random.Random(42), random.Random(42)
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for attempt, base in enumerate(bases, start=1):
        expected = base * (0.5 + 0.5 * twin.random())
        assert backoff_delay(policy, attempt, None, rng) == pytest.approx(expected)
    rng = random.Random(7)
    for attempt, base in ((1, 0.1), (4, 0.8), (30, 1.0)):
        delays = [backoff_delay(policy, attempt, None, rng) for _ in range(2000)]
        assert base * 0.5 <= min(delays) < base * 0.52
        assert base * 0.98 < max(delays) <= base
    # retry_after is a floor, never a cap
    assert backoff_delay(policy, 1, 5.0, random.Random(1)) == 5.0
    assert backoff_delay(policy, 5, 0.01, random.Random(1)) == pytest.approx(
        1.0 * (0.5 + 0.5 * random.Random(1).random())
    )


# ----------------------------------------------------------------- sink retries


async def test_sink_retriable_error_is_retried_and_lands_exactly_once(tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"retry-{uid()}"
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path,
        f"""
sources:
  src-{name}: {{type: "{LIST}", topic: {topic}, values: [{{"n": 0}}, {{"n": 1}}, {{"n": 2}}]}}
sinks:
  {name}:
    type: "{FILE}"
    topics: [{topic}]
    path: out.jsonl
    fail_first: 1
    retry: {{max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}}
""",
    )
    async with running(config) as runner:
        await wait_until(lambda: len(read_lines(out)) >= 3, what="3 records written")
        assert runner.bootstrap is not None
        async with Admin(runner.bootstrap) as admin:
            group = f"backbone.{name}"
            committed = await wait_until(
                lambda: _committed(admin, group, topic), what="the commit after the retry"
            )
        status = runner.status[name]
        assert status.state is ConnectorState.RUNNING and status.error is None
    assert committed == 3  # nothing of the batch is delivered again after a restart
    assert [line["value"]["n"] for line in read_lines(out)] == [0, 1, 2]
    attempts = Path(f"{out}.attempts").read_text().splitlines()  # noqa: ASYNC240
    assert [line.split()[1] for line in attempts] == ["3", "3"]  # one failure, one success


async def _committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int | None:
    offsets = await admin.list_consumer_group_offsets(group)
    found = offsets.get(TopicPartition(topic, 0))
    return found.offset if found is not None and found.offset >= 3 else None


async def test_sink_in_backoff_does_not_block_another_sink(tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", uid()
    config = write_config(
        tmp_path,
        f"""
sources:
  src-{name}: {{type: "{LIST}", topic: {topic}, values: [{{"n": 0}}, {{"n": 1}}]}}
sinks:
  slow-{name}:
    type: "{FILE}"
    topics: [{topic}]
    path: slow.jsonl
    fail_first: 1
    retry: {{initial_backoff: 1h, max_backoff: 1h}}
  fast-{name}: {{type: "{FILE}", topics: [{topic}], path: fast.jsonl}}
""",
    )
    slow, fast = tmp_path / "slow.jsonl", tmp_path / "fast.jsonl"
    async with running(config) as runner:
        status = runner.status[f"slow-{name}"]
        await wait_until(lambda: status.error is not None, what="the slow sink in backoff")
        await wait_until(lambda: len(read_lines(fast)) == 2, what="the other sink's records")
        # the slow sink is still waiting out its (at least 30 min) backoff
        assert status.state is ConnectorState.BACKOFF
        assert status.error == "RetriableError: scripted failure 1"
        assert len(Path(f"{slow}.attempts").read_text().splitlines()) == 1  # noqa: ASYNC240
    # stop interrupted the backoff: the runner stopped cleanly, nothing written late
    assert runner.status[f"slow-{name}"].state is ConnectorState.STOPPED
    assert read_lines(slow) == []
    assert [line["value"]["n"] for line in read_lines(fast)] == [0, 1]


# ------------------------------------------------------------------ start: latest


async def test_start_latest_skips_what_was_produced_before_the_sink_started(
    tmp_path: Path,
) -> None:
    topic, name = f"t.{uid()}", uid()
    first = write_config(
        tmp_path, f'sources:\n  src-{name}: {{type: "{LIST}", topic: {topic}, values: [1, 2]}}\n'
    )
    async with running(first) as runner:
        assert runner.bootstrap is not None
        assert [json.loads(r.value) for r in await consume(runner.bootstrap, topic, count=2)] == [
            1,
            2,
        ]
    second = write_config(
        tmp_path,
        "sinks:\n"
        f'  late-{name}: {{type: "{FILE}", topics: [{topic}], path: late.jsonl, start: latest}}\n'
        f'  all-{name}: {{type: "{FILE}", topics: [{topic}], path: all.jsonl, start: earliest}}\n',
    )
    late, everything = tmp_path / "late.jsonl", tmp_path / "all.jsonl"
    async with running(second) as runner:
        assert runner.bootstrap is not None
        producer = AIOKafkaProducer(bootstrap_servers=runner.bootstrap)
        await producer.start()
        try:
            # the group's start position is set when its partition is assigned; probe
            # until the sink receives something, then produce the records under test
            async def probe() -> bool:
                await producer.send_and_wait(topic, json.dumps({"probe": True}).encode())
                return bool(read_lines(late))

            await wait_until(probe, what="the latest sink receiving a probe")
            for value in (3, 4):
                await producer.send_and_wait(topic, json.dumps(value).encode())
        finally:
            await producer.stop()
        await wait_until(lambda: 4 in [line["value"] for line in read_lines(late)], what="3, 4")
        await wait_until(lambda: 4 in [line["value"] for line in read_lines(everything)], what="4")
    values = [line["value"] for line in read_lines(late)]
    assert [v for v in values if v != {"probe": True}] == [3, 4]
    assert [v for v in (line["value"] for line in read_lines(everything)) if v != {"probe": True}][
        :2
    ] == [1, 2]


# -------------------------------------------------------------- consumer groups


async def test_each_sink_is_the_consumer_group_backbone_dot_its_name(tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"grp-{uid()}"
    config = write_config(
        tmp_path,
        f"""
sources:
  src-{name}: {{type: "{LIST}", topic: {topic}, values: [1]}}
sinks:
  {name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl}}
""",
    )
    async with running(config) as runner:
        await wait_until(lambda: read_lines(tmp_path / "out.jsonl"), what="the record")
        assert runner.bootstrap is not None
        async with Admin(runner.bootstrap) as admin:

            async def listed() -> list[str]:
                groups = await admin.list_consumer_groups()
                return sorted(g[0] for g in groups if g[0].startswith("backbone."))

            assert await wait_until(listed, what="the group") == [f"backbone.{name}"]
            [response] = await admin.describe_consumer_groups([f"backbone.{name}"])
    (group,) = response.to_object()["groups"]
    assert (group["group"], group["state"], group["protocol_type"]) == (
        f"backbone.{name}",
        "Stable",
        "consumer",
    )
    # client id backbone.<name>@<host>:<pid>: status tells the processes of a cluster apart
    [member] = group["members"]
    assert member["client_id"].startswith(f"backbone.{name}@")


# ------------------------------------------------------------------------ topics


async def test_runner_creates_topics_with_partitions_and_configs(tmp_path: Path) -> None:
    orders, customers, sized = f"orders.{uid()}", f"customers.{uid()}", f"sized.{uid()}"
    config = write_config(
        tmp_path,
        f"""
topics:
  {orders}: {{partitions: 3, retention: 7d}}
  {customers}: {{partitions: 2, cleanup: compact}}
  {sized}: {{config: {{segment.bytes: 1MiB, retention.ms: 7d, retention.bytes: 64MiB}}}}
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        async with Admin(runner.bootstrap) as admin:
            counts = {t: await partition_count(admin, t) for t in (orders, customers, sized)}
            positions_count = await partition_count(admin, POSITIONS_TOPIC)
            configs = {t: await topic_configs(admin, t) for t in (orders, customers, sized)}
            positions = await topic_configs(admin, POSITIONS_TOPIC)
    assert counts == {orders: 3, customers: 2, sized: 1}
    assert configs[orders]["retention.ms"] == "604800000"
    assert configs[orders]["cleanup.policy"] == "delete"
    assert configs[customers]["cleanup.policy"] == "compact"
    assert configs[sized]["segment.bytes"] == "1048576"
    assert configs[sized]["retention.ms"] == "604800000"
    assert configs[sized]["retention.bytes"] == str(64 * 2**20)
    assert positions_count == 1
    assert positions["cleanup.policy"] == "compact"


# ------------------------------------------------------------------ grace period


async def test_a_write_hanging_past_the_grace_period_is_cancelled_on_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic, name = f"t.{uid()}", f"hang-{uid()}"
    runtime = FAST_RUNTIME.replace("grace_period: 5s", "grace_period: 300ms")
    assert "grace_period: 300ms" in runtime
    config = write_config(
        tmp_path,
        f"""
sources:
  src-{name}: {{type: "{LIST}", topic: {topic}, values: [1, 2]}}
sinks:
  {name}: {{type: "{HANG}", topics: [{topic}], path: hang.log}}
""",
        runtime=runtime,
    )
    log = tmp_path / "hang.log"
    caplog.set_level(logging.INFO, logger="backbone")
    async with running(config) as runner:
        await wait_until(lambda: log.exists() and "write" in log.read_text(), what="the write")
    # running() returned: the runner's run() ended normally (no exception) after the cancel
    assert log.read_text().splitlines() == ["write 2", "cancelled", "closed"]
    assert runner.status[name].state is ConnectorState.STOPPED
    runner_loggers = ("backbone.runner", "backbone.supervisor")
    messages = [r.getMessage() for r in caplog.records if r.name in runner_loggers]
    assert "stopping: draining for up to 0.3s" in messages
    assert f"backbone:{name} did not drain in time: cancelled" in messages
    assert messages[-1] == "backbone stopped"
    warning = next(r for r in caplog.records if "did not drain" in r.getMessage())
    assert warning.levelno == logging.WARNING
    # the cancelled batch was not committed: the same group gets both records again
    again = write_config(
        tmp_path,
        f'sinks:\n  {name}: {{type: "{FILE}", topics: [{topic}], path: again.jsonl}}\n',
        runtime=runtime,
    )
    async with running(again):
        await wait_until(lambda: len(read_lines(tmp_path / "again.jsonl")) >= 2, what="2 again")
    assert [line["value"] for line in read_lines(tmp_path / "again.jsonl")] == [1, 2]
