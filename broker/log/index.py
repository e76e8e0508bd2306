"""Sparse offset index and time index of one segment (Kafka's OffsetIndex / TimeIndex).

On disk, next to ``<base offset>.log``:

``<base>.index``: 8-byte entries, big endian ``int32 relative offset, int32 position``:
the base offset (minus the segment's base offset) of a batch and the byte position where
that batch starts in the .log file. One entry is added whenever at least
``index.interval.bytes`` of log were written since the last entry (the first batch of a
segment is always indexed). Relative offsets and positions strictly increase.

``<base>.timeindex``: 12-byte entries, big endian ``int64 timestamp, int32 relative offset``:
written at the same points as the offset index, but only when the segment's running maximum
timestamp grew; the entry holds that running maximum and the base offset of the batch that
reached it. When a segment is closed (rolled), a final entry with the segment's largest
timestamp is appended, so a closed segment's largest timestamp is its last entry.

Both indexes are kept in memory (arrays, bisected on lookup) and written to disk whole when
their segment is rolled or the log is closed cleanly, then fsynced.

Crash-recovery rule: the active (last) segment's indexes are never trusted: recovery scans
that segment batch by batch (CRC checked) and rebuilds them. For a closed segment the index
files are loaded and checked (entry size, monotonic, positions inside the file, offsets
inside the segment); a missing or inconsistent index is rebuilt from the .log by a scan of
batch headers, and a WARNING is logged.
"""

from __future__ import annotations

import array
import bisect
import struct
import sys
from pathlib import Path

__all__ = ["OffsetIndex", "TimeIndex"]

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class OffsetIndex:
    """Sparse map relative offset -> byte position of the batch starting there."""

    __slots__ = ("positions", "relative_offsets")

    def __init__(self) -> None:
        self.relative_offsets = array.array("i")
        self.positions = array.array("i")

    def __len__(self) -> int:
        return len(self.positions)

    def append(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> tuple[int, int]:
        """(relative offset, position) of the last entry at or below ``relative_offset``,
        or (0, 0) (the segment start) when there is none."""
        i = bisect.bisect_right(self.relative_offsets, relative_offset) - 1
        if i < 0:
            return 0, 0
        return self.relative_offsets[i], self.positions[i]

    def floor_position(self, position: int) -> int:
        """The largest indexed batch position at or below ``position`` (0 if none)."""
        i = bisect.bisect_right(self.positions, position) - 1
        return self.positions[i] if i >= 0 else 0

    def to_bytes(self) -> bytes:
        n = len(self.positions)
        out = array.array("i", bytes(8 * n))
        out[0::2] = self.relative_offsets
        out[1::2] = self.positions
        if sys.byteorder == "little":
            out.byteswap()
        return out.tobytes()

    @classmethod
    def load(cls, path: Path, log_size: int) -> OffsetIndex | None:
        """Read an index file; None when missing or inconsistent (the caller rebuilds)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) % _OFFSET_ENTRY.size:
            return None
        raw = array.array("i", data)
        if sys.byteorder == "little":
            raw.byteswap()
        index = cls()
        index.relative_offsets = raw[0::2]
        index.positions = raw[1::2]
        last_rel = last_pos = -1
        for rel, pos in zip(index.relative_offsets, index.positions, strict=True):
            if rel <= last_rel or pos <= last_pos or pos >= log_size:
                return None
            last_rel, last_pos = rel, pos
        if index.positions and index.positions[0] != 0:
            return None
        return index


class TimeIndex:
    """Sparse map running max timestamp -> relative offset of the batch that reached it."""

    __slots__ = ("relative_offsets", "timestamps")

    def __init__(self) -> None:
        self.timestamps = array.array("q")
        self.relative_offsets = array.array("i")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def max_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        """Add an entry when ``timestamp`` exceeds the last one (monotonic index)."""
        if timestamp > self.max_timestamp:
            self.timestamps.append(timestamp)
            self.relative_offsets.append(relative_offset)

    def start_for(self, timestamp: int) -> int:
        """Relative offset to start scanning from for the first batch whose max timestamp
        is >= ``timestamp``: the entry before the first entry reaching it (0 if none)."""
        i = bisect.bisect_left(self.timestamps, timestamp) - 1
        return self.relative_offsets[i] if i >= 0 else 0

    def to_bytes(self) -> bytes:
        timestamps = array.array("q", self.timestamps)
        relative_offsets = array.array("i", self.relative_offsets)
        if sys.byteorder == "little":
            timestamps.byteswap()
            relative_offsets.byteswap()
        ts_bytes, rel_bytes = timestamps.tobytes(), relative_offsets.tobytes()
        out = bytearray(_TIME_ENTRY.size * len(timestamps))
        for k in range(8):  # interleave with C-level strided copies (no per-entry work)
            out[k::12] = ts_bytes[k::8]
        for k in range(4):
            out[8 + k :: 12] = rel_bytes[k::4]
        return bytes(out)

    @classmethod
    def load(cls, path: Path, max_relative_offset: int) -> TimeIndex | None:
        """Read a time index file; None when missing or inconsistent (the caller rebuilds)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) % _TIME_ENTRY.size:
            return None
        index = cls()
        last_ts = last_rel = -(2**63)
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            if ts <= last_ts or rel < last_rel or rel < 0 or rel > max_relative_offset:
                return None
            index.timestamps.append(ts)
            index.relative_offsets.append(rel)
            last_ts, last_rel = ts, rel
        return index
