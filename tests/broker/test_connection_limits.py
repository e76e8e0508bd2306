"""Hostile connections on raw sockets: announced frame sizes, the memory pool, slow senders,
connection caps.

Each test drives a real broker on a loopback port with hand-built frames and checks what
can be observed from outside (responses, EOF, log lines) and the server's accounting
(``broker.server.pool``, ``broker.server.connections``). Nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from backbone.broker import Broker, BrokerConfig
from tests.broker.test_server import Raw, api_versions_request, assert_serves, frame, header_v1

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024


async def until(condition: Callable[[], bool], what: str, wait: float = 20.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    try:
        async with asyncio.timeout(wait):
            while not condition():  # noqa: ASYNC110 - polls the server's accounting
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"after {wait}s: {what}") from None


def rss_bytes() -> int:
    """Resident memory of this process (the broker runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def connect_from(port: int, source: str) -> Raw:
    """A raw connection to the broker (127.0.0.1) from the loopback address ``source``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return Raw(reader, writer)


async def served(conn: Raw, correlation_id: int) -> bool:
    """True when the connection answers an ApiVersions request."""
    await conn.send(api_versions_request(1, correlation_id))
    return struct.unpack_from(">i", await conn.response())[0] == correlation_id


async def test_announced_frame_sizes_reserve_nothing_and_a_good_client_is_served(
    tmp_path: Path,
) -> None:
    """Ten connections announce 100 MiB Produce frames, send the request header and stall:
    the broker holds 64 KiB for each (not 100 MiB), and a real client produces and
    consumes meanwhile."""
    config = BrokerConfig(
        data_dir=tmp_path,
        port=0,
        max_frame_bytes=100 * MiB,
        queued_max_request_bytes=200 * MiB,
        request_read_timeout_s=300,  # the stalled frames stay for the whole test
    )
    async with Broker(config) as broker:
        pool = broker.server.pool
        before = rss_bytes()
        attackers = [await Raw.connect(broker.port) for _ in range(10)]
        try:
            for i, conn in enumerate(attackers):
                await conn.send(struct.pack(">i", 100 * MiB) + header_v1(0, 9, i, "attack"))
            await until(lambda: pool.used == 10 * 64 * 1024, f"pool holds {pool.used} bytes")
            assert rss_bytes() - before < 64 * MiB  # was about 1 GiB: 100 MiB per connection

            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            await producer.start()
            try:
                for i in range(20):
                    await producer.send_and_wait("good", b"v%d" % i, key=b"k")
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(
                "good", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                got: list[bytes] = []
                async with asyncio.timeout(30):
                    while len(got) < 20:
                        for records in (await consumer.getmany(timeout_ms=1000)).values():
                            got.extend(r.value for r in records if r.value is not None)
            finally:
                await consumer.stop()
            assert got == [b"v%d" % i for i in range(20)]

            # once the clients' connections are gone, the stalled frames hold only their piece
            await until(lambda: pool.used == 10 * 64 * 1024, f"pool holds {pool.used} bytes")
        finally:
            for conn in attackers:
                await conn.close()
        await until(lambda: broker.server.connection_count == 0, "connections still open")
        assert pool.used == 0


async def test_the_memory_pool_bounds_frames_being_read_and_every_frame_completes(
    tmp_path: Path,
) -> None:
    """Six clients send 1 MiB requests into a 2 MiB pool, first most of each frame: reading
    pauses at the limit (one frame, the oldest, may go on), then every request is
    answered once the rest arrives, and the pool is empty again. The pool never holds
    more than its capacity + one frame + one buffer piece (half a frame at most)."""
    capacity = 2 * MiB
    bound = capacity + MiB + MiB // 2
    config = BrokerConfig(
        data_dir=tmp_path, port=0, max_frame_bytes=MiB, queued_max_request_bytes=capacity
    )
    async with Broker(config) as broker:
        pool = broker.server.pool
        conns = [await Raw.connect(broker.port) for _ in range(6)]
        try:
            frames = [
                frame(header_v1(18, 0, 100 + i) + b"\x00" * (MiB - 4 - len(header_v1(18, 0, 0))))
                for i in range(6)
            ]
            cut = 7 * MiB // 8
            for conn, data in zip(conns, frames, strict=True):
                conn.writer.write(data[:cut])  # no drain: the broker stops reading
            await until(lambda: pool.exhausted, f"pool never exhausted (used {pool.used})")
            assert pool.used <= bound
            for conn, data in zip(conns, frames, strict=True):
                conn.writer.write(data[cut:])
            for i, conn in enumerate(conns):
                assert struct.unpack_from(">i", await conn.response(wait=30))[0] == 100 + i
            assert capacity <= pool.peak <= bound
            await until(lambda: pool.used == 0 and not pool.exhausted, f"pool holds {pool.used}")
            for conn in conns:
                assert await served(conn, 7)
        finally:
            for conn in conns:
                await conn.close()


@pytest.fixture
def broker_config(tmp_path: Path) -> BrokerConfig:
    return BrokerConfig(
        data_dir=tmp_path,
        port=0,
        request_read_timeout_s=1.0,
        max_connections=6,
        max_connections_per_ip=3,
    )


async def test_a_slow_sender_is_closed_at_the_request_deadline(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4,000-byte request sent a byte at a time (each byte used to restart the idle timer)
    is dropped once it took longer than request_read_timeout; a client sending small
    whole requests slowly is not."""
    slow, steady = await Raw.connect(broker.port), await Raw.connect(broker.port)
    request = frame(header_v1(18, 0, 1) + b"\x00" * 3987)  # 4,000 bytes

    async def drip() -> None:
        for byte in request:
            if slow.writer.is_closing():
                return
            slow.writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    try:
        with caplog.at_level(logging.WARNING, logger="backbone.broker"):
            for i in range(8):  # at least 1.6 s of whole requests, 0.2 s apart
                assert await served(steady, i)
                await asyncio.sleep(0.2)
            assert await slow.closed(wait=10)
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
    peer = f"127.0.0.1:{slow.writer.get_extra_info('sockname')[1]}"
    [warning] = [r.getMessage() for r in caplog.records if peer in r.getMessage()]
    assert warning.startswith(f"closing connection {peer}: a request of 4000 bytes did not ")
    assert "arrive within 1s of its first byte" in warning and "request_read_timeout" in warning
    assert await served(steady, 99)
    await steady.close()


async def test_a_request_size_sent_slowly_is_dropped_too(broker: Broker) -> None:
    """Even the 4-byte size prefix counts: two bytes of it and then nothing."""
    conn = await Raw.connect(broker.port)
    await conn.send(b"\x00\x00")
    assert await conn.closed(wait=10)
    await assert_serves(broker.port)


async def test_connections_over_the_caps_are_refused(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """max_connections_per_ip=3, max_connections=6: 127.0.0.1 and 127.0.0.2 (both loopback)
    get three each; a fourth from either, or any from 127.0.0.3, is closed at once."""
    counter = broker.server.connections
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        first = [await connect_from(broker.port, "127.0.0.1") for _ in range(3)]
        for i, conn in enumerate(first):
            assert await served(conn, i)
        extra = await connect_from(broker.port, "127.0.0.1")
        assert await extra.closed()
        second = [await connect_from(broker.port, "127.0.0.2") for _ in range(3)]
        for i, conn in enumerate(second):
            assert await served(conn, 10 + i)
        assert (counter.count("127.0.0.1"), counter.count("127.0.0.2"), counter.total) == (3, 3, 6)
        third = await connect_from(broker.port, "127.0.0.3")
        assert await third.closed()
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing")]
    assert len(refusals) == 2, refusals
    assert refusals[0].endswith(
        ": 3 connections from 127.0.0.1 are open (max_connections_per_ip is 3)"
    )
    assert refusals[1].startswith("refusing connection 127.0.0.3:")
    assert refusals[1].endswith(": 6 connections are open (max_connections is 6)")
    # a closed connection frees its place
    await first[0].close()
    await until(lambda: counter.count("127.0.0.1") == 2, "the closed connection is still counted")
    again = await connect_from(broker.port, "127.0.0.1")
    assert await served(again, 42)
    for conn in [*first[1:], *second, again]:
        assert await served(conn, 43)
        await conn.close()
    await until(lambda: counter.total == 0, f"{counter.total} connections still counted")
