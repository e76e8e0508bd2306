"""The producer batcher (the gateway's produce path) against the embedded broker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from backbone.batcher import ProducerBatcher, murmur2
from backbone.broker import Broker, BrokerConfig
from backbone.events import Encoded
from backbone.testing import consume

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def bootstrap(tmp_path: Path) -> AsyncIterator[str]:
    async with Broker(BrokerConfig(data_dir=tmp_path / "data", port=0)) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("b", 3, 1), NewTopic("other", 1, 1)])
        finally:
            await admin.close()
        yield str(broker.bootstrap)


async def producer(bootstrap: str, **options: object) -> AIOKafkaProducer:
    started = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options
    )
    await started.start()
    return started


def record(n: int, *, topic: str = "b", size: int = 0) -> Encoded:
    value = f'{{"n": {n}, "pad": "{"x" * size}"}}'.encode()
    return Encoded(topic, f"key-{n % 5}".encode(), value, [("h", str(n).encode())], 1_000 + n)


async def test_one_future_per_record_and_partitions_as_send_chooses(bootstrap: str) -> None:
    sender = await producer(bootstrap)
    try:
        records = [record(n) for n in range(40)] + [record(99, topic="other")]
        # 5 keys, 3 remembered hashes: hits, misses and a cache emptied when full
        futures = await ProducerBatcher(sender, hash_cache=3).produce(records)
        assert len(futures) == len(records)
        metadata = await asyncio.gather(*futures)
    finally:
        await sender.stop()
    # records of one batch share its future: 3 partitions of "b" + "other"
    assert len({id(future) for future in futures}) == 4
    assert {m.topic for m in metadata} == {"b", "other"}
    got = await consume(bootstrap, "b", count=40)
    choose = DefaultPartitioner()
    for message in got:
        assert message.partition == choose(message.key, [0, 1, 2], [0, 1, 2])
        assert dict(message.headers)["h"] == message.value.split(b",")[0][6:]
    by_partition: dict[int, list[int]] = {}
    for message in got:
        by_partition.setdefault(message.partition, []).append(int(dict(message.headers)["h"]))
    for numbers in by_partition.values():
        assert numbers == sorted(numbers)  # order kept within a partition
    assert sorted(n for numbers in by_partition.values() for n in numbers) == list(range(40))
    assert {message.timestamp for message in got} == {1_000 + n for n in range(40)}


async def test_full_batches_are_submitted_and_big_records_go_alone(bootstrap: str) -> None:
    sender = await producer(bootstrap, max_batch_size=2048)
    try:
        small = [record(n, size=300) for n in range(30)]
        big = record(100, size=10_000)
        futures = await ProducerBatcher(sender, big_record=8192).produce([*small, big])
        await asyncio.gather(*futures)
    finally:
        await sender.stop()
    assert len({id(future) for future in futures[:30]}) > 3  # several batches per partition
    got = await consume(bootstrap, "b", count=31)
    assert sorted(int(dict(m.headers)["h"]) for m in got) == [*range(30), 100]
    assert max(len(m.value) for m in got) > 10_000


async def test_records_produced_while_unacknowledged_are_staged_and_sent_together(
    bootstrap: str,
) -> None:
    """Reads arriving while the first batches wait for their acks share one batch per
    partition (sent at the last ack), even when a staged batch fills up or a big record
    comes; every record arrives once, in order within its partition."""
    sender = await producer(bootstrap, max_batch_size=2048)
    batcher = ProducerBatcher(sender, big_record=8192)
    try:
        first = await batcher.produce([record(n) for n in range(3)])
        # no await in between: the first batches cannot be acknowledged yet
        later = [await batcher.produce([record(n)]) for n in range(3, 30)]
        stuffed = await batcher.produce([record(n, size=300) for n in range(30, 45)])
        big = await batcher.produce([record(45, size=10_000), record(46)])
        futures = [*first, *(f for fs in later for f in fs), *stuffed, *big]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await sender.stop()
    # 27 one-record reads staged into one batch per partition, not 27 batches
    assert len({id(f) for fs in later for f in fs}) == 3
    assert not {id(f) for f in first} & {id(f) for fs in later for f in fs}
    got = await consume(bootstrap, "b", count=47)
    numbers = [int(dict(m.headers)["h"]) for m in got]
    assert sorted(numbers) == list(range(47))
    by_partition: dict[int, list[int]] = {}
    for message in got:
        by_partition.setdefault(message.partition, []).append(int(dict(message.headers)["h"]))
    for partition_numbers in by_partition.values():
        assert partition_numbers == sorted(partition_numbers)  # order kept within a partition


async def test_nothing_to_send(bootstrap: str) -> None:
    sender = await producer(bootstrap)
    try:
        assert await ProducerBatcher(sender).produce([]) == []
    finally:
        await sender.stop()


def test_murmur2_is_kafkas() -> None:
    """The batcher's murmur2 gives aiokafka's (= Java's) hash for every length and tail."""
    rng = random.Random(7)
    samples = [b"", b"a", b"ab", b"abc", b"abcd", b"\xff" * 7, b'{"id":123456}', b"x" * 300]
    samples += [rng.randbytes(size) for size in range(300) for _ in range(3)]
    for data in samples:
        assert murmur2(data) == aiokafka_murmur2(data), data
    # Kafka's own test vectors (UtilsTest.testMurmur2), as signed 32-bit Java ints
    java = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in java.items():
        assert murmur2(data) == expected & 0xFFFFFFFF, data
