"""aiokafka against the embedded broker: admin, produce/consume, codecs, restart, idempotence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from backbone.broker import Broker, BrokerConfig
from backbone.broker.server import ResponseInfo
from tests.broker.long_poll import FetchResponses, assert_each_fetch_waited
from tests.broker.stored_batches import CODEC_IDS, stored_codecs

pytestmark = pytest.mark.timeout(90)

BASE_TS = 1_700_000_000_000
LONG_POLL_MS = 500  # fetch max wait of the long-poll test


@pytest.fixture
async def admin(broker: Broker) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def consume(bootstrap: str, topic: str, count: int, partitions: int = 1) -> list:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1 << 20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        records: list = []
        async with asyncio.timeout(30):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(messages)
        return records
    finally:
        await consumer.stop()


async def test_metadata_and_create_topic_with_partitions(
    broker: Broker, admin: AIOKafkaAdminClient
) -> None:
    await admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)])
    assert "orders" in await admin.list_topics()
    described = await admin.describe_topics(["orders"])
    assert described[0]["topic"] == "orders"
    assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 0 and p["replicas"] == [0] for p in described[0]["partitions"])
    assert len(broker.logs.topic("orders").partitions) == 3


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
async def test_produce_consume_keys_headers_timestamps(broker: Broker, codec: str | None) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, compression_type=codec, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                "events",
                value=f"value-{i}".encode() * 20,
                key=f"key-{i}".encode(),
                headers=[("h", f"{i}".encode()), ("trace", b"\x00\x01")],
                timestamp_ms=BASE_TS + i,
            )
            for i in range(50)
        ]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    assert offsets == list(range(50))
    records = await consume(broker.bootstrap, "events", 50)
    assert [r.offset for r in records] == list(range(50))
    for i, record in enumerate(records):
        assert record.key == f"key-{i}".encode()
        assert record.value == f"value-{i}".encode() * 20
        assert list(record.headers) == [("h", f"{i}".encode()), ("trace", b"\x00\x01")]
        assert record.timestamp == BASE_TS + i
    # stored as the client compressed it (the values are compressible by every codec)
    codecs = stored_codecs(broker.config.data_dir, "events")
    assert codecs and set(codecs) == {CODEC_IDS[codec]}, codecs


async def test_one_megabyte_record(broker: Broker) -> None:
    payload = bytes(range(250)) * 4000  # 1 MB (Kafka default max.message.bytes is 1 MiB + 12)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, max_request_size=2 << 20, acks="all"
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait("big", payload, key=b"k")
    finally:
        await producer.stop()
    assert meta.offset == 0
    records = await consume(broker.bootstrap, "big", 1)
    assert records[0].value == payload


async def test_offsets_for_times(broker: Broker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait("timed", b"x", timestamp_ms=BASE_TS + 1000 * i)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition("timed", 0)
        found = await consumer.offsets_for_times({tp: BASE_TS + 3500})
        assert (found[tp].offset, found[tp].timestamp) == (4, BASE_TS + 4000)
        exact = await consumer.offsets_for_times({tp: BASE_TS + 2000})
        assert exact[tp].offset == 2
        past_end = await consumer.offsets_for_times({tp: BASE_TS + 60_000})
        assert past_end[tp] is None
        assert await consumer.beginning_offsets([tp]) == {tp: 0}
        assert await consumer.end_offsets([tp]) == {tp: 10}
    finally:
        await consumer.stop()


async def test_long_poll_on_an_empty_topic(broker: Broker, admin: AIOKafkaAdminClient) -> None:
    """Each fetch of the empty topic is held for its max wait; a record then arrives."""
    await admin.create_topics([NewTopic("quiet", num_partitions=1, replication_factor=1)])
    fetches = FetchResponses().install(broker)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=LONG_POLL_MS,
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        consumer.assign([TopicPartition("quiet", 0)])
        waiting = asyncio.create_task(consumer.getone())
        assert_each_fetch_waited(await fetches.wait_for(3), LONG_POLL_MS)
        await producer.send_and_wait("quiet", b"wake up", key=b"k")
        record = await asyncio.wait_for(waiting, 8)
        assert (record.offset, record.key, record.value) == (0, b"k", b"wake up")
    finally:
        await producer.stop()
        await consumer.stop()


async def test_delete_topic(broker: Broker, admin: AIOKafkaAdminClient) -> None:
    await admin.create_topics([NewTopic("doomed", num_partitions=2, replication_factor=1)])
    response = await admin.delete_topics(["doomed"])
    assert [(name, code) for name, code, *_ in response.topic_error_codes] == [("doomed", 0)]
    assert "doomed" not in broker.logs.topics
    again = await admin.delete_topics(["doomed"])
    assert [code for _, code, *_ in again.topic_error_codes] == [3]


async def test_describe_and_alter_configs(broker: Broker, admin: AIOKafkaAdminClient) -> None:
    await admin.create_topics(
        [
            NewTopic(
                "configured",
                num_partitions=1,
                replication_factor=1,
                topic_configs={"retention.ms": "3600000"},
            )
        ]
    )
    resource = ConfigResource(ConfigResourceType.TOPIC, "configured")
    [described] = await admin.describe_configs([resource])
    entries = {c[0]: c[1] for c in described.resources[0][4]}
    assert entries["retention.ms"] == "3600000"
    assert entries["cleanup.policy"] == "delete"
    altered = await admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC, "configured", configs={"segment.bytes": "1048576"}
            )
        ]
    )
    assert altered[0].resources[0][0] == 0
    [described] = await admin.describe_configs([resource])
    entries = {c[0]: c[1] for c in described.resources[0][4]}
    assert entries["segment.bytes"] == "1048576"
    # AlterConfigs replaces the whole override set: retention.ms is back to its default
    assert entries["retention.ms"] == str(broker.logs.defaults.retention_ms)
    bad = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "configured", configs={"retention.ms": "soon"})]
    )
    assert bad[0].resources[0][0] == 40


async def test_restart_keeps_data(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0)
    async with Broker(config) as first:
        producer = AIOKafkaProducer(bootstrap_servers=first.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait("durable", f"v{i}".encode(), key=f"{i}".encode())
        finally:
            await producer.stop()
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as second:
        records = await consume(second.bootstrap, "durable", 20)
        assert [(r.key, r.value) for r in records] == [
            (f"{i}".encode(), f"v{i}".encode()) for i in range(20)
        ]
        producer = AIOKafkaProducer(bootstrap_servers=second.bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait("durable", b"after restart")
        finally:
            await producer.stop()
        assert meta.offset == 20


async def test_idempotent_retry_after_lost_response_writes_no_duplicate(tmp_path: Path) -> None:
    dropped: list[ResponseInfo] = []

    def lose_first_produce_response(info: ResponseInfo) -> bool:
        if info.api_key == 0 and not dropped:
            dropped.append(info)
            return False  # the append happened; the client never hears of it
        return True

    config = BrokerConfig(data_dir=tmp_path, port=0)
    async with Broker(config, response_filter=lose_first_produce_response) as running:
        producer = AIOKafkaProducer(
            bootstrap_servers=running.bootstrap,
            enable_idempotence=True,
            acks="all",
            retry_backoff_ms=50,
            request_timeout_ms=5000,
        )
        await producer.start()
        try:
            meta = await producer.send_and_wait("once", b"exactly once", key=b"k")
            second = await producer.send_and_wait("once", b"next", key=b"k")
        finally:
            await producer.stop()
        assert len(dropped) == 1
        assert (meta.offset, second.offset) == (0, 1)
        assert running.logs.partition("once", 0).high_watermark == 2
        records = await consume(running.bootstrap, "once", 2)
        assert [r.value for r in records] == [b"exactly once", b"next"]
