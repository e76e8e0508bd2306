"""Timestamp lookups in a partition's segments (ListOffsets by time and MAX_TIMESTAMP).

The time index of each segment (``Segment.timestamp_start``) narrows the search to the
batches that may hold the timestamp; their headers' max timestamps skip whole batches;
only the first candidate batch is decoded (decompressed if needed) to find the record.
A batch with LogAppendTime, or one whose codec package is missing, answers with its
first offset and max timestamp (its records all carry that time, or cannot be read).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from backbone.broker.errors import CorruptRecord

from .batch import BatchHeader, iter_records
from .compression import CodecUnavailable
from .segment import Segment

__all__ = ["first_at_or_after", "largest_timestamp"]

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
