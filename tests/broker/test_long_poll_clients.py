"""Long polling is answered on append, not early and not at max_wait, with every real client.

Each consumer fetches an empty partition with a max wait of 30 s. The test waits until
the broker has that fetch parked on the partition (the partition log has a watcher),
then records when the broker writes Fetch responses (its response filter), produces one
record and requires: exactly one Fetch response was written between the fetch parking
and the record's delivery, after the produce (a broker answering the empty fetch early
writes one more), and within 10 s of the produce (a broker answering only at max_wait
would deliver it about 30 s after the fetch was sent). ``test_clients_*.py`` check that
each fetch of an empty partition is held for its whole max wait.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from backbone.broker import Broker
from tests.broker.long_poll import FetchResponses, fetch_parked

pytestmark = pytest.mark.timeout(90)

MAX_WAIT_MS = 30_000
DELIVERY_BOUND_S = 10.0


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {"quiet": 1}


async def produce_one(broker: Broker) -> float:
    """Produce b"wake up" (key b"k") with aiokafka, acks=all; returns the time before sending."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        started = time.monotonic()
        meta = await producer.send_and_wait("quiet", b"wake up", key=b"k")
    finally:
        await producer.stop()
    assert meta.offset == 0
    return started


async def check_answered_on_append(broker: Broker, waiting: asyncio.Future[Any]) -> Any:
    await fetch_parked(broker, "quiet", waiting)
    fetches = FetchResponses().install(broker)
    produced = await produce_one(broker)
    result = await asyncio.wait_for(asyncio.shield(waiting), DELIVERY_BOUND_S + 5)
    # one Fetch response since the fetch parked: the parked fetch itself, carrying the record
    assert len(fetches.times) == 1, f"{len(fetches.times)} Fetch responses since it parked"
    answered = fetches.times[0]
    assert answered >= produced, "the parked fetch was answered before the produce"
    assert answered - produced < DELIVERY_BOUND_S, f"answered {answered - produced:.1f} s late"
    return result


async def in_thread(func: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func), 60)


async def test_aiokafka(broker: Broker) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=MAX_WAIT_MS,
        request_timeout_ms=MAX_WAIT_MS + 10_000,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition("quiet", 0)])
        waiting = asyncio.ensure_future(consumer.getone())
        try:
            record = await check_answered_on_append(broker, waiting)
        finally:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        assert (record.offset, record.key, record.value) == (0, b"k", b"wake up")
    finally:
        await consumer.stop()


async def test_kafka_python(broker: Broker) -> None:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    def wait_for_one() -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=MAX_WAIT_MS,
            request_timeout_ms=MAX_WAIT_MS + 10_000,
        )
        try:
            consumer.assign([KTopicPartition("quiet", 0)])
            deadline = time.monotonic() + 50
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200).values():
                    return records[0]
            return None
        finally:
            consumer.close()

    waiting = asyncio.ensure_future(in_thread(wait_for_one))
    try:
        record = await check_answered_on_append(broker, waiting)
    finally:
        await asyncio.gather(waiting, return_exceptions=True)
    assert (record.offset, record.key, record.value) == (0, b"k", b"wake up")


async def test_confluent(broker: Broker) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    def wait_for_one() -> Any:
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "unused",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": MAX_WAIT_MS,
            }
        )
        try:
            consumer.assign([CTopicPartition("quiet", 0, 0)])
            deadline = time.monotonic() + 50
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None:
                    assert msg.error() is None, msg.error()
                    return msg
            return None
        finally:
            consumer.close()

    waiting = asyncio.ensure_future(in_thread(wait_for_one))
    try:
        msg = await check_answered_on_append(broker, waiting)
    finally:
        await asyncio.gather(waiting, return_exceptions=True)
    assert (msg.offset(), msg.key(), msg.value()) == (0, b"k", b"wake up")


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
async def test_kcat(broker: Broker) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kcat",
        "-b",
        broker.bootstrap,
        "-C",
        "-t",
        "quiet",
        "-o",
        "beginning",
        "-c",
        "1",
        "-J",
        "-X",
        f"fetch.wait.max.ms={MAX_WAIT_MS}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    waiting = asyncio.ensure_future(proc.communicate())
    try:
        out, err = await check_answered_on_append(broker, waiting)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.gather(waiting, return_exceptions=True)
    assert proc.returncode == 0, err.decode()
    record = json.loads(out.decode().splitlines()[0])
    assert (record["offset"], record["key"], record["payload"]) == (0, "k", "wake up")
