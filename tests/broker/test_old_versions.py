"""Kafka 3.9's version floors: the requests old clients still send (Sarama before 1.40,
Burrow 1.2: OffsetCommit v1, ListOffsets v0, DescribeConfigs v0, ...) are served, and
success answers carry null where Kafka answers null.

The OffsetCommit v1, ListOffsets v0 and DescribeConfigs v0 requests and responses are
packed and parsed by hand here from the protocol guide's grammar (not with the broker's
codec), and the results are read back through a current client.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from backbone.broker import Broker
from backbone.broker import protocol as kp
from tests.broker.test_log_support import make_batch
from tests.broker.test_server import Raw, call, frame, header_v1
from tests.broker.test_wire_behaviour import produce

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {"old": 2}


def string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class Reader:
    """Reads the non-flexible primitives of a response body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return value

    def string(self) -> str | None:
        length = self.take("h")
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value

    def done(self) -> bool:
        return self.pos == len(self.data)


async def raw_call(port: int, api_key: int, version: int, body: bytes) -> Reader:
    conn = await Raw.connect(port)
    try:
        await conn.send(frame(header_v1(api_key, version, 42, "sarama") + body))
        response = await conn.response()
    finally:
        await conn.close()
    reader = Reader(response)
    assert reader.take("i") == 42  # correlation id (response header v0)
    return reader


async def committed(broker: Broker, group: str, partition: int) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition("old", partition))
    finally:
        await consumer.stop()


async def test_offset_commit_v1_and_v0_are_stored(broker: Broker) -> None:
    # v1: group, generation -1, member "", [topic, [partition, offset, timestamp, metadata]]
    body = string("burrow-group") + struct.pack(">i", -1) + string("")
    body += struct.pack(">i", 1) + string("old") + struct.pack(">i", 2)
    body += struct.pack(">iqq", 0, 17, 1_700_000_000_000) + string("sarama-meta")
    body += struct.pack(">iqq", 5, 3, -1) + string(None)
    reader = await raw_call(broker.port, 8, 1, body)
    # v1 response: [topic, [partition, error]] (no throttle time before v3)
    assert reader.take("i") == 1 and reader.string() == "old" and reader.take("i") == 2
    assert [(reader.take("i"), reader.take("h")) for _ in range(2)] == [(0, 0), (5, 3)]
    assert reader.done()
    assert await committed(broker, "burrow-group", 0) == 17

    # v0: group, [topic, [partition, offset, metadata]]
    body = string("v0-group") + struct.pack(">i", 1) + string("old") + struct.pack(">i", 1)
    body += struct.pack(">iq", 1, 99) + string("")
    reader = await raw_call(broker.port, 8, 0, body)
    assert reader.take("i") == 1 and reader.string() == "old" and reader.take("i") == 1
    assert (reader.take("i"), reader.take("h")) == (1, 0)
    assert reader.done()
    assert await committed(broker, "v0-group", 1) == 99

    # and OffsetFetch v0/v1 read them back
    for version in (0, 1):
        request = kp.OffsetFetchRequest(
            group_id="burrow-group",
            topics=[
                kp.OffsetFetchRequest.OffsetFetchRequestTopic(name="old", partition_indexes=[0])
            ],
        )
        fetched = await call(broker.port, request, version)
        [partition] = fetched.topics[0].partitions
        assert (partition.committed_offset, partition.metadata) == (17, "sarama-meta")


async def test_list_offsets_v0_answers_kafkas_legacy_offset_lists(broker: Broker) -> None:
    for i in range(3):
        await produce(broker.port, "old", 0, make_batch([b"a%d" % i, b"b%d" % i]))
    broker.logs.partition("old", 0).roll()
    await produce(broker.port, "old", 0, make_batch([b"c"]))

    async def list_v0(timestamp: int, max_offsets: int) -> list[int]:
        body = struct.pack(">i", -1) + struct.pack(">i", 1) + string("old")
        body += struct.pack(">i", 1) + struct.pack(">iqi", 0, timestamp, max_offsets)
        reader = await raw_call(broker.port, 2, 0, body)
        assert reader.take("i") == 1 and reader.string() == "old" and reader.take("i") == 1
        assert (reader.take("i"), reader.take("h")) == (0, 0)
        offsets = [reader.take("q") for _ in range(reader.take("i"))]
        assert reader.done()
        return offsets

    assert await list_v0(-1, 1) == [7]  # latest: the high watermark
    assert await list_v0(-2, 1) == [0]  # earliest
    assert await list_v0(-1, 10) == [7, 6, 0]  # end, then each segment's base offset
    assert await list_v0(0, 10) == []  # nothing was written before 1970


async def test_describe_configs_v0_reports_is_default(broker: Broker) -> None:
    await broker.logs.alter_configs("old", {"retention.ms": "1000"}, incremental=True)
    # v0: [resource type, name, [config names] or null]
    body = struct.pack(">i", 1) + struct.pack(">b", 2) + string("old")
    body += struct.pack(">i", 2) + string("retention.ms") + string("segment.bytes")
    reader = await raw_call(broker.port, 32, 0, body)
    assert reader.take("i") == 0  # throttle
    assert reader.take("i") == 1
    assert (reader.take("h"), reader.string(), reader.take("b"), reader.string()) == (
        0,
        None,  # error message: null on success
        2,
        "old",
    )
    entries = {}
    for _ in range(reader.take("i")):
        name, value = reader.string(), reader.string()
        read_only, is_default, sensitive = reader.take("?"), reader.take("?"), reader.take("?")
        entries[name] = (value, read_only, is_default, sensitive)
    assert reader.done()
    assert entries == {
        "retention.ms": ("1000", False, False, False),
        "segment.bytes": ("1073741824", False, True, False),
    }


async def test_create_and_delete_topics_v0_and_offset_for_leader_epoch_v0(broker: Broker) -> None:
    topic = kp.CreateTopicsRequest.CreatableTopic
    for version, name in ((0, "made-v0"), (1, "made-v1")):
        request = kp.CreateTopicsRequest(
            topics=[topic(name=name, num_partitions=1, replication_factor=1)], timeout_ms=5000
        )
        [result] = (await call(broker.port, request, version)).topics
        assert (result.name, result.error_code) == (name, 0)
        if version >= 1:
            assert result.error_message is None
    assert {"made-v0", "made-v1"} <= set(broker.logs.topics)
    deleted = await call(broker.port, kp.DeleteTopicsRequest(topic_names=["made-v0"]), 0)
    assert [(r.name, r.error_code) for r in deleted.responses] == [("made-v0", 0)]
    assert "made-v0" not in broker.logs.topics

    await produce(broker.port, "old", 1, make_batch([b"x", b"y"]))
    request = kp.OffsetForLeaderEpochRequest(
        topics=[
            kp.OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                topic="old",
                partitions=[
                    kp.OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                        partition=1, leader_epoch=0
                    )
                ],
            )
        ]
    )
    for version in (0, 1):
        [found] = (await call(broker.port, request, version)).topics[0].partitions
        assert (found.error_code, found.end_offset) == (0, 2)


async def test_success_answers_carry_null_where_kafka_answers_null(broker: Broker) -> None:
    topic = kp.CreateTopicsRequest.CreatableTopic
    created = await call(
        broker.port,
        kp.CreateTopicsRequest(
            topics=[topic(name="fresh", num_partitions=1, replication_factor=1)]
        ),
        7,
    )
    assert created.topics[0].error_code == 0
    assert created.topics[0].error_message is None

    resource = kp.DescribeConfigsRequest.DescribeConfigsResource
    described = await call(
        broker.port,
        kp.DescribeConfigsRequest(
            resources=[resource(resource_type=2, resource_name="fresh", configuration_keys=None)]
        ),
        4,
    )
    [result] = described.results
    assert (result.error_code, result.error_message) == (0, None)
    assert {c.documentation for c in result.configs} == {None}

    alter = kp.AlterConfigsRequest.AlterConfigsResource
    altered = await call(
        broker.port,
        kp.AlterConfigsRequest(
            resources=[
                alter(
                    resource_type=2,
                    resource_name="fresh",
                    configs=[kp.AlterConfigsRequest.AlterConfigsResource.AlterableConfig(
                        name="retention.ms", value="5000"
                    )],
                )
            ]
        ),
        2,
    )  # fmt: skip
    assert [(r.error_code, r.error_message) for r in altered.responses] == [(0, None)]

    incremental = kp.IncrementalAlterConfigsRequest.AlterConfigsResource
    changed = await call(
        broker.port,
        kp.IncrementalAlterConfigsRequest(
            resources=[
                incremental(
                    resource_type=2,
                    resource_name="fresh",
                    configs=[kp.IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig(
                        name="retention.ms", config_operation=0, value="6000"
                    )],
                )
            ]
        ),
        1,
    )  # fmt: skip
    assert [(r.error_code, r.error_message) for r in changed.responses] == [(0, None)]

    coordinator = await call(broker.port, kp.FindCoordinatorRequest(key="g", key_type=0), 3)
    assert (coordinator.error_code, coordinator.error_message) == (0, None)
    produced = await call(
        broker.port,
        kp.ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=[
                kp.ProduceRequest.TopicProduceData(
                    name="fresh",
                    partition_data=[
                        kp.ProduceRequest.PartitionProduceData(index=0, records=make_batch([b"v"]))
                    ],
                )
            ],
        ),
        9,
    )
    [answer] = produced.responses[0].partition_responses
    assert (answer.error_code, answer.error_message) == (0, None)
