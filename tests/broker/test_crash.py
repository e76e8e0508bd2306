"""The standalone broker process: SIGKILL mid-produce loses no acknowledged record.

``python -m backbone.broker`` runs as a subprocess; an aiokafka producer with
acks=all records every acknowledged (offset, value); the broker is killed with
SIGKILL while requests are in flight, restarted on the same data directory,
and every acknowledged record must be there, at its offset, with no corrupt
batch served (the consumer checks CRCs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.servers import broker_process, free_port

pytestmark = pytest.mark.timeout(120)


async def read_all(bootstrap: str, topic: str, partitions: int) -> dict[tuple[int, int], bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        check_crcs=True,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        seen: dict[tuple[int, int], bytes] = {}
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    for message in messages:
                        key = (tp.partition, message.offset)
                        assert key not in seen, f"offset {key} served twice"
                        seen[key] = message.value
        return seen
    finally:
        await consumer.stop()


async def test_sigkill_mid_produce_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "broker.log"
    port = free_port()
    acked: dict[tuple[int, int], bytes] = {}
    with broker_process(data_dir, port, log) as proc:
        producer = AIOKafkaProducer(
            bootstrap_servers=f"127.0.0.1:{port}",
            acks="all",
            linger_ms=2,
            request_timeout_ms=3000,
            retry_backoff_ms=100,
        )
        await producer.start()
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        await admin.start()
        await admin.create_topics([NewTopic("crash", num_partitions=2, replication_factor=1)])
        await admin.close()

        def record(value: bytes, fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is None:
                meta = fut.result()
                acked[(meta.partition, meta.offset)] = value

        sent = 0
        pending: set[asyncio.Future] = set()
        try:
            while len(acked) < 3000 and sent < 200_000:
                value = f"record-{sent:08d}-".encode() + b"x" * 80
                fut = await producer.send("crash", value, key=str(sent % 7).encode())
                fut.add_done_callback(lambda f, v=value: record(v, f))
                pending.add(fut)
                fut.add_done_callback(pending.discard)
                sent += 1
                if sent % 200 == 0:
                    await asyncio.sleep(0)
            # SIGKILL while the producer still has requests in flight
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if pending:
                await asyncio.wait(pending, timeout=10)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
    assert len(acked) >= 3000
    assert sent > len(acked)  # requests were in flight when the broker was killed
    port = free_port()
    with broker_process(data_dir, port, log):
        seen = await read_all(f"127.0.0.1:{port}", "crash", 2)
    missing = [key for key in acked if key not in seen]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    changed = [key for key, value in acked.items() if seen[key] != value]
    assert not changed, f"records changed after restart: {changed[:5]}"
    for value in seen.values():
        assert value.startswith(b"record-") and len(value) == 96


async def test_sigterm_stops_cleanly_with_exit_code_0(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with broker_process(tmp_path / "data", port, log) as proc:
        producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait("term", b"before sigterm")
        finally:
            await producer.stop()
        assert meta.offset == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    text = log.read_text()
    assert "signal received: stopping" in text
    assert "broker stopped" in text


def test_bad_listener_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backbone.broker",
            "--listen",
            "nowhere",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "error: --listen: expected HOST:PORT like 127.0.0.1:9092 (got 'nowhere')\n"
    )
