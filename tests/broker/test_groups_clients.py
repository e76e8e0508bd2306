"""Consumer groups with real clients against the embedded broker.

aiokafka, kafka-python and confluent-kafka (librdkafka) consumer groups: members split the
partitions, a third member takes its share, a killed member (SIGKILL: connection dropped,
no LeaveGroup) loses its partitions after the session timeout, committed offsets survive
a broker restart and a restarted consumer resumes right after its last commit; kcat -G.
Group members that get killed run as subprocesses (a real process dying).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from backbone.broker import Broker, BrokerConfig
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(120)

SESSION_MS = 6000  # heartbeats every 300 ms: 20 may be missed on a loaded machine

MEMBER_SCRIPT = r"""
import json, signal, sys
lib, bootstrap, group, topic, session_ms = sys.argv[1:6]
session_ms = int(session_ms)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
last = None
def report(partitions):
    global last
    partitions = sorted(partitions)
    if partitions != last:
        last = partitions
        print(json.dumps(partitions), flush=True)
if lib == "aiokafka":
    import asyncio
    from aiokafka import AIOKafkaConsumer
    async def main():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             session_timeout_ms=session_ms, heartbeat_interval_ms=300,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            while not stopping:
                await c.getmany(timeout_ms=100)
                report(tp.partition for tp in c.assignment())
        finally:
            await c.stop()
    asyncio.run(main())
elif lib == "kafka-python":
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      session_timeout_ms=session_ms, heartbeat_interval_ms=300,
                      auto_offset_reset="earliest")
    while not stopping:
        c.poll(timeout_ms=100)
        report(tp.partition for tp in c.assignment())
    c.close()
else:
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "session.timeout.ms": session_ms, "heartbeat.interval.ms": 300,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    while not stopping:
        c.poll(0.1)
        report(tp.partition for tp in c.assignment())
    c.close()
"""


class Member:
    """A consumer-group member in its own process; ``partitions`` = its latest assignment."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.partitions: list[int] | None = None
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, lib: str, bootstrap: str, group: str, topic: str) -> Member:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MEMBER_SCRIPT,
            lib,
            bootstrap,
            group,
            topic,
            str(SESSION_MS),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.partitions = json.loads(line)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.wait_for(self.reader, 5)


async def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 40) -> None:
    for _ in range(int(limit_s * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def split(members: list[Member], partitions: int, per_member: int | None = None) -> bool:
    """The members' assignments are disjoint and cover 0..partitions-1 (optionally evenly)."""
    seen = [p for m in members for p in (m.partitions or [])]
    if sorted(seen) != list(range(partitions)):
        return False
    return per_member is None or all(len(m.partitions or []) == per_member for m in members)


async def produce(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, f"v{i}".encode(), partition=i % partitions)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.parametrize("lib", ["aiokafka", "kafka-python", "confluent"])
async def test_members_split_join_and_killed_member_times_out(broker: Broker, lib: str) -> None:
    topic, group = "orders", f"split-{lib}"
    await broker.logs.create_topic(topic, 6)
    members = [await Member.start(lib, broker.bootstrap, group, topic) for _ in range(2)]
    try:
        await wait_until(lambda: split(members, 6, 3), "two members with 3 partitions each")
        third = await Member.start(lib, broker.bootstrap, group, topic)
        members.append(third)
        await wait_until(lambda: split(members, 6, 2), "three members with 2 partitions each")
        desc = broker.groups.describe_group(group)
        assert desc.state == "Stable" and len(desc.members) == 3
        assert all(m.assignment for m in desc.members)

        await third.stop(signal.SIGKILL)  # connection dropped, no LeaveGroup
        members.remove(third)
        assert len(broker.groups.describe_group(group).members) == 3
        await wait_until(lambda: split(members, 6, 3), "the killed member's partitions moving")
        assert len(broker.groups.describe_group(group).members) == 2
    finally:
        for m in members:
            await m.stop()
    await wait_until(
        lambda: broker.groups.describe_group(group).state == "Empty", "members leaving on close"
    )


# -- committed offsets across a broker restart, resume after the last commit -----------


async def aiokafka_consume(bootstrap: str, group: str, topic: str, want: int) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=300,
    )
    await consumer.start()
    try:
        records: list = []
        async with asyncio.timeout(30):
            while len(records) < want:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        await consumer.commit({TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 7})
        return [(r.partition, r.offset, r.value.decode()) for r in records]
    finally:
        await consumer.stop()


def kafka_python_consume(bootstrap: str, group: str, topic: str, want: int) -> list:
    import time

    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata
    from kafka.structs import TopicPartition as KTP

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=300,
    )
    try:
        records = []
        # poll until ``want`` records (not "until 2 s without a record": joining the
        # group can take longer than that on a loaded machine)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(records) < want:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend((r.partition, r.offset, r.value.decode()) for r in batch)
        consumer.commit(
            {
                KTP(topic, 0): OffsetAndMetadata(4, "", -1),
                KTP(topic, 1): OffsetAndMetadata(7, "", -1),
            }
        )
        return records
    finally:
        consumer.close()


def confluent_consume(bootstrap: str, group: str, topic: str, want: int) -> list:
    import time

    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTP

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 300,
        }
    )
    consumer.subscribe([topic])
    try:
        records = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(records) < want:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append((msg.partition(), msg.offset(), msg.value().decode()))
        consumer.commit(offsets=[CTP(topic, 0, 4), CTP(topic, 1, 7)], asynchronous=False)
        return records
    finally:
        consumer.close()


CONSUMERS = {
    "aiokafka": aiokafka_consume,
    "kafka-python": kafka_python_consume,
    "confluent": confluent_consume,
}


@pytest.mark.parametrize("lib", list(CONSUMERS))
async def test_commits_survive_restart_and_consumer_resumes(tmp_path: Path, lib: str) -> None:
    topic, group = "events", f"resume-{lib}"
    consume = CONSUMERS[lib]

    async def run(bootstrap: str, want: int) -> list:
        if lib == "aiokafka":
            return await aiokafka_consume(bootstrap, group, topic, want)
        return await asyncio.to_thread(consume, bootstrap, group, topic, want)

    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
        await broker.logs.create_topic(topic, 2)
        await produce(broker.bootstrap, topic, 20, 2)
        first = await run(broker.bootstrap, 20)
        assert sorted(first) == sorted((i % 2, i // 2, f"v{i}") for i in range(20))
        committed = broker.groups.fetch_offsets(group, None)
        assert [(c.topic, c.partition, c.offset) for c in committed] == [
            (topic, 0, 4),
            (topic, 1, 7),
        ]
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
        committed = broker.groups.fetch_offsets(group, None)
        assert [(c.partition, c.offset) for c in committed] == [(0, 4), (1, 7)]
        resumed = await run(broker.bootstrap, 9)
        assert sorted(resumed) == sorted(
            [(0, o, f"v{o * 2}") for o in range(4, 10)]
            + [(1, o, f"v{o * 2 + 1}") for o in range(7, 10)]
        )


# -- kcat -G, admin APIs --------------------------------------------------------------------


async def test_kcat_balanced_consumer_group(broker: Broker) -> None:
    if shutil.which("kcat") is None:  # fails in CI: `make test` installs it
        unavailable("kcat is not installed (make system-deps installs it)")
    topic, group = "kc", "kcat-group"
    await broker.logs.create_topic(topic, 2)
    await produce(broker.bootstrap, topic, 10, 2)

    async def kcat() -> list[str]:
        proc = await asyncio.create_subprocess_exec(
            "kcat",
            "-b",
            broker.bootstrap,
            "-G",
            group,
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-q",
            "-f",
            "%p %o %s\\n",
            topic,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return sorted(out.decode().split("\n")[:-1])

    assert await kcat() == sorted(f"{i % 2} {i // 2} v{i}" for i in range(10))
    committed = broker.groups.fetch_offsets(group, None)
    assert [(c.partition, c.offset) for c in committed] == [(0, 5), (1, 5)]
    await produce(broker.bootstrap, topic, 2, 2)  # v0, v1 again at offsets 5
    assert await kcat() == ["0 5 v0", "1 5 v1"]


async def test_kafka_python_admin_describe_list_delete(broker: Broker) -> None:
    topic, group = "adm", "admin-group"
    await broker.logs.create_topic(topic, 2)
    member = await Member.start("kafka-python", broker.bootstrap, group, topic)
    try:
        await wait_until(lambda: split([member], 2), "the member's assignment")
        described, listed, deleted, offsets = await asyncio.to_thread(
            _admin_while_stable, broker.bootstrap, group, topic
        )
    finally:
        await member.stop()
    desc = described[group]
    assert (desc["group_state"], desc["protocol_type"], desc["error"]) == (
        "Stable",
        "consumer",
        None,
    )
    [m] = desc["members"]
    assert m["client_host"] == "/127.0.0.1"
    assert m["member_metadata"]["topics"] == [topic]
    assert m["member_assignment"]["assigned_partitions"] == [{"topic": topic, "partitions": [0, 1]}]
    assert {
        "group_id": group,
        "protocol_type": "consumer",
        "group_state": "Stable",
        "group_type": "classic",
    } in listed
    assert deleted == {group: "NonEmptyGroupError", "nope": "GroupIdNotFoundError"}
    assert offsets == ["GroupSubscribedToTopicError"]
    await wait_until(lambda: broker.groups.describe_group(group).state == "Empty", "leave")
    assert await asyncio.to_thread(_admin_delete, broker.bootstrap, group) == {group: "OK"}
    assert not broker.groups.group_exists(group)


def _admin_while_stable(bootstrap: str, group: str, topic: str) -> tuple:
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KTP

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])
        listed = admin.list_groups()
        deleted = dict(admin.delete_groups([group, "nope"]))
        offsets = admin.delete_group_offsets(group, [KTP(topic, 0)])
        return described, listed, deleted, [e.__name__ for e in offsets.values()]
    finally:
        admin.close()


def _admin_delete(bootstrap: str, group: str) -> dict:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return dict(admin.delete_groups([group]))
    finally:
        admin.close()


async def test_confluent_admin_groups(broker: Broker) -> None:
    topic, group = "cadm", "confluent-admin"
    await broker.logs.create_topic(topic, 2)
    member = await Member.start("confluent", broker.bootstrap, group, topic)
    try:
        await wait_until(lambda: split([member], 2), "the member's assignment")
        result = await asyncio.to_thread(_confluent_admin, broker.bootstrap, group, topic)
    finally:
        await member.stop()
    listed, described, deleted = result
    assert listed == [(group, "STABLE")]
    assert described == ("STABLE", "range", [("/127.0.0.1", [0, 1])])
    assert deleted == {group: "NON_EMPTY_GROUP", "simple": None}
    assert broker.groups.fetch_offsets("simple", None) == []


def _confluent_admin(bootstrap: str, group: str, topic: str) -> tuple:
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    listing = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(10)
    listed = [(g.group_id, g.state.name) for g in listing.valid]
    desc = admin.describe_consumer_groups([group])[group].result(10)
    described = (
        desc.state.name,
        desc.partition_assignor,
        [(m.host, [tp.partition for tp in m.assignment.topic_partitions]) for m in desc.members],
    )
    simple = ConsumerGroupTopicPartitions("simple", [TopicPartition(topic, 0, 3)])
    admin.alter_consumer_group_offsets([simple])["simple"].result(10)
    deleted = {}
    for group_id, future in admin.delete_consumer_groups([group, "simple"]).items():
        try:
            future.result(10)
            deleted[group_id] = None
        except Exception as exc:
            deleted[group_id] = exc.args[0].name()
    return listed, described, deleted


async def test_deleting_a_topic_drops_its_committed_offsets(broker: Broker) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("gone", 2, 1), NewTopic("kept", 1, 1)])
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dropper"})
        try:
            offsets = [CTopicPartition("gone", 0, 5), CTopicPartition("gone", 1, 7)]
            offsets.append(CTopicPartition("kept", 0, 3))
            await asyncio.to_thread(consumer.commit, offsets=offsets, asynchronous=False)
        finally:
            await asyncio.to_thread(consumer.close)
        before = await admin.list_consumer_group_offsets("dropper")
        assert {(tp.topic, tp.partition, m.offset) for tp, m in before.items()} == {
            ("gone", 0, 5),
            ("gone", 1, 7),
            ("kept", 0, 3),
        }
        await admin.delete_topics(["gone"])
        after = await admin.list_consumer_group_offsets("dropper")
        assert {(tp.topic, tp.partition, m.offset) for tp, m in after.items()} == {("kept", 0, 3)}
    finally:
        await admin.close()
