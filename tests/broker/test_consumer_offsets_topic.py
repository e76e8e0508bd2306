"""``__consumer_offsets`` is a real internal, compacted topic in Kafka's record format.

Lag tools (Burrow and others) read committed offsets and group metadata from it with a
plain consumer. The records are decoded here by hand from the definitions of Kafka's
group-coordinator module (OffsetCommitKey/Value, GroupMetadataKey/Value), independently
of the broker's own encoder.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from backbone.broker import Broker, BrokerConfig
from backbone.broker import protocol as kp
from backbone.broker.groups import OffsetCommit
from tests.broker.test_clients_confluent import blocking, consume
from tests.broker.test_log_support import make_batch
from tests.broker.test_server import call
from tests.broker.test_wire_behaviour import produce, produce_request

pytestmark = pytest.mark.timeout(90)

OFFSETS = "__consumer_offsets"


class Fields:
    """Reads Kafka's non-flexible primitives."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self, fmt: str) -> int:
        (value,) = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.int("h")
        if n < 0:
            return None
        self.pos += n
        return self.data[self.pos - n : self.pos].decode()

    def bytes(self) -> bytes:
        n = self.int("i")
        self.pos += n
        return self.data[self.pos - n : self.pos]


def decode(key: bytes, value: bytes | None) -> tuple[Any, ...]:
    """("offset", group, topic, partition, offset, epoch, metadata) or
    ("group", group, protocol_type, generation, protocol, leader, [members]) (None values
    for tombstones)."""
    k = Fields(key)
    version = k.int("h")
    if version in (0, 1):
        group, topic, partition = k.string(), k.string(), k.int("i")
        if value is None:
            return ("offset", group, topic, partition, None)
        v = Fields(value)
        assert v.int("h") == 3
        offset, epoch, metadata, _ts = v.int("q"), v.int("i"), v.string(), v.int("q")
        assert v.pos == len(value)
        return ("offset", group, topic, partition, offset, epoch, metadata)
    assert version == 2
    group = k.string()
    if value is None:
        return ("group", group, None)
    v = Fields(value)
    assert v.int("h") == 3
    protocol_type, generation, protocol, leader = v.string(), v.int("i"), v.string(), v.string()
    v.int("q")  # current state timestamp
    members = []
    for _ in range(v.int("i")):
        members.append(
            {
                "member_id": v.string(),
                "group_instance_id": v.string(),
                "client_id": v.string(),
                "client_host": v.string(),
                "rebalance_timeout": v.int("i"),
                "session_timeout": v.int("i"),
                "subscription": v.bytes(),
                "assignment": v.bytes(),
            }
        )
    assert v.pos == len(value)
    return ("group", group, protocol_type, generation, protocol, leader, members)


async def read_offsets_topic(bootstrap: str) -> list[tuple[Any, ...]]:
    """Every record of __consumer_offsets through a plain aiokafka consumer, decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, exclude_internal_topics=False
    )
    await consumer.start()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        listing = await blocking(admin.list_topics, OFFSETS, 30)
        tps = [TopicPartition(OFFSETS, p) for p in listing.topics[OFFSETS].partitions]
        assert tps, "no partitions of __consumer_offsets"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    out += [decode(m.key, m.value) for m in messages]
        return out
    finally:
        await consumer.stop()


async def test_commits_and_group_metadata_read_back_with_a_plain_consumer(
    broker: Broker,
) -> None:
    await broker.logs.create_topic("orders", 2)
    for p in (0, 1):
        await produce(broker.port, "orders", p, make_batch([b"a", b"b", b"c"]))
    member = AIOKafkaConsumer(
        "orders",
        bootstrap_servers=broker.bootstrap,
        group_id="billing",
        client_id="billing-1",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await member.start()
    try:
        got = 0
        async with asyncio.timeout(30):
            while got < 6:
                got += sum(len(m) for m in (await member.getmany(timeout_ms=200)).values())
        await member.commit()
        assignment = sorted(tp.partition for tp in member.assignment())
        records = await read_offsets_topic(broker.bootstrap)
    finally:
        await member.stop()
    offsets = {r[2:4]: r[4:] for r in records if r[0] == "offset" and r[1] == "billing"}
    assert offsets == {("orders", 0): (3, -1, ""), ("orders", 1): (3, -1, "")}
    [*_, group] = [r for r in records if r[0] == "group" and r[1] == "billing"]
    _, _, protocol_type, generation, protocol, leader, members = group
    assert (protocol_type, generation, protocol) == ("consumer", 1, "roundrobin")
    [m] = members
    assert (m["member_id"], m["client_id"], m["group_instance_id"]) == (leader, "billing-1", None)
    assert m["client_host"] == "/127.0.0.1" and b"orders" in m["subscription"]
    assert assignment == [0, 1]

    # confluent-kafka (librdkafka) reads the same records
    confluent = await blocking(consume, broker.bootstrap, OFFSETS, len(records))
    assert [decode(m.key(), m.value()) for m in confluent] == records


async def test_deletes_write_tombstones(broker: Broker) -> None:
    await broker.logs.create_topic("t", 1)
    await broker.groups.commit_offsets("g", -1, "", [OffsetCommit("t", 0, 5)])
    await broker.groups.commit_offsets("h", -1, "", [OffsetCommit("t", 0, 6)])
    assert await broker.groups.delete_groups(["g"]) == [None]
    await broker.groups.delete_offsets("h", [("t", 0)])
    records = await read_offsets_topic(broker.bootstrap)
    assert records == [
        ("offset", "g", "t", 0, 5, -1, ""),
        ("offset", "h", "t", 0, 6, -1, ""),
        ("offset", "g", "t", 0, None),
        ("group", "g", None),
        ("offset", "h", "t", 0, None),
    ]


async def test_it_is_internal_and_compacted_in_metadata_and_configs(broker: Broker) -> None:
    await broker.logs.create_topic("visible", 1)
    metadata = await call(broker.port, kp.MetadataRequest(topics=None), 12)
    flags = {t.name: t.is_internal for t in metadata.topics}
    assert flags == {OFFSETS: True, "visible": False}

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [future] = admin.describe_configs([ConfigResource("topic", OFFSETS)]).values()
    configs = await blocking(future.result, 30)
    assert configs["cleanup.policy"].value == "compact"

    # a pattern subscription sees it only with exclude_internal_topics=False
    seen: dict[bool, set[str]] = {}
    for exclude in (True, False):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=f"pattern-{exclude}",
            exclude_internal_topics=exclude,
            metadata_max_age_ms=200,
        )
        consumer.subscribe(pattern=r".*")
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=100)
            seen[exclude] = {tp.topic for tp in consumer.assignment()}
        finally:
            await consumer.stop()
    assert seen == {True: {"visible"}, False: {"visible", OFFSETS}}


async def test_produce_and_delete_are_refused(broker: Broker) -> None:
    response = await call(broker.port, produce_request(OFFSETS, 0, make_batch([b"x"])), 9)
    [answer] = response.responses[0].partition_responses
    assert (answer.error_code, answer.error_message) == (
        17,
        "Cannot append to internal topic __consumer_offsets",
    )
    deleted = await call(broker.port, kp.DeleteTopicsRequest(topic_names=[OFFSETS]), 5)
    [result] = deleted.responses
    assert result.error_code == 42
    assert result.error_message == (
        "Topic __consumer_offsets is internal (the group coordinator's storage) and cannot "
        "be deleted."
    )
    assert OFFSETS in broker.logs.topics


def java_hash(text: str) -> int:
    """Java's String.hashCode: sum of UTF-16 code units times 31^(n-1-i), 32-bit signed."""
    units = struct.unpack(f">{len(text.encode('utf-16-be')) // 2}H", text.encode("utf-16-be"))
    total = sum(u * 31 ** (len(units) - 1 - i) for i, u in enumerate(units)) % 2**32
    return total - 2**32 if total >= 2**31 else total


async def test_partition_count_and_an_old_auto_created_topic(
    tmp_path: Path, broker_clock: Callable[[], float]
) -> None:
    assert java_hash("a") == 97 and java_hash("hello") == 99162322  # Java's values
    config = BrokerConfig(data_dir=tmp_path / "three", port=0, offsets_topic_num_partitions=3)
    async with Broker(config, clock=broker_clock) as broker:
        assert len(broker.logs.topic(OFFSETS).partitions) == 3
        await broker.logs.create_topic("t", 1)
        groups = ("a", "billing", "Zürich-Ω", "emoji-\U0001f600")
        for group in groups:
            await broker.groups.commit_offsets(group, -1, "", [OffsetCommit("t", 0, 1)])
        # each group's records are on Kafka's partition: abs(hashCode) % 3
        where = {
            r[1]: p
            for p in range(3)
            for r in [
                decode(m.key, m.value)
                for m in await read_partition(broker.bootstrap, p)
            ]
        }  # fmt: skip
        assert where == {g: (java_hash(g) & 0x7FFFFFFF) % 3 for g in groups}

    # a data folder where an older Backbone auto-created an ordinary __consumer_offsets
    old = tmp_path / "old"
    async with Broker(BrokerConfig(data_dir=old, port=0), clock=broker_clock) as first:
        await first.logs.delete_topic(OFFSETS)
        await first.logs.create_topic(OFFSETS, 1)  # as auto-creation made it
    async with Broker(BrokerConfig(data_dir=old, port=0), clock=broker_clock) as second:
        topic = second.logs.topic(OFFSETS)
        assert (topic.config.cleanup_policy, topic.internal) == ("compact", True)
        await second.logs.create_topic("t", 1)
        await second.groups.commit_offsets("g", -1, "", [OffsetCommit("t", 0, 9)])
    async with Broker(BrokerConfig(data_dir=old, port=0), clock=broker_clock) as third:
        assert third.groups.fetch_offsets("g", [("t", 0)])[0].offset == 9


async def read_partition(bootstrap: str, partition: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(OFFSETS, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Any] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                out += (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
        return out
    finally:
        await consumer.stop()
