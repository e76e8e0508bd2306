"""Record batch (magic v2) header view: parse, validate, patch. No per-record Python work
on the produce path: :func:`validate_batches` hands each batch's records section to
``records.scan`` (a C walk when the extension is built, see ``records.py``);
:func:`iter_records` decodes records in Python for the timestamp lookup and the cleaner.

Layout of a batch (big endian; "offset" = byte position inside the batch)::

    0  baseOffset            int64   patched by the log on append
    8  batchLength           int32   bytes after this field (total size = batchLength + 12)
    12 partitionLeaderEpoch  int32   patched to 0 on append (single node)
    16 magic                 int8    must be 2
    17 crc                   uint32  CRC-32C (Castagnoli) of bytes 21..end
    21 attributes            int16   bits 0-2 codec, 3 timestamp type (1 = LogAppendTime),
                                     4 transactional, 5 control, 6 has delete horizon
    23 lastOffsetDelta       int32
    27 baseTimestamp         int64
    35 maxTimestamp          int64
    43 producerId            int64   -1 = not idempotent
    51 producerEpoch         int16
    53 baseSequence          int32
    57 recordsCount          int32
    61 records...                    compressed as a whole when codec != 0

The CRC does not cover baseOffset or partitionLeaderEpoch, so assigning offsets never
recomputes it; switching to LogAppendTime (attributes + maxTimestamp) does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from crc32c import crc32c

from backbone.broker.errors import CorruptRecord, InvalidRecord

from .compression import CODEC_NAMES, CodecUnavailable, decompress
from .records import scan

__all__ = [
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "BatchHeader",
    "Record",
    "encode_batch",
    "iter_headers",
    "iter_records",
    "parse_header",
    "patched_header",
    "validate_batches",
]

LOG_OVERHEAD = 12  # baseOffset + batchLength
HEADER_SIZE = 61
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD

_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_START = 21
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


@dataclass(slots=True)
class BatchHeader:
    """The 61-byte header of one batch, plus where it sits (``position``) in its buffer."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    position: int = 0
    # Filled by validate_batches from the records (produce path only): the records'
    # smallest and largest timestamps (CreateTime) and how many have a null key.
    min_record_timestamp: int = -1
    max_record_timestamp: int = -1
    null_keys: int = 0

    @property
    def size(self) -> int:
        """Total bytes of the batch including the 12-byte log overhead."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_CODEC_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def last_sequence(self) -> int:
        """The sequence of the batch's last record (wrapping at int32 max, like Kafka)."""
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) % 2**31


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Read the header at ``pos`` (the caller checked that 61 bytes are there)."""
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    header.position = pos
    return header


def validate_batches(buf: memoryview) -> list[BatchHeader]:
    """Check every batch of a produce request's records blob; called by PartitionLog.append.

    Per batch, as Kafka's ``LogValidator`` does: the 12-byte prefix and the declared length
    fit in the buffer, the length covers a header, magic is 2, the CRC-32C matches (these
    raise CorruptRecord); recordsCount equals lastOffsetDelta + 1 and an idempotent batch
    has a base sequence (InvalidRecord); the codec id is known and a compressed records
    section decompresses (CorruptRecord); then every record: lengths, offset deltas 0..n-1,
    headers, exactly recordsCount records (``records.scan``, InvalidRecord). Fills each
    header's ``min/max_record_timestamp`` and ``null_keys``. Messages name the batch.
    One crc32c call and one C walk per batch; decompression only for compressed batches.
    """
    headers: list[BatchHeader] = []
    end = len(buf)
    pos = 0
    index = 0
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise CorruptRecord(
                f"record batch {index} is truncated: {end - pos} bytes left, a batch header "
                f"needs {HEADER_SIZE}"
            )
        header = parse_header(buf, pos)
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecord(
                f"record batch {index} declares length {header.batch_length}, below the "
                f"minimum {MIN_BATCH_LENGTH}"
            )
        if header.size > end - pos:
            raise CorruptRecord(
                f"record batch {index} declares {header.size} bytes but only {end - pos} remain"
            )
        if header.magic != 2:
            raise CorruptRecord(
                f"record batch {index} has magic {header.magic}; only magic 2 (Kafka 0.11+ "
                "record batches) is accepted"
            )
        actual = crc32c(buf[pos + _CRC_START : pos + header.size])
        if actual != header.crc:
            raise CorruptRecord(
                f"record batch {index} fails its CRC-32C check (stored {header.crc:#010x}, "
                f"computed {actual:#010x})"
            )
        if header.last_offset_delta < 0 or header.records_count != header.last_offset_delta + 1:
            raise InvalidRecord(
                f"record batch {index} holds {header.records_count} records but its "
                f"lastOffsetDelta is {header.last_offset_delta}"
            )
        if header.producer_id >= 0 and header.base_sequence < 0:
            raise InvalidRecord(
                f"record batch {index} has producer id {header.producer_id} but no base "
                f"sequence ({header.base_sequence})"
            )
        _check_records(buf[pos : pos + header.size], header, index)
        headers.append(header)
        pos += header.size
        index += 1
    return headers


def _check_records(batch: memoryview, header: BatchHeader, index: int) -> None:
    """Walk the records of one batch (decompressing first if needed); fill the header's
    record timestamps and null-key count."""
    codec = header.compression
    section: bytes | memoryview = batch[HEADER_SIZE:]
    if codec:
        if codec not in CODEC_NAMES:
            raise CorruptRecord(
                f"record batch {index} uses compression codec id {codec}, which does not "
                f"exist (known: {', '.join(f'{i} {n}' for i, n in CODEC_NAMES.items())})"
            )
        try:
            section = decompress(codec, section)
        except CodecUnavailable as exc:
            raise InvalidRecord(f"record batch {index} cannot be checked: {exc}") from exc
        except ValueError as exc:
            raise CorruptRecord(f"record batch {index}: {exc}") from exc
    try:
        summary = scan(section, header.records_count)
    except InvalidRecord as exc:
        raise InvalidRecord(f"record batch {index}: {exc}") from None
    low = header.base_timestamp + summary.min_timestamp_delta
    high = header.base_timestamp + summary.max_timestamp_delta
    if low < _INT64_MIN or high > _INT64_MAX:
        raise InvalidRecord(
            f"record batch {index}: a record timestamp (base timestamp "
            f"{header.base_timestamp} + delta) does not fit 64 bits"
        )
    header.min_record_timestamp = low
    header.max_record_timestamp = high
    header.null_keys = summary.null_keys


def patched_header(
    buf: memoryview,
    header: BatchHeader,
    base_offset: int,
    log_append_time: int | None,
    max_timestamp: int | None = None,
) -> bytes:
    """Return the batch's 61 header bytes with baseOffset set and partitionLeaderEpoch = 0.

    With ``log_append_time`` (ms), also set the timestamp-type bit and maxTimestamp. Else,
    with ``max_timestamp`` (the largest record timestamp, CreateTime topics), set
    maxTimestamp to it and clear the LogAppendTime bit when the producer's header says
    otherwise (Sarama sends -1), as Kafka does. Either change recomputes the CRC over the
    new header tail and the untouched records section; a consistent header costs nothing.
    """
    out = bytearray(buf[header.position : header.position + HEADER_SIZE])
    struct.pack_into(">qi", out, 0, base_offset, header.batch_length)
    struct.pack_into(">i", out, 12, 0)
    if log_append_time is not None:
        attributes, timestamp = header.attributes | ATTR_LOG_APPEND_TIME, log_append_time
    elif max_timestamp is not None and (
        max_timestamp != header.max_timestamp or header.is_log_append_time
    ):
        attributes, timestamp = header.attributes & ~ATTR_LOG_APPEND_TIME, max_timestamp
    else:
        return bytes(out)
    struct.pack_into(">h", out, 21, attributes)
    struct.pack_into(">q", out, 35, timestamp)
    crc = crc32c(out[_CRC_START:])
    crc = crc32c(buf[header.position + HEADER_SIZE : header.position + header.size], crc)
    struct.pack_into(">I", out, 17, crc)
    return bytes(out)


def iter_headers(
    read: object, start: int, end: int, *, check_crc: bool = False
) -> Iterator[BatchHeader]:
    """Walk the batches stored between byte ``start`` and ``end`` of a segment file.

    ``read`` is ``os.pread``-like: ``read(length, position) -> bytes``. Stops (without
    raising) at the first position that does not hold a whole, plausible batch; the caller
    compares the last ``position + size`` with ``end`` to detect a torn or corrupt tail.
    With ``check_crc`` each batch is read whole and its CRC verified (recovery only).
    """
    pos = start
    while end - pos >= HEADER_SIZE:
        raw = read(HEADER_SIZE, pos)  # type: ignore[operator]
        if len(raw) < HEADER_SIZE:
            return
        header = parse_header(raw)
        header.position = pos
        if (
            header.magic != 2
            or header.batch_length < MIN_BATCH_LENGTH
            or header.size > end - pos
            or header.last_offset_delta < 0
        ):
            return
        if check_crc:
            body = read(header.size - _CRC_START, pos + _CRC_START)  # type: ignore[operator]
            if len(body) != header.size - _CRC_START or crc32c(body) != header.crc:
                return
        yield header
        pos += header.size


@dataclass(slots=True)
class Record:
    """One record of a batch, as the cleaner and the timestamp lookup need it."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    raw: memoryview  # the record's bytes including its length varint

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecord("a record varint runs past the end of its batch")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecord("a record varint is longer than 10 bytes")


def records_section(batch: bytes | memoryview, header: BatchHeader) -> bytes | memoryview:
    """The (decompressed) records bytes of a whole batch given as ``batch``.

    Raises CodecUnavailable when the codec's package is missing.
    """
    body = memoryview(batch)[HEADER_SIZE : header.size]
    if header.compression:
        try:
            return decompress(header.compression, body)
        except ValueError as exc:
            raise CorruptRecord(f"batch at offset {header.base_offset}: {exc}") from exc
    return body


def iter_records(batch: bytes | memoryview, header: BatchHeader) -> Iterator[Record]:
    """Decode the records of one whole batch (decompressing if needed).

    Raises CorruptRecord on malformed records, CodecUnavailable for a missing codec.
    """
    data = memoryview(records_section(batch, header))
    pos = 0
    for _ in range(header.records_count):
        length, body = _varint(data, pos)
        end = body + length
        if length < 0 or end > len(data):
            raise CorruptRecord(
                f"a record in the batch at offset {header.base_offset} runs past its end"
            )
        p = body + 1  # attributes (unused)
        ts_delta, p = _varint(data, p)
        offset_delta, p = _varint(data, p)
        key_len, p = _varint(data, p)
        key = None
        if key_len >= 0:
            key = bytes(data[p : p + key_len])
            p += key_len
        value_len, p = _varint(data, p)
        value = None
        if value_len >= 0:
            value = bytes(data[p : p + value_len])
            p += value_len
        if p > end:
            raise CorruptRecord(
                f"a record in the batch at offset {header.base_offset} overruns its length"
            )
        yield Record(offset_delta, ts_delta, key, value, data[pos:end])
        pos = end
    if pos != len(data):
        raise CorruptRecord(
            f"the batch at offset {header.base_offset} has {len(data) - pos} bytes after its "
            f"{header.records_count} records"
        )


def build_batch(header: BatchHeader, records: list[Record], compress_with: object) -> bytes:
    """Re-assemble a batch keeping ``header``'s offsets, timestamps and producer fields but
    only ``records`` (raw bytes, offset deltas unchanged); used by the cleaner.

    ``compress_with(codec, data) -> bytes`` compresses the records section when the batch
    was compressed. The lastOffsetDelta is kept (Kafka's rule: the producer's last sequence
    must stay derivable), so recordsCount may be smaller than lastOffsetDelta + 1.
    """
    section = b"".join(bytes(r.raw) for r in records)
    if header.compression and records:
        section = compress_with(header.compression, section)  # type: ignore[operator]
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(section)
    out = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        out,
        0,
        header.base_offset,
        batch_length,
        header.partition_leader_epoch,
        2,
        0,
        header.attributes if records else header.attributes & ~ATTR_CODEC_MASK,
        header.last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        len(records),
    )
    out += section
    struct.pack_into(">I", out, 17, crc32c(out[_CRC_START:]))
    return bytes(out)


def _write_varint(value: int) -> bytes:
    raw = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def encode_batch(records: list[tuple[bytes | None, bytes | None]], timestamp_ms: int) -> bytes:
    """A new uncompressed batch (base offset 0, no producer id) holding ``records`` as
    (key, value), all stamped ``timestamp_ms``: what the broker writes for itself
    (``__consumer_offsets``). Python per record: not for the produce path."""
    parts = []
    for delta, (key, value) in enumerate(records):
        body = b"".join(
            (
                b"\x00\x00",  # attributes, timestamp delta 0
                _write_varint(delta),
                _write_varint(-1) if key is None else _write_varint(len(key)) + key,
                _write_varint(-1) if value is None else _write_varint(len(value)) + value,
                b"\x00",  # no headers
            )
        )
        parts.append(_write_varint(len(body)) + body)
    section = b"".join(parts)
    out = bytearray(HEADER_SIZE)
    last = len(records) - 1
    _HEADER.pack_into(
        out, 0, 0, MIN_BATCH_LENGTH + len(section), 0, 2, 0, 0, last,
        timestamp_ms, timestamp_ms, -1, -1, -1, len(records),
    )  # fmt: skip
    out += section
    struct.pack_into(">I", out, 17, crc32c(out[_CRC_START:]))
    return bytes(out)
