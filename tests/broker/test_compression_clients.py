"""Every client, every codec, through the broker's own codecs (issue 9: cramjam).

The broker decompresses what producers send only where it must look at records: the key
check of compacted topics, compaction, timestamp lookups. Each client here produces
three versions of four keys to a compacted topic per codec (gzip, snappy, lz4, zstd) in
one batch; the broker checks the keys (decompressing the client's batch), the test rolls
the segment and runs one cleaner pass, which rewrites the batch with its four newest
records recompressed with the same codec; the same client then reads them back.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from aiokafka import AIOKafkaProducer

from backbone.broker import Broker
from tests.broker import test_clients_aiokafka as aiokafka_client
from tests.broker import test_clients_confluent as confluent_client
from tests.broker import test_clients_kafka_python as kafka_python_client
from tests.broker import test_clients_kcat as kcat_client
from tests.broker.stored_batches import CODEC_IDS
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(120)

CODECS = ["gzip", "snappy", "lz4", "zstd"]
KEYS = [f"k{i}" for i in range(4)]
VERSIONS = 3


def records(codec: str) -> list[tuple[str, str]]:
    """(key, value): every key in every version; the last version of each key survives."""
    return [(key, f"{codec}-{key}-v{v}-" + "x" * 100) for v in range(VERSIONS) for key in KEYS]


def survivors(codec: str) -> list[tuple[int, str, str]]:
    """(offset, key, value) a consumer reads after compaction."""
    first = (VERSIONS - 1) * len(KEYS)
    return [(first + i, key, value) for i, (key, value) in enumerate(records(codec)[first:])]


async def compacted_topics(broker: Broker) -> None:
    for codec in CODECS:
        await broker.logs.create_topic(codec, 1, {"cleanup.policy": "compact"})


async def clean(broker: Broker) -> None:
    """Roll every topic's active segment, run one cleaner pass, and check that it rewrote
    a batch in each topic's codec (fewer records than its offset span: recompressed)."""
    for codec in CODECS:
        broker.logs.partition(codec, 0).roll()
    assert await broker.logs.clean() == len(CODECS)
    for codec in CODECS:
        log = broker.logs.partition(codec, 0)
        headers = [h for s in log.segments for h in s.headers_from(0)]
        assert {h.compression for h in headers} == {CODEC_IDS[codec]}, headers
        assert any(h.records_count < h.last_offset_delta + 1 for h in headers), headers


async def test_aiokafka(broker: Broker) -> None:
    await compacted_topics(broker)
    for codec in CODECS:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=50
        )
        await producer.start()
        try:
            sent = [
                await producer.send(codec, value.encode(), key=key.encode())
                for key, value in records(codec)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
    await clean(broker)
    for codec in CODECS:
        read = await aiokafka_client.consume(broker.bootstrap, codec, len(KEYS))
        assert [(r.offset, r.key.decode(), r.value.decode()) for r in read] == survivors(codec)


async def test_confluent(broker: Broker) -> None:
    await compacted_topics(broker)
    for codec in CODECS:
        messages = [{"key": k.encode(), "value": v.encode()} for k, v in records(codec)]
        await confluent_client.blocking(
            lambda c=codec, m=messages: confluent_client.produce(
                broker.bootstrap, c, m, **{"compression.type": c, "linger.ms": 50}
            )
        )
    await clean(broker)
    for codec in CODECS:
        read = await confluent_client.blocking(
            confluent_client.consume, broker.bootstrap, codec, len(KEYS)
        )
        got = [(m.offset(), m.key().decode(), m.value().decode()) for m in read]
        assert got == survivors(codec)


async def test_kafka_python(broker: Broker) -> None:
    await compacted_topics(broker)
    for codec in CODECS:
        messages = [{"key": k.encode(), "value": v.encode()} for k, v in records(codec)]
        await kafka_python_client.blocking(
            lambda c=codec, m=messages: kafka_python_client.produce(
                broker.bootstrap, c, m, compression_type=c
            )
        )
    await clean(broker)
    for codec in CODECS:
        read = await kafka_python_client.blocking(
            lambda c=codec: kafka_python_client.consume(broker.bootstrap, c, len(KEYS))
        )
        assert [(r.offset, r.key.decode(), r.value.decode()) for r in read] == survivors(codec)


async def test_kcat(broker: Broker) -> None:
    if shutil.which("kcat") is None:  # fails in CI: `make test` installs it
        unavailable("kcat is not installed (make system-deps installs it)")
    await compacted_topics(broker)
    for codec in CODECS:
        lines = "".join(f"{k}:{v}\n" for k, v in records(codec)).encode()
        # linger.ms: all twelve records in one batch even on a busy machine (the check in
        # `clean` needs a batch that loses records); kcat flushes at the end of its input.
        argv = ["-b", broker.bootstrap, "-P", "-t", codec, "-K:", "-z", codec]
        await kcat_client.kcat(*argv, "-X", "linger.ms=500", stdin=lines)
    await clean(broker)
    for codec in CODECS:
        read = await kcat_client.broker_records(broker, codec)
        assert [(r["offset"], r["key"], r["payload"]) for r in read] == survivors(codec)
