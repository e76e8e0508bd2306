"""Saved source positions: damaged records in ``_backbone.positions`` are skipped, not fatal.

Real Tansu broker, real aiokafka; the runner resumes a generator from the last
readable position when later records of the topic cannot be read.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from backbone.positions import POSITIONS_TOPIC, PositionStore
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running
from tests.servers import Tansu, run_tansu

pytestmark = [pytest.mark.timeout(90), pytest.mark.tansu]

DAMAGED: list[tuple[bytes | None, bytes | None]] = [
    (None, b'{"position": 99}'),  # no key
    (b"\xff\xfe", b'{"position": 99}'),  # key not UTF-8
    (b"NAME", b"not json"),
    (b"NAME", b'{"offset": 99}'),  # JSON without "position"
    (b"NAME", b"[1, 2]"),  # JSON, not an object
]


async def _append(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def _damaged(name: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(k.replace(b"NAME", name.encode()) if k else k, v) for k, v in DAMAGED]


async def test_load_skips_damaged_records_and_keeps_the_earlier_value(
    tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"positions.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:  # one partition, like the runner's: offsets below follow the append order
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    good = [
        (b"a", b'{"position": 1}'),
        (b"b", b'{"position": {"offset": 7}}'),
        (b"c", b'{"position": 3}'),
        (b"c", None),  # tombstone: c has no position any more
    ]
    await _append(tansu.bootstrap, topic, good + _damaged("a") + [(b"b", b'{"position": 8}')])
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="backbone.positions"):
            positions = await PositionStore(producer, tansu.bootstrap, topic).load()
    finally:
        await producer.stop()
    assert positions == {"a": 1, "b": 8}
    messages = [r.getMessage() for r in caplog.records if r.name == "backbone.positions"]
    assert len(messages) == len(DAMAGED)
    assert messages[0] == f"skipping a record without a key in {topic}[0]@4"
    assert messages[1] == f"skipping a record whose key is not UTF-8 in {topic}[0]@5"
    assert messages[2].startswith(f"skipping the unreadable position of 'a' in {topic}[0]@6 (")
    assert "KeyError" in messages[3] and "resumes from its previous position" in messages[3]


async def test_runner_resumes_from_the_last_readable_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a Tansu of its own: the damaged records it writes to _backbone.positions must not
    # reach the gateways other tests run on the shared one
    with run_tansu() as tansu:
        await _resumes_from_the_last_readable_position(tansu, tmp_path, caplog)


async def _resumes_from_the_last_readable_position(
    tansu: Tansu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, topic = f"gen-{uuid.uuid4().hex[:8]}", f"t.{uuid.uuid4().hex[:8]}"
    text = (
        broker_yaml("tansu", tansu=tansu)
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: generator, topic: {topic}, rate: 1000, count: COUNT}}
"""
    )
    config = tmp_path / "positions.yaml"
    config.write_text(text.replace("COUNT", "20"))
    async with running(config):
        await consume(tansu.bootstrap, topic, count=20)
    await _append(tansu.bootstrap, POSITIONS_TOPIC, _damaged(name))
    config.write_text(text.replace("COUNT", "30"))
    with caplog.at_level(logging.ERROR, logger="backbone.positions"):
        async with running(config):
            records = await consume(tansu.bootstrap, topic, count=30)
    seqs = [json.loads(r.value)["seq"] for r in records]
    assert seqs == list(range(1, 31))  # resumed after 20: no gap, no repeat
    skipped = [r for r in caplog.records if r.name == "backbone.positions"]
    assert any(f"position of '{name}'" in r.getMessage() for r in skipped)
