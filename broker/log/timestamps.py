"""Timestamp lookups in a partition's segments (ListOffsets by time and MAX_TIMESTAMP).

The time index of each segment (``Segment.timestamp_start``) narrows the search to the
batches that may hold the timestamp; their headers' max timestamps skip whole batches;
only the first candidate batch is decoded (decompressed if needed) to find the record.
A batch with LogAppendTime, or one whose codec package is missing, answers with its
first offset and max timestamp (its records all carry that time, or cannot be read).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from backbone.broker.errors import CorruptRecord

from .batch import BatchHeader, iter_records
from .compression import CodecUnavailable
from .segment import Segment

__all__ = ["first_at_or_after", "largest_timestamp", "offsets_before"]

logger = logging.getLogger(__name__)


def first_at_or_after(
    segments: Sequence[Segment], start: int, timestamp_ms: int
) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after offset ``start`` whose timestamp
    is >= ``timestamp_ms``; None when there is none."""
    for segment in segments:
        if segment.max_timestamp < timestamp_ms or segment.next_offset <= start:
            continue
        for header in segment.headers_from(segment.timestamp_start(timestamp_ms)):
            if header.last_offset < start or header.max_timestamp < timestamp_ms:
                continue
            found = _find_in_batch(segment, header, timestamp_ms, start)
            if found is not None:
                return found
    return None


def largest_timestamp(segments: Sequence[Segment], start: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the record with the largest timestamp; None for no records."""
    best: Segment | None = None
    for segment in segments:
        if segment.max_timestamp >= 0 and (
            best is None or segment.max_timestamp > best.max_timestamp
        ):
            best = segment
    if best is None:
        return None
    return first_at_or_after(segments, start, best.max_timestamp)


def offsets_before(
    segments: Sequence[Segment],
    start: int,
    end: int,
    timestamp_ms: int,
    max_count: int,
    now_ms: int,
) -> list[int]:
    """ListOffsets v0 (Kafka's ``legacyFetchOffsetsBefore``): up to ``max_count`` offsets,
    largest first, taken from the segments' base offsets (at least ``start``) plus the log
    end offset ``end`` when the last segment is not empty, each paired with the time it
    was last written (the file's mtime; ``now_ms`` for the end): -1 = from the end, -2 =
    from the first, else from the last one written at or before ``timestamp_ms``."""
    entries = [
        (max(s.base_offset, start), os.fstat(s.fd).st_mtime_ns // 1_000_000) for s in segments
    ]
    if segments and segments[-1].size > 0:
        entries.append((end, now_ms))
    if timestamp_ms == -1:
        index = len(entries) - 1
    elif timestamp_ms == -2:
        index = 0
    else:
        index = len(entries) - 1
        while index >= 0 and entries[index][1] > timestamp_ms:
            index -= 1
    count = max(min(max_count, index + 1), 0)
    return sorted((entries[index - j][0] for j in range(count)), reverse=True)


def _find_in_batch(
    segment: Segment, header: BatchHeader, timestamp_ms: int, start: int
) -> tuple[int, int] | None:
    if header.is_log_append_time:
        return max(header.base_offset, start), header.max_timestamp
    try:
        for record in iter_records(segment.read_batch(header), header):
            offset = header.base_offset + record.offset_delta
            ts = header.base_timestamp + record.timestamp_delta
            if offset >= start and ts >= timestamp_ms:
                return offset, ts
    except CodecUnavailable:
        return max(header.base_offset, start), header.max_timestamp
    except CorruptRecord:
        logger.warning(
            "unreadable records in the batch at offset %d of %s",
            header.base_offset,
            segment.log_path,
        )
    return None
