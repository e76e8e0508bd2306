"""Committed offsets survive a SIGKILL of the broker process (issue 4).

``python -m backbone.broker`` runs as a subprocess (``broker_process`` from
test_crash). confluent-kafka commits from a subscribed group member with
``commit(asynchronous=False)`` and kafka-python commits with metadata from an
assigned (simple) consumer; the broker is SIGKILLed right after the commits are
acknowledged (the confluent member is still in its group), restarted on the same data
directory, and fresh consumers of both groups read back exactly what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.broker.test_crash import broker_process
from tests.servers import free_port

pytestmark = pytest.mark.timeout(120)

TOPIC = "crash-offsets"
CONFLUENT_GROUP = "crash-confluent"
KAFKA_PYTHON_GROUP = "crash-kafka-python"
CONFLUENT_COMMITS = {0: 4, 1: 7, 2: 10}
KAFKA_PYTHON_COMMITS = {0: (3, "m0"), 1: (0, ""), 2: (9, "last one")}


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func, *args), 60)


async def produce(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send(TOPIC, b"v%d" % i, partition=i % 3)
        await producer.flush()
    finally:
        await producer.stop()


def create_topic(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
    futures[TOPIC].result(10)


def confluent_commit(bootstrap: str) -> Any:
    """A subscribed member of CONFLUENT_GROUP that commits synchronously; returned open."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": CONFLUENT_GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([TOPIC])
    deadline = time.monotonic() + 30
    while len(consumer.assignment()) < 3:
        assert time.monotonic() < deadline, "no assignment"
        consumer.poll(0.1)
    committed = consumer.commit(
        offsets=[TopicPartition(TOPIC, p, o) for p, o in CONFLUENT_COMMITS.items()],
        asynchronous=False,
    )
    assert [(tp.partition, tp.offset, tp.error) for tp in committed] == [
        (p, o, None) for p, o in CONFLUENT_COMMITS.items()
    ]
    return consumer


def kafka_python_commit(bootstrap: str) -> None:
    """An assigned consumer of KAFKA_PYTHON_GROUP commits offsets with metadata, then closes
    (a kafka-python consumer closed after the broker died can leak a socket)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=KAFKA_PYTHON_GROUP, enable_auto_commit=False
    )
    partitions = [TopicPartition(TOPIC, p) for p in KAFKA_PYTHON_COMMITS]
    try:
        consumer.assign(partitions)
        consumer.commit(
            {
                TopicPartition(TOPIC, p): OffsetAndMetadata(offset, metadata, -1)
                for p, (offset, metadata) in KAFKA_PYTHON_COMMITS.items()
            }
        )
    finally:
        consumer.close()


def confluent_committed(bootstrap: str) -> list[tuple[int, int]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": CONFLUENT_GROUP})
    try:
        found = consumer.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=10)
        assert all(tp.error is None for tp in found), found
        return [(tp.partition, tp.offset) for tp in found]
    finally:
        consumer.close()


def kafka_python_committed(bootstrap: str) -> dict[int, tuple[int, str]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=KAFKA_PYTHON_GROUP, enable_auto_commit=False
    )
    try:
        found = {
            p: consumer.committed(TopicPartition(TOPIC, p), metadata=True, timeout_ms=10_000)
            for p in range(3)
        }
    finally:
        consumer.close()
    return {p: (meta.offset, meta.metadata) for p, meta in found.items()}


def close_quietly(consumer: Any) -> None:
    with contextlib.suppress(Exception):
        consumer.close()


async def test_committed_offsets_survive_sigkill(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "broker.log"
    port = free_port()
    consumers: list[Any] = []
    try:
        with broker_process(data_dir, port, log) as proc:
            bootstrap = f"127.0.0.1:{port}"
            await in_thread(create_topic, bootstrap)
            await produce(bootstrap)
            await in_thread(kafka_python_commit, bootstrap)
            consumers.append(await in_thread(confluent_commit, bootstrap))
            # the commits were acknowledged: kill at once, the confluent member still joined
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
    finally:
        # bounded: librdkafka gives up on the unreachable coordinator
        await asyncio.gather(
            *(asyncio.wait_for(asyncio.to_thread(close_quietly, c), 60) for c in consumers),
            return_exceptions=True,
        )
    port = free_port()
    with broker_process(data_dir, port, log):
        bootstrap = f"127.0.0.1:{port}"
        assert await in_thread(confluent_committed, bootstrap) == list(CONFLUENT_COMMITS.items())
        assert await in_thread(kafka_python_committed, bootstrap) == KAFKA_PYTHON_COMMITS
