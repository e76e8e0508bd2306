"""LogManager: topics, configs, retention, DeleteRecords, compaction."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from backbone.broker.errors import (
    InvalidConfig,
    InvalidPartitions,
    InvalidTopic,
    KafkaStorageError,
    OffsetOutOfRange,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from backbone.broker.log import ConfigEntry, LogConfig, LogManager
from tests.broker.expect import exactly
from tests.broker.test_log_support import FakeClock, decode, make_batch, read_all, read_bytes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_create_topic_validation(tmp_path: Path) -> None:
    async with LogManager(tmp_path / "data") as logs:
        cases = {
            "": "Topic name is illegal, it can't be empty",
            ".": 'Topic name cannot be "." or ".."',
            "..": 'Topic name cannot be "." or ".."',
            "a" * 250: "Topic name is illegal, it can't be longer than 249 characters, "
            "topic name: " + "a" * 250,
            "bad/name": 'Topic name "bad/name" is illegal, it contains a character other '
            "than ASCII alphanumerics, '.', '_' and '-'",
        }
        for name, message in cases.items():
            with pytest.raises(InvalidTopic, match=exactly(message)):
                await logs.create_topic(name, 1)
        await logs.create_topic("a" * 249, 1)
        topic = await logs.create_topic("orders.v1", 3)
        assert isinstance(topic.topic_id, uuid.UUID)
        assert [p.partition for p in topic.partitions] == [0, 1, 2]
        with pytest.raises(TopicAlreadyExists, match=r"Topic 'orders\.v1' already exists\."):
            await logs.create_topic("orders.v1", 1)
        with pytest.raises(InvalidTopic, match=r"collides with existing topic: orders\.v1"):
            await logs.create_topic("orders_v1", 1)
        with pytest.raises(
            InvalidPartitions, match=exactly("Number of partitions must be larger than 0 (got 0).")
        ):
            await logs.create_topic("zero", 0)
        with pytest.raises(
            InvalidConfig,
            match=exactly(
                "Invalid value 'soon' for configuration retention.ms: expected an integer"
            ),
        ):
            await logs.create_topic("cfg", 1, {"retention.ms": "soon"})
        with pytest.raises(InvalidConfig, match="Unknown topic configuration 'nope'"):
            await logs.create_topic("cfg", 1, {"nope": "1"})
        with pytest.raises(InvalidConfig, match="expected delete, compact or compact,delete"):
            await logs.create_topic("cfg", 1, {"cleanup.policy": "shred"})
        with pytest.raises(InvalidConfig, match="expected one of CreateTime, LogAppendTime"):
            await logs.create_topic("cfg", 1, {"message.timestamp.type": "Now"})
        with pytest.raises(InvalidConfig, match="must be between 14 and 2147483647"):
            await logs.create_topic("cfg", 1, {"segment.bytes": "3"})
        checked = await logs.create_topic("dry", 2, {"retention.ms": "5"}, validate_only=True)
        assert checked.config.retention_ms == 5
        assert "dry" not in logs.topics and "cfg" not in logs.topics
        assert not (tmp_path / "data" / "dry-0").exists()
        with pytest.raises(UnknownTopicOrPartition, match="Unknown topic 'missing'"):
            logs.topic("missing")
        with pytest.raises(UnknownTopicOrPartition, match="Unknown partition 3 of topic"):
            logs.partition("orders.v1", 3)


async def test_configs_describe_alter_and_persist(tmp_path: Path) -> None:
    data = tmp_path / "data"
    defaults = LogConfig(retention_ms=1000)
    async with LogManager(data, defaults=defaults) as logs:
        topic = await logs.create_topic(
            "t", 1, {"segment.bytes": "2048", "min.insync.replicas": "1"}
        )
        entries = {e.name: e for e in topic.config.describe()}
        assert entries["segment.bytes"] == ConfigEntry("segment.bytes", "2048", False)
        assert entries["retention.ms"] == ConfigEntry("retention.ms", "1000", True)
        assert entries["min.insync.replicas"] == ConfigEntry("min.insync.replicas", "1", False)
        assert entries["cleanup.policy"].value == "delete"
        await logs.alter_configs(
            "t", {"retention.ms": "60000", "segment.bytes": None}, incremental=True
        )
        assert topic.overrides == {"retention.ms": "60000", "min.insync.replicas": "1"}
        assert logs.partition("t", 0).config.retention_ms == 60000
        assert logs.partition("t", 0).config.segment_bytes == 1024**3
        with pytest.raises(InvalidConfig, match="must be between -1 and"):
            await logs.alter_configs("t", {"retention.bytes": "-2"}, incremental=True)
        await logs.alter_configs(
            "t", {"cleanup.policy": "delete"}, incremental=True, validate_only=True
        )
        assert "cleanup.policy" not in topic.overrides
    async with LogManager(data, defaults=defaults) as logs:
        topic = logs.topic("t")
        assert topic.overrides == {"retention.ms": "60000", "min.insync.replicas": "1"}
        await logs.alter_configs("t", {"cleanup.policy": "compact", "x": None}, incremental=False)
        assert topic.overrides == {"cleanup.policy": "compact"}
        assert topic.config.retention_ms == 1000
    async with LogManager(data, defaults=defaults) as logs:
        assert logs.topic("t").config.compact


async def test_delete_topic_and_create_partitions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with LogManager(data) as logs:
        await logs.create_topic("t", 2)
        old = logs.partition("t", 0)
        await old.append(make_batch([b"old"]), acks=-1)
        with pytest.raises(
            InvalidPartitions,
            match=exactly(
                "Topic currently has 2 partitions, which is higher than the requested 1."
            ),
        ):
            await logs.create_partitions("t", 1)
        with pytest.raises(InvalidPartitions, match=r"Topic already has 2 partitions\."):
            await logs.create_partitions("t", 2)
        await logs.create_partitions("t", 4)
        assert len(logs.topic("t").partitions) == 4
        await logs.partition("t", 3).append(make_batch([b"p3"]), acks=-1)
    async with LogManager(data) as logs:
        assert len(logs.topic("t").partitions) == 4
        assert [r.value for r in read_all(logs.partition("t", 3))] == [b"p3"]
        first_id = logs.topic("t").topic_id
        await logs.delete_topic("t")
        assert "t" not in logs.topics
        assert not (data / "t-0").exists() and not list((data / "topics").glob("*.json"))
        with pytest.raises(
            UnknownTopicOrPartition, match=exactly("partition t-0 was deleted or closed")
        ):
            await old.append(make_batch([b"late"]), acks=1)
        with pytest.raises(UnknownTopicOrPartition, match=exactly("Unknown topic 't'")):
            await logs.delete_topic("t")
        topic = await logs.create_topic("t", 1)
        assert topic.topic_id != first_id
        assert logs.partition("t", 0).high_watermark == 0
    async with LogManager(data) as logs:
        assert logs.partition("t", 0).high_watermark == 0
        assert logs.topic_by_id(topic.topic_id) is logs.topic("t")


async def test_producer_ids_never_repeat_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = set()
    for _ in range(3):
        async with LogManager(data) as logs:
            for _ in range(5):
                seen.add(await logs.allocate_producer_id())
    assert len(seen) == 15


async def test_producer_id_block_that_cannot_be_persisted_hands_out_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with LogManager(data) as logs:
        first = await logs.allocate_producer_id()
    blocker = data / "producer-ids.json"
    async with LogManager(data) as logs:
        # the next block cannot be written: a directory stands where the file goes
        blocker.unlink()
        blocker.mkdir()
        (blocker / "keep").write_text("x")
        for _ in range(2):
            with pytest.raises(KafkaStorageError, match="cannot persist producer ids: "):
                await logs.allocate_producer_id()
        (blocker / "keep").unlink()
        blocker.rmdir()
        # concurrent allocations write the block once and never share an id
        ids = await asyncio.gather(*(logs.allocate_producer_id() for _ in range(20)))
    assert len(set(ids)) == 20 and min(ids) > first
    async with LogManager(data) as logs:
        assert await logs.allocate_producer_id() > max(ids)


async def test_retention_by_time_with_injected_clock(tmp_path: Path, clock: FakeClock) -> None:
    async with LogManager(tmp_path / "data", clock=clock) as logs:
        await logs.create_topic("t", 1, {"segment.bytes": "200", "retention.ms": "60000"})
        log = logs.partition("t", 0)
        for i in range(6):
            ts = clock.ms - 120_000 if i < 3 else clock.ms
            await log.append(make_batch([b"x" * 100], timestamps=[ts]), acks=1)
        assert len(log.segments) == 6
        assert logs.enforce_retention() == 3
        assert log.log_start_offset == 3
        assert [r.offset for r in read_all(log)] == [3, 4, 5]
        with pytest.raises(
            OffsetOutOfRange,
            match=exactly(
                "offset 2 is out of range for t-0 (log start offset 3, high watermark 6)"
            ),
        ):
            log.read(2, 100)
        assert sorted(p.name for p in log.directory.glob("*.log"))[0] == (
            "00000000000000000003.log"
        )
        # everything expired: the active segment is rolled and deleted, the log stays usable
        clock.advance(3600)
        assert logs.enforce_retention() == 3
        assert log.log_start_offset == log.high_watermark == 6
        assert log.read(6, 100).records == b""
        assert (
            await log.append(make_batch([b"new"], timestamps=[clock.ms]), acks=1)
        ).base_offset == 6
        assert logs.enforce_retention() == 0


async def test_retention_by_size(tmp_path: Path, clock: FakeClock) -> None:
    async with LogManager(tmp_path / "data", clock=clock) as logs:
        await logs.create_topic("t", 1, {"segment.bytes": "200", "retention.bytes": "500"})
        log = logs.partition("t", 0)
        for _ in range(8):
            await log.append(make_batch([b"y" * 100], timestamps=[clock.ms]), acks=1)
        size = log.segments[0].size
        # Kafka's rule: delete the oldest segment while the rest still holds retention.bytes
        assert logs.enforce_retention() == 5
        assert log.size_bytes == 3 * size >= 500
        assert log.size_bytes - size < 500
        assert log.log_start_offset == log.segments[0].base_offset
        await logs.alter_configs("t", {"cleanup.policy": "compact"}, incremental=True)
        await logs.partition("t", 0).append(make_batch([b"z"], keys=[b"k"]), acks=1)
        assert logs.enforce_retention() == 0  # compact only: no deletion


async def test_delete_records_advances_and_persists_the_log_start_offset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with LogManager(data) as logs:
        await logs.create_topic("t", 1, {"segment.bytes": "200"})
        log = logs.partition("t", 0)
        for i in range(6):
            await log.append(make_batch([b"%d" % i * 50]), acks=1)
        assert await log.delete_records(4) == 4
        assert log.segments[0].base_offset == 4
        assert [r.offset for r in read_all(log)] == [4, 5]
        with pytest.raises(
            OffsetOutOfRange,
            match=exactly(
                "offset 3 is out of range for t-0 (log start offset 4, high watermark 6)"
            ),
        ):
            log.read(3, 1000)
        assert await log.delete_records(2) == 4  # never moves backwards
        with pytest.raises(
            OffsetOutOfRange,
            match=exactly("cannot delete records before offset 7 of t-0: the high watermark is 6"),
        ):
            await log.delete_records(7)
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        assert log.log_start_offset == 4
        assert await log.delete_records(-1) == 6
        assert log.read(6, 100).records == b""
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        assert log.log_start_offset == log.high_watermark == 6
        assert (await log.append(make_batch([b"n"]), acks=-1)).base_offset == 6


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4"])
async def test_compaction_keeps_latest_per_key_and_drops_tombstones_later(
    tmp_path: Path, clock: FakeClock, codec: str
) -> None:
    data = tmp_path / "data"
    configs = {
        "cleanup.policy": "compact",
        "segment.bytes": "400",
        "delete.retention.ms": "1000",
    }
    expected: dict[bytes, tuple[int, bytes | None]] = {}
    async with LogManager(data, clock=clock) as logs:
        await logs.create_topic("c", 1, configs)
        log = logs.partition("c", 0)
        pid = await logs.allocate_producer_id()
        seq = 0
        for version in range(40):
            keys = [b"k%d" % (version % 4), b"k%d" % ((version + 1) % 5)]
            values: list[bytes | None] = [b"v%d-%d" % (version, j) for j in range(2)]
            if version in (10, 30):
                keys[1] = b"gone"
                values[1] = None if version == 30 else b"soon deleted"
            result = await log.append(
                make_batch(
                    values,
                    keys=keys,
                    timestamps=[clock.ms - 10_000] * 2,
                    codec=codec,
                    producer_id=pid,
                    epoch=0,
                    sequence=seq,
                ),
                acks=1,
            )
            seq += 2
            for j, key in enumerate(keys):
                expected[key] = (result.base_offset + j, values[j])
        log.roll()
        await log.append(make_batch([b"tail"], keys=[b"zz"]), acks=1)  # active segment
        expected[b"zz"] = (log.high_watermark - 1, b"tail")
        before = len(read_all(log))
        assert await logs.clean() > 0
        after = read_all(log)
        assert len(after) < before
        latest = {r.key: (r.offset, r.value) for r in after}
        assert latest == expected
        assert sorted(r.key for r in after) == sorted(expected)  # one record per key
        tombstones = [r for r in after if r.value is None]
        assert len(tombstones) == 1 and expected[tombstones[0].key][1] is None
        assert await logs.clean() == 0  # nothing new, horizon not reached
        clock.advance(2)
        assert await logs.clean() > 0
        final = read_all(log)
        assert [r for r in final if r.value is None] == []
        assert {r.key: (r.offset, r.value) for r in final} == {
            k: v for k, v in expected.items() if v[1] is not None
        }
        # the producer's sequence survives compaction and a restart
        nxt = make_batch([b"again"], keys=[b"k0"], producer_id=pid, epoch=0, sequence=seq)
        end = log.high_watermark
        assert (await log.append(nxt, acks=-1)).base_offset == end
    async with LogManager(data, clock=clock) as logs:
        log = logs.partition("c", 0)
        reread = {r.key: (r.offset, r.value) for r in read_all(log)}
        assert reread[b"k0"][1] == b"again"
        dup = make_batch([b"again"], keys=[b"k0"], producer_id=pid, epoch=0, sequence=seq)
        assert (await log.append(dup, acks=1)).base_offset == reread[b"k0"][0]


async def test_maintenance_task_runs_retention_and_compaction(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with LogManager(
        tmp_path / "data",
        clock=clock,
        retention_check_interval_s=0.05,
        cleaner_interval_s=0.05,
    ) as logs:
        await logs.create_topic("r", 1, {"segment.bytes": "100", "retention.ms": "1000"})
        await logs.create_topic(
            "c",
            1,
            {"segment.bytes": "100", "cleanup.policy": "compact", "min.compaction.lag.ms": "5000"},
        )
        r, c = logs.partition("r", 0), logs.partition("c", 0)
        for i in range(4):
            await r.append(make_batch([b"r" * 60], timestamps=[clock.ms]), acks=1)
            await c.append(make_batch([b"%d" % i * 60], keys=[b"k"], timestamps=[clock.ms]), acks=1)
        clock.advance(2)  # past retention.ms, not past min.compaction.lag.ms
        for _ in range(1500):  # at least 30 s on a loaded machine
            if r.log_start_offset == 4:
                break
            await asyncio.sleep(0.02)
        assert r.log_start_offset == r.high_watermark == 4
        assert len(read_all(c)) == 4  # too young to compact
        clock.advance(10)
        for _ in range(1500):  # at least 30 s on a loaded machine
            if len(read_all(c)) == 2:
                break
            await asyncio.sleep(0.02)
        # the newest closed-segment record of k and the active segment's record remain
        assert [(rec.offset, rec.value) for rec in read_all(c)] == [
            (2, b"2" * 60),
            (3, b"3" * 60),
        ]


async def test_compaction_keeps_a_producers_last_batch_as_an_empty_header(
    tmp_path: Path, clock: FakeClock
) -> None:
    data = tmp_path / "data"
    async with LogManager(data, clock=clock) as logs:
        await logs.create_topic("c", 1, {"cleanup.policy": "compact"})
        log = logs.partition("c", 0)
        pid = await logs.allocate_producer_id()
        first = make_batch([b"v1"], keys=[b"k"], producer_id=pid, epoch=0, sequence=0)
        assert (await log.append(first, acks=1)).base_offset == 0
        await log.append(make_batch([b"other"], keys=[b"x"]), acks=1)
        await log.append(make_batch([b"v2"], keys=[b"k"]), acks=1)  # supersedes offset 0
        log.roll()
        assert await logs.clean() == 1
        header_only = decode(read_bytes(log, 0))[0][0]
        assert (header_only.base_offset, header_only.records_count) == (0, 0)
        assert header_only.producer_id == pid and header_only.base_sequence == 0
        assert [(r.offset, r.value) for r in read_all(log)] == [(1, b"other"), (2, b"v2")]
    async with LogManager(data, clock=clock) as logs:
        log = logs.partition("c", 0)
        assert (await log.append(first, acks=1)).base_offset == 0  # still a duplicate
        nxt = make_batch([b"v3"], keys=[b"k"], producer_id=pid, epoch=0, sequence=1)
        assert (await log.append(nxt, acks=1)).base_offset == 3


async def test_idle_producers_expire(tmp_path: Path, clock: FakeClock) -> None:
    async with LogManager(tmp_path / "data", clock=clock, producer_id_expiration_ms=60_000) as logs:
        await logs.create_topic("t", 1)
        log = logs.partition("t", 0)
        busy, idle = await logs.allocate_producer_id(), await logs.allocate_producer_id()
        await log.append(make_batch([b"a"], producer_id=idle, epoch=0, sequence=0), acks=1)
        clock.advance(50)
        await log.append(make_batch([b"b"], producer_id=busy, epoch=0, sequence=0), acks=1)
        clock.advance(20)
        logs.enforce_retention()
        assert log.producers.get(idle) is None
        assert log.producers.get(busy) is not None
        # an expired producer is unknown again: Kafka accepts its next sequence
        late = make_batch([b"c"], producer_id=idle, epoch=0, sequence=1)
        assert (await log.append(late, acks=1)).base_offset == 2
