"""kafka-python 3 (idempotent by default) against the embedded broker.

The client is blocking; its calls run in a worker thread while the broker runs
on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from backbone.broker import Broker, BrokerConfig
from backbone.broker.server import ResponseInfo
from tests.broker.long_poll import FetchResponses, assert_each_fetch_waited
from tests.broker.stored_batches import CODEC_IDS, stored_codecs

pytestmark = pytest.mark.timeout(90)

BASE_TS = 1_700_000_000_000
LONG_POLL_MS = 500  # fetch max wait of the long-poll test


async def blocking(func: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func), 60)


def produce(bootstrap: str, topic: str, messages: list[dict[str, Any]], **conf: Any) -> list[Any]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **conf)
    try:
        futures = [producer.send(topic, **message) for message in messages]
        producer.flush(30)
        return [f.get(10) for f in futures]
    finally:
        producer.close(10)


def consume(bootstrap: str, topic: str, count: int, partition: int = 0) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        consumer.assign([TopicPartition(topic, partition)])
        out: list[Any] = []
        for _ in range(100):
            if len(out) >= count:
                break
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


async def test_admin_create_describe_alter_delete(broker: Broker) -> None:
    def run() -> tuple[Any, ...]:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            created = admin.create_topics(
                [NewTopic("orders", 3, 1, topic_configs={"retention.ms": "5000"})]
            )
            topics = admin.describe_topics(["orders"])
            cluster = admin.describe_cluster()
            resource = ConfigResource(ConfigResourceType.TOPIC, "orders")
            before = admin.describe_configs([resource])
            admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, "orders", configs={"segment.bytes": "1048576"}
                    )
                ]
            )
            after = admin.describe_configs([resource])
            deleted = admin.delete_topics(["orders"])
            return created, topics, cluster, before, after, deleted
        finally:
            admin.close()

    created, topics, cluster, before, after, deleted = await blocking(run)
    assert created["topics"][0]["error_code"] == 0
    assert created["topics"][0]["num_partitions"] == 3
    assert [p["partition_index"] for p in topics[0]["partitions"]] == [0, 1, 2]
    assert cluster["brokers"] == [
        {"broker_id": 0, "host": "127.0.0.1", "port": broker.port, "rack": None}
    ]
    assert cluster["cluster_id"] == broker.config.cluster_id
    assert before["topic"]["orders"]["retention.ms"]["value"] == "5000"
    assert before["topic"]["orders"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert after["topic"]["orders"]["segment.bytes"]["value"] == "1048576"
    assert after["topic"]["orders"]["retention.ms"]["value"] == "5000"  # incremental
    assert deleted["topics"][0]["error_code"] == 0
    assert "orders" not in broker.logs.topics


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
async def test_produce_consume_keys_headers_timestamps(broker: Broker, codec: str | None) -> None:
    messages = [
        {
            "key": f"key-{i}".encode(),
            "value": f"value-{i}".encode() * 10,
            "headers": [("h", f"{i}".encode())],
            "timestamp_ms": BASE_TS + i,
        }
        for i in range(50)
    ]
    metas = await blocking(
        lambda: produce(broker.bootstrap, "events", messages, compression_type=codec)
    )
    assert [m.offset for m in metas] == list(range(50))
    records = await blocking(lambda: consume(broker.bootstrap, "events", 50))
    assert [r.offset for r in records] == list(range(50))
    for i, record in enumerate(records):
        assert record.key == f"key-{i}".encode()
        assert record.value == f"value-{i}".encode() * 10
        assert record.headers == [("h", f"{i}".encode())]
        assert record.timestamp == BASE_TS + i
    # stored as the client compressed it (the values are compressible by every codec)
    codecs = stored_codecs(broker.config.data_dir, "events")
    assert codecs and set(codecs) == {CODEC_IDS[codec]}, codecs


async def test_one_megabyte_record(broker: Broker) -> None:
    payload = bytes(range(250)) * 4000
    metas = await blocking(
        lambda: produce(broker.bootstrap, "big", [{"value": payload}], max_request_size=2_000_000)
    )
    assert metas[0].offset == 0
    records = await blocking(lambda: consume(broker.bootstrap, "big", 1))
    assert records[0].value == payload


async def test_offsets_for_times_and_end_offsets(broker: Broker) -> None:
    await blocking(
        lambda: produce(
            broker.bootstrap,
            "timed",
            [{"value": b"x", "timestamp_ms": BASE_TS + 1000 * i} for i in range(10)],
        )
    )

    def lookup() -> tuple[Any, Any, Any]:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        try:
            tp = TopicPartition("timed", 0)
            found = consumer.offsets_for_times({tp: BASE_TS + 3500})[tp]
            none = consumer.offsets_for_times({tp: BASE_TS + 60_000})[tp]
            ends = consumer.end_offsets([tp])[tp], consumer.beginning_offsets([tp])[tp]
            return found, none, ends
        finally:
            consumer.close()

    found, none, ends = await blocking(lookup)
    assert (found.offset, found.timestamp) == (4, BASE_TS + 4000)
    assert none is None
    assert ends == (10, 0)


async def test_long_poll_on_an_empty_topic(broker: Broker) -> None:
    await broker.logs.create_topic("quiet", 1)

    def wait_for_one() -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=LONG_POLL_MS,
        )
        try:
            consumer.assign([TopicPartition("quiet", 0)])
            for _ in range(40):
                for records in consumer.poll(timeout_ms=500).values():
                    return records[0]
            return None
        finally:
            consumer.close()

    fetches = FetchResponses().install(broker)
    waiting = asyncio.create_task(blocking(wait_for_one))
    assert_each_fetch_waited(await fetches.wait_for(3), LONG_POLL_MS)
    await blocking(lambda: produce(broker.bootstrap, "quiet", [{"value": b"wake up", "key": b"k"}]))
    record = await waiting
    assert (record.offset, record.key, record.value) == (0, b"k", b"wake up")


async def test_restart_keeps_data(tmp_path: Path) -> None:
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as first:
        await blocking(
            lambda: produce(
                first.bootstrap, "durable", [{"value": f"v{i}".encode()} for i in range(15)]
            )
        )
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as second:
        records = await blocking(lambda: consume(second.bootstrap, "durable", 15))
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(15)]


async def test_idempotent_retry_after_lost_response_writes_no_duplicate(tmp_path: Path) -> None:
    dropped: list[ResponseInfo] = []

    def lose_first_produce_response(info: ResponseInfo) -> bool:
        if info.api_key == 0 and not dropped:
            dropped.append(info)
            return False
        return True

    config = BrokerConfig(data_dir=tmp_path, port=0)
    async with Broker(config, response_filter=lose_first_produce_response) as running:
        metas = await blocking(
            lambda: produce(
                running.bootstrap,
                "once",
                [{"value": f"m{i}".encode(), "key": b"k"} for i in range(3)],
                enable_idempotence=True,
                retry_backoff_ms=50,
            )
        )
        assert len(dropped) == 1
        assert [m.offset for m in metas] == [0, 1, 2]
        assert running.logs.partition("once", 0).high_watermark == 3
        records = await blocking(lambda: consume(running.bootstrap, "once", 3))
        assert [r.value for r in records] == [b"m0", b"m1", b"m2"]
