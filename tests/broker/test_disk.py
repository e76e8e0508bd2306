"""The disk: a full disk is logged once, with the bytes still free, and its recovery once;
the space of deleted segments comes back as soon as nobody reads their files.

The disk-full test fills a real 4 MiB tmpfs (root only: it is skipped where mounting is
not allowed); the others watch the broker's open files in /proc/self/fd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from backbone.broker import Broker, BrokerConfig
from backbone.broker import protocol as kp
from backbone.broker.log import FileSlice, LogManager
from tests.broker.test_connection_limits import until
from tests.broker.test_log_support import make_batch
from tests.broker.test_server import call

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024


def deleted_files_open(directory: Path) -> list[str]:
    """Files under ``directory`` that are deleted but still open in this process."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)) and target.endswith(" (deleted)"):
                found.append(target)
    return found


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` bytes mounted on ``path`` (skips the test if not allowed)."""
    path.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def produce_request(topic: str, records: bytes) -> kp.ProduceRequest:
    return kp.ProduceRequest(
        acks=-1,
        timeout_ms=5000,
        topic_data=[
            kp.ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[kp.ProduceRequest.PartitionProduceData(index=0, records=records)],
            )
        ],
    )


async def produce(port: int, topic: str, records: bytes) -> int:
    """The error code of one Produce v9 request to partition 0 of ``topic``."""
    response = await call(port, produce_request(topic, records), 9)
    return int(response.responses[0].partition_responses[0].error_code)


async def test_a_full_disk_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", 4 * MiB) as disk:
        async with Broker(BrokerConfig(data_dir=disk, port=0)) as broker:
            await broker.logs.create_topic("fill", 1)
            batch = make_batch([b"x" * (256 * 1024)])
            with caplog.at_level(logging.INFO, logger="backbone.broker.log"):
                codes = []
                for _ in range(40):  # 4 MiB hold at most 16 of these
                    codes.append(await produce(broker.port, "fill", batch))
                    if codes[-1]:
                        break
                stored = len(codes) - 1
                assert stored >= 4 and codes[:stored] == [0] * stored
                assert codes[-1] == 56  # KAFKA_STORAGE_ERROR, nothing stored
                assert await produce(broker.port, "fill", batch) == 56
                assert await produce(broker.port, "fill", batch) == 56
                log = broker.logs.partition("fill", 0)
                assert log.high_watermark == stored
                errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
                assert len(errors) == 1, [r.getMessage() for r in errors]
                message = errors[0].getMessage()
                path = disk / "fill-0" / "00000000000000000000.log"
                match = re.fullmatch(
                    rf"disk full: cannot write {re.escape(str(path))}: \[Errno 28\] No space "
                    r"left on device \((\d+) bytes free\); produce requests answer "
                    r"KAFKA_STORAGE_ERROR until space is freed",
                    message,
                )
                assert match is not None, message
                assert int(match[1]) < 256 * 1024

                # reads keep working
                fetch = kp.FetchRequest(
                    max_wait_ms=0,
                    min_bytes=1,
                    max_bytes=1 << 20,
                    topics=[
                        kp.FetchRequest.FetchTopic(
                            topic="fill",
                            partitions=[
                                kp.FetchRequest.FetchPartition(
                                    partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                                )
                            ],
                        )
                    ],
                )
                fetched = (await call(broker.port, fetch, 12)).responses[0].partitions[0]
                assert (fetched.error_code, fetched.high_watermark) == (0, stored)
                assert len(bytes(fetched.records)) >= 256 * 1024

                # deleting the topic gives the space back at once, and writes succeed again
                deleted = kp.DeleteTopicsRequest(
                    topics=[kp.DeleteTopicsRequest.DeleteTopicState(name="fill")],
                    timeout_ms=5000,
                )
                response = await call(broker.port, deleted, 6)
                assert response.responses[0].error_code == 0
                await until(lambda: free_bytes(disk) > 3 * MiB, "the space did not come back")
                assert deleted_files_open(disk) == []
                await broker.logs.create_topic("after", 1)
                assert await produce(broker.port, "after", batch) == 0
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1
            recovered = [
                r.getMessage() for r in caplog.records if "succeed again" in r.getMessage()
            ]
            after = disk / "after-0" / "00000000000000000000.log"
            assert len(recovered) == 1 and re.fullmatch(
                rf"log writes succeed again \({re.escape(str(after))}, \d+ bytes free\) after 3 "
                "failed appends",
                recovered[0],
            ), recovered


async def test_a_deleted_segment_is_closed_when_its_last_reader_is_done(tmp_path: Path) -> None:
    async with LogManager(tmp_path / "data") as logs:
        await logs.create_topic("t", 1, {"segment.bytes": "100"})
        log = logs.partition("t", 0)
        for i in range(4):
            await log.append(make_batch([b"%d" % i * 80]), acks=1)
        assert len(log.segments) == 4
        held = log.read(0, 1 << 20).records
        assert isinstance(held, FileSlice)
        dropped = log.read(1, 1 << 20).records
        assert isinstance(dropped, FileSlice)
        await log.delete_records(3)
        assert [s.base_offset for s in log.segments] == [3]
        open_now = deleted_files_open(log.directory)
        assert [Path(p.removesuffix(" (deleted)")).name for p in sorted(open_now)] == [
            "00000000000000000000.log",
            "00000000000000000001.log",
        ]
        assert logs.reaper.held == 2
        del dropped  # a slice dropped unsent releases itself
        assert len(deleted_files_open(log.directory)) == 1
        held.release()
        assert deleted_files_open(log.directory) == []
        assert logs.reaper.held == 0


async def test_a_deleted_topic_frees_its_files_once_fetched_data_was_sent(
    tmp_path: Path,
) -> None:
    """Real clients: produce, consume everything (Fetch slices, sent with sendfile), delete
    the topic: none of its files stays open (they used to for 60 s)."""
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(50):
                await producer.send("gone", b"%d" % i * 4096)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "gone", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got = 0
            async with asyncio.timeout(30):
                while got < 50:
                    got += sum(len(r) for r in (await consumer.getmany(timeout_ms=500)).values())
        finally:
            await consumer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(["gone"])
        finally:
            await admin.close()
        # the partition folder is renamed before it is removed: look at the whole data dir
        await until(lambda: deleted_files_open(tmp_path) == [], "files of the topic still open")
        assert broker.logs.reaper.held == 0
