"""Compaction and compact,delete read back by a real client (issue 4).

aiokafka produces to an in-process broker with an injected clock; the test rolls
the active segment and runs one cleaner / retention pass through the broker's
log manager (``broker.logs.clean()``, ``broker.logs.enforce_retention()``: what
the maintenance task runs on its interval), then an aiokafka consumer reads the
partition from the earliest offset. The broker's own maintenance task may run a pass
too (every 15 s): with the clock injected, its outcome is the same, so the tests assert
what is read back, not which pass did the work.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from backbone.broker import Broker
from tests.broker.test_log_support import FakeClock

pytestmark = pytest.mark.timeout(90)

Read = tuple[int, bytes | None, bytes | None]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def broker_clock(clock: FakeClock) -> FakeClock:
    return clock


async def create_topic(broker: Broker, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=1, topic_configs=configs)]
        )
    finally:
        await admin.close()


async def produce(
    broker: Broker, topic: str, records: list[tuple[bytes, bytes | None, int | None]]
) -> list[int]:
    """Send (key, value, timestamp) records one request each; returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        offsets = []
        for key, value, ts in records:
            meta = await producer.send_and_wait(topic, value, key=key, timestamp_ms=ts)
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


async def read_from_earliest(broker: Broker, topic: str) -> tuple[int, list[Read]]:
    """(beginning offset, [(offset, key, value)]) up to the end offset, with aiokafka."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        check_crcs=True,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        beginning = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        out: list[Read] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                out.extend((r.offset, r.key, r.value) for r in batch.get(tp, []))
        return beginning, out
    finally:
        await consumer.stop()


async def test_compacted_topic_read_back_by_aiokafka(broker: Broker, clock: FakeClock) -> None:
    await create_topic(
        broker,
        "latest",
        {"cleanup.policy": "compact", "segment.bytes": "600", "delete.retention.ms": "1000"},
    )
    records: list[tuple[bytes, bytes | None, int | None]] = [
        (key, b"%s-v%d" % (key, version), None)
        for version in range(30)
        for key in (b"k0", b"k1", b"k2")
    ]
    records.append((b"k1", None, None))  # tombstone
    offsets = await produce(broker, "latest", records)
    assert offsets == list(range(91))
    log = broker.logs.partition("latest", 0)
    assert len(log.segments) > 3
    # the tombstone's segment is closed (the cleaner never touches the active one); the
    # active segment holds a newer record, as it always does when segments roll on append
    log.roll()
    assert await produce(broker, "latest", [(b"tail", b"t", None)]) == [91]
    clock.advance(5)  # every record is older than now (min.compaction.lag.ms = 0)

    await broker.logs.clean()
    beginning, got = await read_from_earliest(broker, "latest")
    # the newest record per key at its original offset; the tombstone is still there
    assert beginning == 0
    assert got == [
        (87, b"k0", b"k0-v29"),
        (89, b"k2", b"k2-v29"),
        (90, b"k1", None),
        (91, b"tail", b"t"),
    ]
    assert log.high_watermark == 92

    clock.advance(0.5)  # not yet delete.retention.ms after the pass that kept it
    await broker.logs.clean()
    assert (await read_from_earliest(broker, "latest"))[1][2] == (90, b"k1", None)

    clock.advance(1)  # now past it: the tombstone goes, the offsets do not move
    await broker.logs.clean()
    beginning, got = await read_from_earliest(broker, "latest")
    assert beginning == 0
    assert got == [(87, b"k0", b"k0-v29"), (89, b"k2", b"k2-v29"), (91, b"tail", b"t")]
    assert log.high_watermark == 92

    # new writes continue after the old end offset
    assert await produce(broker, "latest", [(b"k1", b"k1-again", None)]) == [92]
    _, got = await read_from_earliest(broker, "latest")
    assert got[-1] == (92, b"k1", b"k1-again")


async def test_compact_delete_gets_compaction_and_time_retention(
    broker: Broker, clock: FakeClock
) -> None:
    await create_topic(
        broker,
        "both",
        {
            "cleanup.policy": "compact,delete",
            "retention.ms": "60000",
            "segment.bytes": "300",
            "delete.retention.ms": "1000",
        },
    )
    log = broker.logs.partition("both", 0)
    old_ts = clock.ms - 120_000
    old = [(k, b"%s-old%d" % (k, i), old_ts) for i in range(4) for k in (b"a", b"b")]
    assert await produce(broker, "both", old) == list(range(8))
    log.roll()  # the old records alone in their segments
    new_ts = clock.ms
    new = [
        (b"a", b"a-new0", new_ts),
        (b"c", b"c-new0", new_ts),
        (b"a", b"a-new1", new_ts),
        (b"c", b"c-new1", new_ts),
        (b"b", b"b-new0", new_ts),
    ]
    assert await produce(broker, "both", new) == list(range(8, 13))
    log.roll()
    clock.advance(1)

    # retention: every segment whose newest record is older than retention.ms goes
    assert broker.logs.enforce_retention() > 0
    assert log.log_start_offset == 8
    # compaction of what is left: the newest record per key, offsets kept
    await broker.logs.clean()
    beginning, got = await read_from_earliest(broker, "both")
    assert beginning == 8
    assert got == [(10, b"a", b"a-new1"), (11, b"c", b"c-new1"), (12, b"b", b"b-new0")]

    # later, time retention removes the compacted records too
    clock.advance(120)
    assert broker.logs.enforce_retention() > 0
    beginning, got = await read_from_earliest(broker, "both")
    assert (beginning, got) == (13, [])
    assert log.log_start_offset == log.high_watermark == 13
