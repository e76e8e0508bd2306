"""RecentBatches: where the last batches of the active segment start, kept in memory.

Consumers mostly fetch near the log end. For those reads PartitionLog.read slices the
active segment with the (base offset, file position) pairs remembered at append time,
instead of reading batch headers back from the file (the sparse offset index and a
header scan, ``Segment.find`` / ``Segment.slice_end``, serve older offsets). The pairs
are a contiguous run ending at the segment's end: at most ``capacity`` batches, trimmed
to half when full, reset when the log rolls to a new segment.
"""

from __future__ import annotations

import bisect

from .batch import BatchHeader
from .segment import FileSlice, Segment

__all__ = ["RecentBatches"]

#: How many recently appended batches of the active segment keep their file position.
CAPACITY = 4096


class RecentBatches:
    """The positions of the batches appended last to one partition's active segment."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._segment: Segment | None = None
        self._offsets: list[int] = []
        self._positions: list[int] = []

    def remember(
        self, segment: Segment, assigned: list[tuple[BatchHeader, int]], position: int
    ) -> None:
        """Batches (header, assigned base offset) just written to ``segment`` at ``position``."""
        offsets, positions = self._offsets, self._positions
        if self._segment is not segment:
            self._segment = segment
            offsets.clear()
            positions.clear()
        for header, base_offset in assigned:
            offsets.append(base_offset)
            positions.append(position)
            position += header.size
        if len(offsets) > self.capacity:
            drop = len(offsets) - self.capacity // 2
            del offsets[:drop]
            del positions[:drop]

    def slice(self, segment: Segment, offset: int, max_bytes: int) -> FileSlice | None:
        """The slice ``PartitionLog.read`` returns for ``offset`` (same rules as
        ``Segment.slice_end``: whole batches up to ``max_bytes``, at least one); None when
        ``offset`` is before the remembered batches or ``segment`` is not theirs."""
        offsets = self._offsets
        if self._segment is not segment or not offsets or offset < offsets[0]:
            return None
        positions = self._positions
        i = bisect.bisect_right(offsets, offset) - 1
        first = positions[i]
        limit = first + max(max_bytes, 0)
        size = segment.size
        stop = size
        if size > limit:
            j = bisect.bisect_right(positions, limit) - 1
            if j > i:
                stop = positions[j]
            elif i + 1 < len(positions):  # the first batch alone is over max_bytes (KIP-74)
                stop = positions[i + 1]
        return FileSlice(segment, first, stop - first)
