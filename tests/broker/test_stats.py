"""The broker's request statistics: every answered request counted once, by API."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer

from backbone.broker import Broker, BrokerConfig
from backbone.broker.stats import BUCKETS, RequestStats


def test_record_fills_one_bucket_and_the_totals() -> None:
    stats = RequestStats({0: "Produce"})
    stats.record(0, 100, 20, 0.0001)
    stats.record(0, 50, 10, 0.003)
    stats.record(7, 1, 2, 99.0)
    found = stats.by_api()
    produce = found["Produce"]
    assert (produce.requests, produce.bytes_in, produce.bytes_out) == (2, 150, 30)
    assert produce.histogram[0] == 1 and produce.histogram[BUCKETS.index(0.005)] == 1
    assert sum(produce.histogram) == 2 and abs(produce.seconds - 0.0031) < 1e-9
    assert found["api-7"].histogram[-1] == 1  # beyond the last bound: +Inf


async def test_requests_of_a_real_client_are_counted(tmp_path: Path) -> None:
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(5):
                await producer.send_and_wait("counted", str(n).encode() * 100)
        finally:
            await producer.stop()
        assert broker.stats is not None
        found = broker.stats.by_api()
    assert found["Produce"].requests == 5
    assert found["Produce"].bytes_in > 5 * 100  # five frames, each with a 100-byte value
    assert found["Produce"].bytes_out > 0
    assert sum(found["Produce"].histogram) == 5
    assert found["ApiVersions"].requests >= 1 and found["Metadata"].requests >= 1
