"""Helpers for the log tests: real v2 record batches built by kafka-python, a fake clock,
and a reader that decodes what the log serves (no tests here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from backbone.broker.log import PartitionLog

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class FakeClock:
    """Injected clock (seconds since the epoch), moved by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    @property
    def ms(self) -> int:
        return int(self.now * 1000)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int] | None = None,
    codec: str = "none",
    producer_id: int = -1,
    epoch: int = -1,
    sequence: int = -1,
    headers: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """A valid magic-v2 batch (base offset 0) as a producer sends it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS[codec],
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        batch_size=2**30,
    )
    for i, value in enumerate(values):
        key = keys[i] if keys is not None else None
        ts = timestamps[i] if timestamps is not None else 1_700_000_000_000 + i
        assert builder.append(i, timestamp=ts, key=key, value=value, headers=list(headers))
    return bytes(builder.build())


@dataclass(frozen=True)
class Rec:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def decode(data: bytes) -> list[tuple[DefaultRecordBatch, list[Rec]]]:
    """Every batch of a byte range with its records; asserts each CRC is valid."""
    out = []
    records = MemoryRecords(bytes(data))
    while True:
        batch = records.next_batch()
        if batch is None:
            break
        assert batch.validate_crc(), "served a batch with a bad CRC"
        out.append((batch, [Rec(r.offset, r.timestamp, r.key, r.value) for r in batch]))
    return out


def read_bytes(log: PartitionLog, offset: int, max_bytes: int = 2**30) -> bytes:
    result = log.read(offset, max_bytes)
    return result.records if isinstance(result.records, bytes) else result.records.read()


def read_all(log: PartitionLog, start: int | None = None) -> list[Rec]:
    """Every record from ``start`` (default log start offset) to the high watermark."""
    offset = log.log_start_offset if start is None else start
    out: list[Rec] = []
    while offset < log.high_watermark:
        data = read_bytes(log, offset, 1 << 20)
        if not data:
            break
        batches = decode(data)
        for _batch, recs in batches:
            out.extend(r for r in recs if r.offset >= offset)
        offset = batches[-1][0].next_offset
    return out
