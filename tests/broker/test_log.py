"""PartitionLog: append/read, validation, idempotent producers, timestamps, group commit."""

from __future__ import annotations

import asyncio
import os
import random
import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from backbone.broker.errors import (
    BrokerError,
    CorruptRecord,
    InvalidProducerEpoch,
    InvalidRecord,
    InvalidRequiredAcks,
    MessageTooLarge,
    OffsetOutOfRange,
    OutOfOrderSequenceNumber,
)
from backbone.broker.log import FileSlice, LogManager
from tests.broker.expect import exactly
from tests.broker.test_log_support import FakeClock, decode, make_batch, read_all, read_bytes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def logs(tmp_path: Path, clock: FakeClock):
    async with LogManager(tmp_path / "data", clock=clock) as manager:
        yield manager


async def test_append_read_round_trip_across_segment_rolls(logs: LogManager) -> None:
    await logs.create_topic("t", 1, {"segment.bytes": "1000"})
    log = logs.partition("t", 0)
    expected = []
    for i in range(30):
        values = [f"v{i}-{j}".encode() * 5 for j in range(3)]
        result = await log.append(make_batch(values, keys=[b"k"] * 3), acks=1)
        assert result.base_offset == 3 * i
        assert result.log_append_time_ms == -1
        assert result.log_start_offset == 0
        expected += values
    assert log.high_watermark == 90
    assert len(log.segments) > 3
    names = sorted(p.name for p in log.directory.glob("*.log"))
    assert names[0] == "00000000000000000000.log"
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    records = read_all(log)
    assert [r.offset for r in records] == list(range(90))
    assert [r.value for r in records] == expected
    # a read from inside a batch returns the whole batch containing the offset
    batches = decode(read_bytes(log, 46))
    assert batches[0][0].base_offset == 45
    assert [r.offset for r in batches[0][1]] == [45, 46, 47]


async def test_append_patches_base_offset_and_leader_epoch(logs: LogManager) -> None:
    await logs.create_topic("t", 1)
    log = logs.partition("t", 0)
    raw = bytearray(make_batch([b"a", b"b"]))
    struct.pack_into(">qi", raw, 0, 777, struct.unpack_from(">i", raw, 8)[0])
    struct.pack_into(">i", raw, 12, 42)  # leader epoch is not covered by the CRC
    await log.append(make_batch([b"x"]), acks=1)
    result = await log.append(bytes(raw), acks=1)
    assert result.base_offset == 1
    data = read_bytes(log, 1)
    assert struct.unpack_from(">qii", data, 0)[0] == 1
    assert struct.unpack_from(">i", data, 12)[0] == 0
    ((_batch, recs),) = decode(data)
    assert [(r.offset, r.value) for r in recs] == [(1, b"a"), (2, b"b")]


async def test_several_batches_in_one_append(logs: LogManager) -> None:
    await logs.create_topic("t", 1)
    log = logs.partition("t", 0)
    blob = make_batch([b"a", b"b"]) + make_batch([b"c"]) + make_batch([b"d", b"e", b"f"])
    result = await log.append(memoryview(blob), acks=0)
    assert result.base_offset == 0
    assert log.high_watermark == 6
    assert [r.value for r in read_all(log)] == [b"a", b"b", b"c", b"d", b"e", b"f"]


def _with_crc(raw: bytearray) -> bytes:
    struct.pack_into(">I", raw, 17, crc32c(raw[21:]))
    return bytes(raw)


async def test_corrupt_batches_are_rejected_and_nothing_is_written(logs: LogManager) -> None:
    await logs.create_topic("t", 1)
    log = logs.partition("t", 0)
    good = make_batch([b"hello", b"world"])
    await log.append(good, acks=1)

    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    with pytest.raises(CorruptRecord, match=r"record batch 0 fails its CRC-32C check"):
        await log.append(bytes(flipped), acks=1)

    magic1 = bytearray(good)
    magic1[16] = 1
    with pytest.raises(
        CorruptRecord,
        match=exactly(
            "record batch 0 has magic 1; only magic 2 (Kafka 0.11+ record batches) is accepted"
        ),
    ):
        await log.append(bytes(magic1), acks=1)

    with pytest.raises(
        CorruptRecord,
        match=exactly("record batch 1 is truncated: 30 bytes left, a batch header needs 61"),
    ):
        await log.append(good + good[:30], acks=1)

    too_long = bytearray(good)
    struct.pack_into(">i", too_long, 8, len(good))
    with pytest.raises(
        CorruptRecord,
        match=exactly(
            f"record batch 0 declares {len(good) + 12} bytes but only {len(good)} remain"
        ),
    ):
        await log.append(bytes(too_long), acks=1)

    short = bytearray(good)
    struct.pack_into(">i", short, 8, 10)
    with pytest.raises(CorruptRecord, match="declares length 10, below the minimum 49"):
        await log.append(bytes(short), acks=1)

    miscount = bytearray(good)
    struct.pack_into(">i", miscount, 57, 3)
    with pytest.raises(  # Kafka's InvalidRecordException: INVALID_RECORD
        InvalidRecord, match=exactly("record batch 0 holds 3 records but its lastOffsetDelta is 1")
    ):
        await log.append(_with_crc(miscount), acks=1)

    with pytest.raises(CorruptRecord, match="holds no record batch"):
        await log.append(b"", acks=1)
    with pytest.raises(InvalidRequiredAcks, match=r"acks must be -1, 0 or 1 \(got 2\)"):
        await log.append(good, acks=2)

    assert log.high_watermark == 2
    assert [r.value for r in read_all(log)] == [b"hello", b"world"]


async def test_max_message_bytes_and_keys_on_compacted_topics(logs: LogManager) -> None:
    await logs.create_topic("small", 1, {"max.message.bytes": "200"})
    log = logs.partition("small", 0)
    big = make_batch([b"x" * 300])
    with pytest.raises(
        MessageTooLarge,
        match=exactly(
            f"a record batch of {len(big)} bytes exceeds max.message.bytes (200) of small-0"
        ),
    ):
        await log.append(big, acks=1)
    await logs.create_topic("compacted", 1, {"cleanup.policy": "compact"})
    clog = logs.partition("compacted", 0)
    for codec in ("none", "gzip", "zstd"):
        batch = make_batch([b"a", b"b"], keys=[b"k", None], codec=codec)
        with pytest.raises(
            InvalidRecord,
            match=exactly(
                "Compacted topic cannot accept message without key in topic partition compacted-0."
            ),
        ):
            await clog.append(batch, acks=1)
    await clog.append(make_batch([b"a"], keys=[b"k"], codec="gzip"), acks=1)
    assert clog.high_watermark == 1 and log.high_watermark == 0


async def test_log_append_time_patches_max_timestamp_and_crc(
    logs: LogManager, clock: FakeClock
) -> None:
    await logs.create_topic("t", 1, {"message.timestamp.type": "LogAppendTime"})
    log = logs.partition("t", 0)
    result = await log.append(make_batch([b"a", b"b"], timestamps=[5, 6]), acks=1)
    assert result.log_append_time_ms == clock.ms
    ((batch, recs),) = decode(read_bytes(log, 0))
    assert batch.timestamp_type == 1
    assert batch.max_timestamp == clock.ms
    assert [r.timestamp for r in recs] == [clock.ms, clock.ms]


async def test_idempotent_producer_duplicates_gaps_and_epochs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with LogManager(data) as logs:
        await logs.create_topic("t", 1)
        log = logs.partition("t", 0)
        pid = await logs.allocate_producer_id()
        first = make_batch([b"a", b"b"], producer_id=pid, epoch=0, sequence=0)
        assert (await log.append(first, acks=-1)).base_offset == 0
        second = make_batch([b"c"], producer_id=pid, epoch=0, sequence=2)
        assert (await log.append(second, acks=-1)).base_offset == 2
        # retry of the first batch: original offset, nothing appended
        assert (await log.append(first, acks=-1)).base_offset == 0
        assert log.high_watermark == 3
        gap = make_batch([b"d"], producer_id=pid, epoch=0, sequence=5)
        with pytest.raises(
            OutOfOrderSequenceNumber,
            match=exactly(f"producer {pid} (epoch 0) sent sequence 5, expected 3"),
        ):
            await log.append(gap, acks=1)
        bumped = make_batch([b"e"], producer_id=pid, epoch=1, sequence=0)
        assert (await log.append(bumped, acks=1)).base_offset == 3
        stale = make_batch([b"f"], producer_id=pid, epoch=0, sequence=3)
        with pytest.raises(
            InvalidProducerEpoch,
            match=exactly(
                f"producer {pid} has epoch 0, but epoch 1 is current: this producer was fenced "
                "by a newer instance"
            ),
        ):
            await log.append(stale, acks=1)
        bad_epoch_start = make_batch([b"g"], producer_id=pid, epoch=2, sequence=4)
        with pytest.raises(OutOfOrderSequenceNumber, match="a new epoch must start at 0"):
            await log.append(bad_epoch_start, acks=1)
        assert log.high_watermark == 4
    # producer state is rebuilt from the batch headers on restart
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        assert (await log.append(bumped, acks=1)).base_offset == 3
        with pytest.raises(
            InvalidProducerEpoch,
            match=exactly(
                f"producer {pid} has epoch 0, but epoch 1 is current: this producer was fenced"
                " by a newer instance"
            ),
        ):
            await log.append(stale, acks=1)
        with pytest.raises(
            OutOfOrderSequenceNumber,
            match=exactly(f"producer {pid} (epoch 1) sent sequence 7, expected 1"),
        ):
            await log.append(make_batch([b"h"], producer_id=pid, epoch=1, sequence=7), acks=1)
        nxt = make_batch([b"i"], producer_id=pid, epoch=1, sequence=1)
        assert (await log.append(nxt, acks=1)).base_offset == 4
        assert await logs.allocate_producer_id() > pid
        assert [r.value for r in read_all(log)] == [b"a", b"b", b"c", b"e", b"i"]


async def test_read_max_bytes_and_kip74(logs: LogManager) -> None:
    await logs.create_topic("t", 1, {"index.interval.bytes": "0"})
    log = logs.partition("t", 0)
    sizes = []
    for i in range(10):
        batch = make_batch([bytes([i]) * 500])
        sizes.append(len(batch))
        await log.append(batch, acks=1)
    one = log.read(0, 10)  # smaller than a batch: still one whole batch (KIP-74)
    assert isinstance(one.records, FileSlice)
    assert len(one.records) == sizes[0]
    assert (one.high_watermark, one.log_start_offset) == (10, 0)
    two = log.read(0, sizes[0] + sizes[1] + sizes[2] // 2)
    assert [b.base_offset for b, _ in decode(two.records.read())] == [0, 1]
    assert os.pread(two.records.fileno(), len(two.records), two.records.position) == (
        two.records.read()
    )
    everything = log.read(3, 1 << 20)
    assert [b.base_offset for b, _ in decode(everything.records.read())] == list(range(3, 10))
    assert log.read(10, 100).records == b""
    with pytest.raises(
        OffsetOutOfRange,
        match=exactly("offset 11 is out of range for t-0 (log start offset 0, high watermark 10)"),
    ):
        log.read(11, 100)
    with pytest.raises(
        OffsetOutOfRange,
        match=exactly("offset -1 is out of range for t-0 (log start offset 0, high watermark 10)"),
    ):
        log.read(-1, 100)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_offset_for_timestamp(logs: LogManager, codec: str) -> None:
    await logs.create_topic("t", 1, {"segment.bytes": "150", "index.interval.bytes": "0"})
    log = logs.partition("t", 0)
    for i in range(6):
        base = 1000 * i
        await log.append(
            make_batch([b"v"] * 4, timestamps=[base, base + 10, base + 20, base + 30], codec=codec),
            acks=1,
        )
    assert len(log.segments) > 2
    assert log.offset_for_timestamp(0) == (0, 0)
    assert log.offset_for_timestamp(15) == (2, 20)
    assert log.offset_for_timestamp(2030) == (11, 2030)
    assert log.offset_for_timestamp(2031) == (12, 3000)
    assert log.offset_for_timestamp(5030) == (23, 5030)
    assert log.offset_for_timestamp(5031) is None
    assert log.max_timestamp_offset() == (23, 5030)


async def test_watch_runs_after_append_and_unsubscribes(logs: LogManager) -> None:
    await logs.create_topic("t", 1)
    log = logs.partition("t", 0)
    seen: list[int] = []
    unsubscribe = log.watch(lambda: seen.append(log.high_watermark))
    await log.append(make_batch([b"a"]), acks=1)
    await log.append(make_batch([b"b", b"c"]), acks=0)
    unsubscribe()
    unsubscribe()
    await log.append(make_batch([b"d"]), acks=1)
    assert seen == [1, 3]


async def test_group_commit_serves_many_appends_with_fewer_fsyncs(logs: LogManager) -> None:
    await logs.create_topic("t", 2)
    logs_ = [logs.partition("t", 0), logs.partition("t", 1)]
    rounds_before = logs.flusher.rounds
    results = await asyncio.wait_for(
        asyncio.gather(
            *(logs_[i % 2].append(make_batch([b"x" * 100]), acks=-1) for i in range(100))
        ),
        10,
    )
    rounds = logs.flusher.rounds - rounds_before
    assert 1 <= rounds < 100
    assert sorted(r.base_offset for r in results) == sorted(list(range(50)) * 2)
    assert logs_[0].high_watermark == logs_[1].high_watermark == 50
    # acks=1 does not wait for an fsync
    before = logs.flusher.rounds
    await logs_[0].append(make_batch([b"y"]), acks=1)
    assert logs.flusher.rounds == before


async def test_flush_policies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush policy must be always, interval or os"):
        LogManager(tmp_path / "x", flush="sometimes")  # type: ignore[arg-type]
    async with LogManager(tmp_path / "interval", flush="interval", flush_interval_ms=20) as logs:
        await logs.create_topic("t", 1)
        log = logs.partition("t", 0)
        rounds = logs.flusher.rounds
        await log.append(make_batch([b"a"]), acks=-1)  # does not wait for an fsync
        assert logs.flusher.rounds == rounds
        for _ in range(3000):  # at least 30 s: an fsync can be slow on a busy disk
            if logs.flusher.rounds > rounds:
                break
            await asyncio.sleep(0.01)
        assert logs.flusher.rounds > rounds  # the periodic flush picked it up
    async with LogManager(tmp_path / "os", flush="os") as logs:
        await logs.create_topic("t", 1)
        log = logs.partition("t", 0)
        rounds = logs.flusher.rounds
        await log.append(make_batch([b"a"]), acks=-1)  # answered without an fsync round
        assert logs.flusher.rounds == rounds
    assert logs.flusher.rounds == rounds + 1  # flushed on close


async def test_segment_ms_rolls_by_record_timestamps(logs: LogManager) -> None:
    await logs.create_topic("t", 1, {"segment.ms": "1000"})
    log = logs.partition("t", 0)
    await log.append(make_batch([b"a"], timestamps=[10_000]), acks=1)
    await log.append(make_batch([b"b"], timestamps=[10_900]), acks=1)
    assert len(log.segments) == 1
    await log.append(make_batch([b"c"], timestamps=[11_001]), acks=1)
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert [r.value for r in read_all(log)] == [b"a", b"b", b"c"]


async def test_mutated_batches_raise_only_broker_errors_and_never_store_corruption(
    logs: LogManager,
) -> None:
    """Seeded fuzz of the produce path: every mutation is refused with CorruptRecord /
    InvalidRecord or accepted, and whatever was accepted reads back with valid CRCs."""
    await logs.create_topic("t", 1, {"segment.bytes": "5000"})
    log = logs.partition("t", 0)
    rng = random.Random(1234)
    good = make_batch([b"value-%d" % i for i in range(5)], keys=[b"k"] * 5, codec="gzip")
    accepted = refused = 0
    for _ in range(400):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.2:
            raw = raw[: rng.randrange(len(raw))]
        try:
            await log.append(bytes(raw), acks=1)
            accepted += 1
        except (CorruptRecord, InvalidRecord) as exc:
            assert isinstance(exc, BrokerError)
            refused += 1
    for _ in range(50):
        junk = rng.randbytes(rng.randrange(0, 200))
        with pytest.raises((CorruptRecord, InvalidRecord), match="record batch"):
            await log.append(junk, acks=1)
    assert refused > 300
    assert accepted + refused == 400
    records = read_all(log)  # decode() asserts every served CRC
    assert len(records) == 5 * accepted == log.high_watermark


async def test_remembered_tail_positions_agree_with_the_segment_scan(tmp_path: Path) -> None:
    """Fetches near the log end use remembered batch positions; they must slice exactly
    like the index + header scan does, for any offset and size limit."""
    rnd = random.Random(1)
    async with LogManager(tmp_path) as logs:
        await logs.create_topic("t", 1)
        log = logs.partition("t", 0)
        for _ in range(300):
            values = [b"x" * rnd.randint(1, 3000) for _ in range(rnd.randint(1, 5))]
            await log.append(make_batch(values), acks=1)
        segment = log.segments[-1]
        for _ in range(2000):
            offset = rnd.randrange(0, log.high_watermark)
            max_bytes = rnd.choice([0, 1, 100, 5000, 20000, 10**6])
            fast = log.recent.slice(segment, offset, max_bytes)
            hit = segment.find(offset)
            stop = segment.slice_end(hit, max_bytes)
            assert fast is not None
            assert (fast.position, fast.length) == (hit.position, stop - hit.position)


async def test_a_round_of_several_files_syncs_them_together_and_reports_any_failure(
    tmp_path: Path,
) -> None:
    """The files of one round are fdatasynced at the same time (helper threads); the
    round ends once all are done, and a failure on any of them fails the round."""
    from backbone.broker.errors import KafkaStorageError
    from backbone.broker.log.flusher import Flusher

    flusher = Flusher("always")
    await flusher.start()
    files = [os.open(tmp_path / f"f{n}", os.O_CREAT | os.O_WRONLY) for n in range(6)]
    read_end, write_end = os.pipe()  # the kernel refuses to fsync a pipe: EINVAL, no mock
    try:
        for fd in files:
            os.write(fd, b"data")
        rounds, calls = flusher.rounds, flusher.fsync_calls
        await asyncio.wait_for(flusher.sync_files(files), 10)
        assert (flusher.rounds, flusher.fsync_calls) == (rounds + 1, calls + 6)
        with pytest.raises(KafkaStorageError, match=r"Invalid argument"):
            await asyncio.wait_for(flusher.sync_files([*files[:3], write_end, *files[3:]]), 10)
        assert flusher.failed is not None
    finally:
        os.close(read_end)
        os.close(write_end)
        for fd in files:
            os.close(fd)
        await flusher.stop()


async def test_failed_fsync_fails_its_waiters_and_takes_the_log_offline(tmp_path: Path) -> None:
    from backbone.broker.errors import KafkaStorageError
    from backbone.broker.log.flusher import Flusher

    flusher = Flusher("always")
    await flusher.start()
    try:
        read_end, write_end = os.pipe()  # the kernel refuses to fsync a pipe: EINVAL, no mock
        try:
            with pytest.raises(
                KafkaStorageError, match=r"^fsync of the log failed: \[Errno 22\] Invalid argument"
            ):
                await asyncio.wait_for(flusher.sync(write_end), 10)
            flusher.forget(write_end)
        finally:
            os.close(read_end)
            os.close(write_end)
        good = os.open(tmp_path / "good", os.O_CREAT | os.O_WRONLY)
        try:
            os.write(good, b"data")
            # a later fsync "succeeding" proves nothing (the kernel may have dropped the
            # pages): nothing is acknowledged any more until a restart re-validates the log
            with pytest.raises(
                KafkaStorageError,
                match=r"^the log is offline after a failed fsync \(\[Errno 22\] Invalid arg",
            ):
                await asyncio.wait_for(flusher.sync(good), 10)
        finally:
            os.close(good)
    finally:
        await flusher.stop()
