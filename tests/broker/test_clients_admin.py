"""Admin operations and record validation through real clients (issues 3 and 4).

CreatePartitions with aiokafka's admin client, DeleteRecords with kafka-python's,
and the INVALID_RECORD (87) refusal of keyless records on a compacted topic as
confluent-kafka and kafka-python report it. Blocking clients run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import InvalidPartitionsError

from backbone.broker import Broker
from tests.broker.expect import exactly

pytestmark = pytest.mark.timeout(90)


async def in_thread(func: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func), 60)


async def test_aiokafka_create_partitions_and_produce_to_the_new_one(broker: Broker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("grow", num_partitions=1, replication_factor=1)])
        response = await admin.create_partitions({"grow": NewPartitions(total_count=3)})
        assert response.topic_errors == [("grow", 0, None)]
        described = await admin.describe_topics(["grow"])
        assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1, 2]
        # shrinking is refused with INVALID_PARTITIONS (37) and a message naming the counts
        with pytest.raises(
            InvalidPartitionsError,
            match=exactly(
                "[Error 37] InvalidPartitionsError: Could not create partitions for grow: "
                "topic 'grow' has 3 partitions; the new count must be larger (got 2)"
            ),
        ):
            await admin.create_partitions({"grow": NewPartitions(total_count=2)})
    finally:
        await admin.close()
    assert len(broker.logs.topic("grow").partitions) == 3

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait("grow", b"in two", key=b"k", partition=2)
    finally:
        await producer.stop()
    assert (meta.partition, meta.offset) == (2, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition("grow", 2)])
        record = await asyncio.wait_for(consumer.getone(), 15)
    finally:
        await consumer.stop()
    assert (record.partition, record.offset, record.key, record.value) == (2, 0, b"k", b"in two")


async def test_kafka_python_delete_records_sets_the_low_watermark(broker: Broker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic

    def run() -> tuple[Any, Any, Any, list[Any], Any]:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
        try:
            admin.create_topics([KNewTopic("trim", 2, 1)])
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            try:
                for i in range(10):
                    producer.send("trim", b"v%d" % i, partition=0).get(10)
                producer.send("trim", b"other", partition=1).get(10)
            finally:
                producer.close(10)
            tp0, tp1 = KTopicPartition("trim", 0), KTopicPartition("trim", 1)
            deleted = admin.delete_records({tp0: 7, tp1: -1})
            again = admin.delete_records({tp0: 3})  # never moves backwards
        finally:
            admin.close()
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        try:
            beginning = consumer.beginning_offsets([tp0, tp1])
            consumer.assign([tp0])
            out: list[Any] = []
            for _ in range(40):
                for records in consumer.poll(timeout_ms=250).values():
                    out.extend(records)
                if len(out) >= 3:
                    break
        finally:
            consumer.close()
        return deleted, again, beginning, out, (tp0, tp1)

    deleted, again, beginning, records, (tp0, tp1) = await in_thread(run)
    assert {tp: meta["low_watermark"] for tp, meta in deleted.items()} == {tp0: 7, tp1: 1}
    assert {tp: meta["low_watermark"] for tp, meta in again.items()} == {tp0: 7}
    assert beginning == {tp0: 7, tp1: 1}
    assert [(r.offset, r.value) for r in records] == [(7, b"v7"), (8, b"v8"), (9, b"v9")]
    assert broker.logs.partition("trim", 0).log_start_offset == 7


async def test_keyless_record_to_a_compacted_topic_confluent(broker: Broker) -> None:
    from confluent_kafka import KafkaError, Producer

    await broker.logs.create_topic("compacted", 1, {"cleanup.policy": "compact"})

    def run() -> list[tuple[int | None, bytes | None]]:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        outcomes: list[tuple[int | None, bytes | None]] = []

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            outcomes.append((None if err is None else err.code(), msg.key()))

        producer.produce("compacted", b"no key", on_delivery=on_delivery)
        assert producer.flush(20) == 0  # separate batches: the refusal is per batch
        producer.produce("compacted", b"keyed", key=b"k", on_delivery=on_delivery)
        assert producer.flush(20) == 0
        return outcomes

    outcomes = await in_thread(run)
    assert outcomes == [(KafkaError.INVALID_RECORD, None), (None, b"k")]
    assert KafkaError.INVALID_RECORD == 87
    log = broker.logs.partition("compacted", 0)
    assert log.high_watermark == 1  # only the keyed record


async def test_keyless_record_to_a_compacted_topic_kafka_python(broker: Broker) -> None:
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    await broker.logs.create_topic("compacted", 1, {"cleanup.policy": "compact"})

    def run() -> tuple[BaseException | None, Any]:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            refused: BaseException | None = None
            try:
                producer.send("compacted", b"no key").get(20)
            except InvalidRecordError as exc:
                refused = exc
        finally:
            producer.close(10)
        # kafka-python's idempotent producer treats INVALID_RECORD as fatal (it aborts its
        # other batches): a keyed record goes through a new producer
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            keyed = producer.send("compacted", b"keyed", key=b"k").get(20)
        finally:
            producer.close(10)
        return refused, keyed

    refused, keyed = await in_thread(run)
    assert isinstance(refused, InvalidRecordError)
    assert refused.errno == 87
    assert str(refused) == (
        "[Error 87] InvalidRecordError: Compacted topic cannot accept message without key in "
        "topic partition compacted-0."
    )
    assert keyed.offset == 0
    assert broker.logs.partition("compacted", 0).high_watermark == 1
