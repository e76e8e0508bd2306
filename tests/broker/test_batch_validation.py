"""Batches with a valid CRC but bad contents are refused with nothing stored (Kafka's
LogValidator rules), and the good records around them stay readable by real clients.

Each crafted batch (``tests.broker.crafted``) goes in a raw Produce v9 request; the
answer must be CORRUPT_MESSAGE (2), INVALID_RECORD (87) or INVALID_TIMESTAMP (32) with a
message naming the problem, the partition's end offset must not move, and
confluent-kafka and aiokafka must then read exactly the good records, at consecutive
offsets. The same refusals come from a broker process running the pure-Python walk.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from backbone.broker import Broker
from tests.broker.crafted import BASE_TS, batch, good, header, record
from tests.broker.test_clients_confluent import blocking, consume
from tests.broker.test_server import call
from tests.broker.test_wire_behaviour import produce_request
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.timeout(90)

T = "checked"

CORRUPT_MESSAGE, INVALID_TIMESTAMP, INVALID_RECORD = 2, 32, 87
TWO = record(0, b"a") + record(1, b"b")

# (id, batch, error code, error message)
BAD: list[tuple[str, bytes, int, str]] = [
    (
        "fewer records than recordsCount",
        batch(TWO, 3),
        INVALID_RECORD,
        "record batch 0: the batch declares 3 records but holds only 2",
    ),
    (
        "more records than recordsCount",
        batch(TWO + record(2, b"c"), 2),
        INVALID_RECORD,
        f"record batch 0: {len(record(2, b'c'))} bytes follow the last of the batch's 2 records",
    ),
    (
        "recordsCount against lastOffsetDelta",
        batch(TWO, 2, last_offset_delta=4),
        INVALID_RECORD,
        "record batch 0 holds 2 records but its lastOffsetDelta is 4",
    ),
    (
        "two records at one offset delta",
        batch(record(0, b"a") + record(0, b"b"), 2),
        INVALID_RECORD,
        "record batch 0: record 1 has offset delta 0; it must be 1",
    ),
    (
        "2^31 headers",
        batch(record(0, header_count=2**31), 1),
        INVALID_RECORD,
        "record batch 0: record 0: a varint does not fit 32 bits (a varlong 64 bits)",
    ),
    (
        "2^31 - 1 headers",
        batch(record(0, header_count=2**31 - 1, headers=header(b"h", b"v")), 1),
        INVALID_RECORD,
        "record batch 0: record 0: 2147483647 headers cannot fit the 4 bytes left in the record",
    ),
    (
        "2^30-byte key",
        batch(record(0, key=b"k", key_length=2**30), 1),
        INVALID_RECORD,
        "record batch 0: record 0: key length 1073741824 does not fit the 4 bytes left in the "
        "record",
    ),
    (
        "record longer than the batch",
        batch(record(0, length=1000), 1),
        INVALID_RECORD,
        "record batch 0: record 0: its length 1000 does not fit the 8 bytes left in the batch",
    ),
    (
        "gzip payload that does not decompress",
        batch(b"\x1f\x8b\x08\x00" + b"not gzip at all", 1, codec=1, compress_section=False),
        CORRUPT_MESSAGE,
        "record batch 0: gzip data does not decompress: ",
    ),
    (
        "zstd payload that does not decompress",
        batch(b"\x28\xb5\x2f\xfd garbage", 1, codec=4, compress_section=False),
        CORRUPT_MESSAGE,
        "record batch 0: zstd data does not decompress: ",
    ),
    (
        "unknown codec id 7",
        batch(record(0), 1, codec=7, compress_section=False),
        CORRUPT_MESSAGE,
        "record batch 0 uses compression codec id 7, which does not exist (known: 0 none, "
        "1 gzip, 2 snappy, 3 lz4, 4 zstd)",
    ),
    (
        "gzip batch with a bad record inside",
        batch(record(0) + record(5), 2, codec=1),
        INVALID_RECORD,
        "record batch 0: record 1 has offset delta 5; it must be 1",
    ),
    (
        "lz4 batch declaring more records than it holds",
        batch(TWO, 5, codec=3),
        INVALID_RECORD,
        "record batch 0: the batch declares 5 records but holds only 2",
    ),
    (
        "idempotent batch without a base sequence",
        batch(TWO, 2, producer_id=7, base_sequence=-1),
        INVALID_RECORD,
        "record batch 0 has producer id 7 but no base sequence (-1)",
    ),
    (
        "a good batch followed by a bad one in one request",
        good([b"lost"]) + batch(TWO, 3),
        INVALID_RECORD,
        "record batch 1: the batch declares 3 records but holds only 2",
    ),
]


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {T: 1}


async def produce_raw(port: int, data: bytes, topic: str = T) -> Any:
    response = await call(port, produce_request(topic, 0, data), 9)
    [answer] = response.responses[0].partition_responses
    return answer


@pytest.mark.parametrize(
    ("data", "code", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
async def test_a_bad_batch_is_refused_and_nothing_is_stored(
    broker: Broker, data: bytes, code: int, message: str
) -> None:
    before = await produce_raw(broker.port, good([b"before"]))
    assert before.error_code == 0
    answer = await produce_raw(broker.port, data)
    assert (answer.error_code, answer.base_offset) == (code, -1)
    assert answer.error_message.startswith(message), answer.error_message
    if message.endswith(": "):
        assert len(answer.error_message) > len(message)  # the codec's own reason follows
    assert broker.logs.partition(T, 0).high_watermark == 1
    after = await produce_raw(broker.port, good([b"after"]))
    assert (after.error_code, after.base_offset) == (0, 1)


def test_every_codec_decompresses_and_is_checked() -> None:
    """The crafted compressed batches really are compressed (the cases above test the
    walk behind each codec, not a stored-as-is payload)."""
    assert gzip.decompress(batch(TWO, 2, codec=1)[61:]) == TWO


async def test_good_records_around_refused_batches_are_read_by_real_clients(
    broker: Broker,
) -> None:
    expected = []
    for i, (_, data, code, _) in enumerate(BAD):
        values = [b"good-%d-a" % i, b"good-%d-b" % i]
        codec = [0, 1, 2, 3, 4][i % 5]
        answer = await produce_raw(broker.port, good(values, codec=codec))
        assert answer.error_code == 0
        expected += values
        assert (await produce_raw(broker.port, data)).error_code == code
    assert broker.logs.partition(T, 0).high_watermark == len(expected)

    messages = await blocking(consume, broker.bootstrap, T, len(expected))
    assert [m.value() for m in messages] == expected
    assert [m.offset() for m in messages] == list(range(len(expected)))

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(T, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got: list[Any] = []
        async with asyncio.timeout(30):
            while len(got) < len(expected):
                batches = await consumer.getmany(tp, timeout_ms=500)
                got += batches.get(tp, [])
    finally:
        await consumer.stop()
    assert [m.value for m in got] == expected
    assert [m.offset for m in got] == list(range(len(expected)))


async def test_timestamps_outside_the_topic_limits_are_refused(broker: Broker) -> None:
    await broker.logs.create_topic("timed", 1, {"message.timestamp.after.max.ms": "3600000"})
    now_ms = int(broker.clock() * 1000)
    future = good([b"a", b"b"], base_timestamp=now_ms, timestamp_deltas=[0, 7_200_000])
    answer = await produce_raw(broker.port, future, "timed")
    assert answer.error_code == INVALID_TIMESTAMP
    assert answer.error_message.startswith(
        f"Timestamp {now_ms + 7_200_000} of a record in timed-0 is out of range"
    )
    ok = good([b"a"], base_timestamp=now_ms)
    assert (await produce_raw(broker.port, ok, "timed")).error_code == 0
    assert broker.logs.partition("timed", 0).high_watermark == 1


async def test_the_pure_python_walk_refuses_the_same_batches(tmp_path: Path) -> None:
    """A broker process with BACKBONE_NO_EXTENSIONS=1 uses records.scan_py end to end."""
    port = free_port()
    env = {**os.environ, "BACKBONE_NO_EXTENSIONS": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backbone.broker", "--listen", f"127.0.0.1:{port}",
        "--data-dir", str(tmp_path),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_port, port, timeout=30)
        assert (await produce_raw(port, good([b"ok"]))).error_code == 0  # auto-created
        for _, data, code, message in BAD:
            answer = await produce_raw(port, data)
            assert (answer.error_code, answer.error_message[: len(message)]) == (code, message)
        assert (await produce_raw(port, good([b"ok", b"again"]))).base_offset == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "records checked by the pure-Python walk" in err.decode()


async def test_a_record_stream_of_every_shape_is_accepted(broker: Broker) -> None:
    """Null keys and values, empty ones, headers with null values, negative timestamp
    deltas: valid records the walk must not refuse."""
    section = (
        record(0, None, key=None, timestamp_delta=5)
        + record(1, b"", key=b"", headers=header(b"h", None))
        + record(2, b"v", key=b"k", timestamp_delta=-5, header_count=2,
                 headers=header(b"a", b"1") + header(b"", b""))
    )  # fmt: skip
    answer = await produce_raw(broker.port, batch(section, 3, max_timestamp=BASE_TS + 5))
    assert (answer.error_code, answer.base_offset) == (0, 0)
    [_, _, third] = await blocking(consume, broker.bootstrap, T, 3)
    assert third.headers() == [("a", b"1"), ("", b"")]
