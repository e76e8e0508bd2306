"""confluent-kafka (librdkafka) against the embedded broker.

The client is blocking; its calls run in a worker thread while the broker runs
on the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from backbone.broker import Broker, BrokerConfig
from backbone.broker.server import ResponseInfo
from tests.broker.long_poll import FetchResponses, assert_each_fetch_waited
from tests.broker.stored_batches import CODEC_IDS, stored_codecs

pytestmark = pytest.mark.timeout(90)

BASE_TS = 1_700_000_000_000
LONG_POLL_MS = 500  # fetch max wait of the long-poll test


async def blocking(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func, *args), 60)


def produce(bootstrap: str, topic: str, messages: list[dict[str, Any]], **conf: Any) -> list[Any]:
    """Produce and flush; returns the delivered messages (asserting no delivery error)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **conf})
    delivered: list[Any] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        assert err is None, err
        delivered.append(msg)

    for message in messages:
        producer.produce(topic, on_delivery=on_delivery, **message)
    assert producer.flush(30) == 0
    return delivered


def consume(bootstrap: str, topic: str, count: int, partition: int = 0, **conf: Any) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            **conf,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        out: list[Any] = []
        for _ in range(200):
            if len(out) >= count:
                break
            for msg in consumer.consume(count - len(out), timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append(msg)
        return out
    finally:
        consumer.close()


async def test_metadata_and_create_topic(broker: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic("orders", num_partitions=4, replication_factor=1)])
    await blocking(futures["orders"].result, 10)
    metadata = await blocking(admin.list_topics, None, 10)
    assert sorted(metadata.topics["orders"].partitions) == [0, 1, 2, 3]
    assert metadata.brokers[0].port == broker.port
    assert metadata.cluster_id == broker.config.cluster_id
    duplicate = admin.create_topics([NewTopic("orders", num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException, match=re.escape("Topic 'orders' already exists.")) as info:
        await blocking(duplicate["orders"].result, 10)
    assert info.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_produce_consume_keys_headers_timestamps(broker: Broker, codec: str) -> None:
    messages = [
        {
            "key": f"key-{i}".encode(),
            "value": f"value-{i}".encode() * 10,
            "headers": [("h", f"{i}".encode()), ("empty", b"")],
            "timestamp": BASE_TS + i,
        }
        for i in range(100)
    ]
    delivered = await blocking(_produce_codec, broker.bootstrap, messages, codec)
    assert sorted(m.offset() for m in delivered) == list(range(100))
    records = await blocking(consume, broker.bootstrap, "events", 100)
    assert [r.offset() for r in records] == list(range(100))
    for i, record in enumerate(records):
        assert record.key() == f"key-{i}".encode()
        assert record.value() == f"value-{i}".encode() * 10
        assert record.headers() == [("h", f"{i}".encode()), ("empty", b"")]
        assert record.timestamp() == (1, BASE_TS + i)  # TIMESTAMP_CREATE_TIME
    # stored as the client compressed it (the values are compressible by every codec)
    codecs = stored_codecs(broker.config.data_dir, "events")
    assert codecs and set(codecs) == {CODEC_IDS[codec]}, codecs


def _produce_codec(bootstrap: str, messages: list[dict[str, Any]], codec: str) -> list[Any]:
    return produce(bootstrap, "events", messages, **{"compression.type": codec})


async def test_one_megabyte_record(broker: Broker) -> None:
    payload = bytes(range(250)) * 4000  # 1 MB
    delivered = await blocking(
        lambda: produce(
            broker.bootstrap,
            "big",
            [{"value": payload, "key": b"k"}],
            **{"message.max.bytes": 2_000_000},
        )
    )
    assert delivered[0].offset() == 0
    records = await blocking(
        lambda: consume(broker.bootstrap, "big", 1, **{"fetch.max.bytes": 1024 * 1024})
    )
    assert records[0].value() == payload


async def test_offsets_for_times(broker: Broker) -> None:
    await blocking(
        produce,
        broker.bootstrap,
        "timed",
        [{"value": b"x", "timestamp": BASE_TS + 1000 * i} for i in range(10)],
    )

    def lookup() -> tuple[list[Any], tuple[int, int]]:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
        try:
            found = [
                consumer.offsets_for_times([TopicPartition("timed", 0, ts)], timeout=10)[0]
                for ts in (BASE_TS + 3500, BASE_TS + 60_000)
            ]
            marks = consumer.get_watermark_offsets(TopicPartition("timed", 0), timeout=10)
            return found, marks
        finally:
            consumer.close()

    found, marks = await blocking(lookup)
    assert found[0].offset == 4
    assert found[1].offset == -1  # OFFSET_END: no record at or after that time
    assert marks == (0, 10)


async def test_long_poll_on_an_empty_topic(broker: Broker) -> None:
    await broker.logs.create_topic("quiet", 1)

    def wait_for_one() -> Any:
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "unused",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": LONG_POLL_MS,
            }
        )
        try:
            consumer.assign([TopicPartition("quiet", 0, 0)])
            for _ in range(40):
                msg = consumer.poll(0.5)
                if msg is not None:
                    assert msg.error() is None, msg.error()
                    return msg
            return None
        finally:
            consumer.close()

    fetches = FetchResponses().install(broker)
    waiting = asyncio.create_task(blocking(wait_for_one))
    assert_each_fetch_waited(await fetches.wait_for(3), LONG_POLL_MS)
    await blocking(produce, broker.bootstrap, "quiet", [{"value": b"wake up", "key": b"k"}])
    msg = await waiting
    assert (msg.offset(), msg.key(), msg.value()) == (0, b"k", b"wake up")


async def test_delete_topic_and_configs(broker: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics(
        [NewTopic("cfg", num_partitions=1, replication_factor=1, config={"retention.ms": "60000"})]
    )
    await blocking(futures["cfg"].result, 10)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    described = await blocking(admin.describe_configs([resource])[resource].result, 10)
    assert described["retention.ms"].value == "60000"
    assert not described["retention.ms"].is_default
    assert described["cleanup.policy"].is_default
    change = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET
            ),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    await blocking(admin.incremental_alter_configs([change])[change].result, 10)
    described = await blocking(admin.describe_configs([resource])[resource].result, 10)
    assert described["max.message.bytes"].value == "2000000"
    assert described["retention.ms"].is_default
    deleted = admin.delete_topics(["cfg"])
    await blocking(deleted["cfg"].result, 10)
    assert "cfg" not in broker.logs.topics


async def test_restart_keeps_data(tmp_path: Path) -> None:
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as first:
        await blocking(
            produce,
            first.bootstrap,
            "durable",
            [{"value": f"v{i}".encode(), "key": f"{i}".encode()} for i in range(30)],
        )
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as second:
        records = await blocking(consume, second.bootstrap, "durable", 30)
        assert [(r.key(), r.value()) for r in records] == [
            (f"{i}".encode(), f"v{i}".encode()) for i in range(30)
        ]


async def test_idempotent_retry_after_lost_response_writes_no_duplicate(tmp_path: Path) -> None:
    dropped: list[ResponseInfo] = []

    def lose_first_produce_response(info: ResponseInfo) -> bool:
        if info.api_key == 0 and not dropped:
            dropped.append(info)
            return False
        return True

    config = BrokerConfig(data_dir=tmp_path, port=0)
    async with Broker(config, response_filter=lose_first_produce_response) as running:
        delivered = await blocking(
            lambda: produce(
                running.bootstrap,
                "once",
                [{"value": f"m{i}".encode(), "key": b"k"} for i in range(5)],
                **{"enable.idempotence": True, "retry.backoff.ms": 50},
            )
        )
        assert len(dropped) == 1
        assert sorted(m.offset() for m in delivered) == [0, 1, 2, 3, 4]
        assert running.logs.partition("once", 0).high_watermark == 5
        records = await blocking(consume, running.bootstrap, "once", 5)
        assert [r.value() for r in records] == [f"m{i}".encode() for i in range(5)]
