"""A v2 batch whose header max timestamp is -1 (Sarama 1.22) or otherwise inconsistent
with its records: the broker stores the largest record timestamp, as Kafka does, so
ListOffsets by time, ListOffsets -3 (MAX_TIMESTAMP) and time-based retention work."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backbone.broker import Broker
from tests.broker.crafted import good
from tests.broker.test_log_support import FakeClock, decode, read_bytes
from tests.broker.test_server import call
from tests.broker.test_wire_behaviour import list_offsets, produce

pytestmark = pytest.mark.timeout(60)

HOUR_MS = 3_600_000
CLOCK = FakeClock()
NOW = CLOCK.ms


@pytest.fixture
def broker_clock() -> Callable[[], float]:
    return FakeClock(CLOCK.now)


def sarama(values: list[bytes], base: int, deltas: list[int], max_timestamp: int = -1) -> bytes:
    """A batch as Sarama 1.22 writes it: header max timestamp -1, real record times."""
    return good(values, base_timestamp=base, timestamp_deltas=deltas, max_timestamp=max_timestamp)


async def offset_for(broker: Broker, topic: str, timestamp: int) -> tuple[int, int, int]:
    response = await call(broker.port, list_offsets(topic, timestamp), 7)
    answer = response.topics[0].partitions[0]
    return answer.error_code, answer.offset, answer.timestamp


async def test_list_offsets_by_time_on_batches_with_max_timestamp_minus_one(
    broker: Broker,
) -> None:
    await broker.logs.create_topic("sarama", 1)
    old = NOW - 2 * HOUR_MS
    await produce(broker.port, "sarama", 0, sarama([b"a", b"b", b"c"], old, [0, 500, 200]))
    await produce(broker.port, "sarama", 0, sarama([b"d", b"e"], NOW, [0, 100]))
    # a header that lies the other way (larger than any record) is corrected too
    await produce(broker.port, "sarama", 0, sarama([b"f"], NOW + 1000, [0], NOW + 10**9))

    assert await offset_for(broker, "sarama", old + 300) == (0, 1, old + 500)
    assert await offset_for(broker, "sarama", old + 501) == (0, 3, NOW)
    assert await offset_for(broker, "sarama", NOW + 50) == (0, 4, NOW + 100)
    assert await offset_for(broker, "sarama", NOW + 1001) == (0, -1, -1)
    assert await offset_for(broker, "sarama", -3) == (0, 5, NOW + 1000)

    log = broker.logs.partition("sarama", 0)
    stored = [batch.max_timestamp for batch, _ in decode(read_bytes(log, 0))]
    assert stored == [old + 500, NOW + 100, NOW + 1000]  # decode() checked every CRC


async def test_time_based_retention_uses_the_record_timestamps(broker: Broker) -> None:
    await broker.logs.create_topic("aging", 1, {"retention.ms": str(HOUR_MS)})
    log = broker.logs.partition("aging", 0)
    await produce(broker.port, "aging", 0, sarama([b"old"], NOW - 3 * HOUR_MS, [0]))
    log.roll()
    await produce(broker.port, "aging", 0, sarama([b"new"], NOW, [0]))
    assert broker.logs.enforce_retention() == 1
    assert (log.log_start_offset, log.high_watermark) == (1, 2)
