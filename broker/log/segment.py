"""One log segment: ``<base offset, 20 digits>.log`` plus its ``.index`` and ``.timeindex``.

Format of the .log file: magic-v2 record batches back to back, exactly as the producer sent
them except that baseOffset and partitionLeaderEpoch are patched (and, on LogAppendTime
topics, maxTimestamp + attributes + CRC). Nothing else: no per-segment header or trailer.
Batches' offsets strictly increase; the segment's base offset is the first offset it may
hold (its first batch's baseOffset, or the log end offset when it was rolled).

Writes: :meth:`Segment.append` writes the patched headers and the untouched record bytes
with ``pwritev`` at the end of the file, on the event loop (page cache); fsync happens off
the loop in the flusher. A failed or short write is cut back with ``ftruncate``.

Crash-recovery rule (:meth:`Segment.open`): the active (last) segment is scanned batch by
batch with the CRC verified; the file is truncated at the first torn or corrupt batch (a
WARNING says how many bytes were cut and from which position) and its indexes are rebuilt
from the surviving batches. A closed segment's indexes are loaded and checked (see
``index.py``), and the batches after the last index entry are walked to find the segment's
end; if that walk does not end exactly at the file size, the segment is recovered like an
active one and the caller drops every later segment (their data came after a hole).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from backbone.broker.errors import KafkaStorageError
from backbone.durable import write_file_atomically

from .batch import BatchHeader, iter_headers
from .index import OffsetIndex, TimeIndex

__all__ = ["FileSlice", "Segment", "segment_name"]

logger = logging.getLogger(__name__)

_IOV_MAX = 1024


def segment_name(base_offset: int) -> str:
    """The 20-digit, zero-padded file stem of a segment (Kafka's naming)."""
    return f"{base_offset:020d}"


class FileSlice:
    """A byte range of an open segment file, for ``sendfile`` or ``pread``.

    Returned by PartitionLog.read; the server sends it with ``os.sendfile(sock, fileno(),
    position, length)`` or calls :meth:`read`. A slice is a reader of its segment: while
    it lives, a deleted segment's file stays open (the reaper closes it once the last
    reader is gone). The server calls :meth:`release` as soon as the slice is sent; a
    slice that is dropped unsent releases itself when it is garbage.
    """

    __slots__ = ("_released", "_segment", "length", "position")

    def __init__(self, segment: Segment, position: int, length: int) -> None:
        self._segment = segment
        self.position = position
        self.length = length
        self._released = False
        segment.acquire()

    def fileno(self) -> int:
        return self._segment.fd

    def release(self) -> None:
        """Done with the bytes (idempotent): the segment's file may be closed if deleted."""
        if not self._released:
            self._released = True
            self._segment.release()

    def __del__(self) -> None:
        self.release()

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The bytes of the range (``pread``; the file offset is not moved)."""
        chunks = []
        pos, left = self.position, self.length
        fd = self._segment.fd
        while left:
            chunk = os.pread(fd, left, pos)
            if not chunk:
                raise KafkaStorageError(
                    f"segment file ended {left} bytes before the slice end at {pos + left}"
                )
            chunks.append(chunk)
            pos += len(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def __repr__(self) -> str:
        return f"FileSlice(fd={self._segment.fd}, position={self.position}, length={self.length})"


class Segment:
    """A segment of a partition's log; created and owned by PartitionLog.

    ``readers`` counts who reads the file outside the loop's synchronous calls (file
    slices on their way to a socket, the cleaner's thread): a deleted segment's file is
    closed only once it drops to 0 (``SegmentReaper``).
    """

    def __init__(self, directory: Path, base_offset: int, fd: int, created_ms: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.fd = fd
        self.readers = 0
        self.closed = False
        self.on_unread: Callable[[Segment], None] | None = None  # set by the reaper
        self.size = 0
        self.next_offset = base_offset
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = -1  # max timestamp of the first batch (segment.ms roll)
        self.created_ms = created_ms
        self.bytes_since_index_entry = 0
        self.index_interval_bytes = 4096

    # ------------------------------------------------------------------ files
    @property
    def log_path(self) -> Path:
        return self.directory / (segment_name(self.base_offset) + ".log")

    @property
    def index_path(self) -> Path:
        return self.directory / (segment_name(self.base_offset) + ".index")

    @property
    def time_index_path(self) -> Path:
        return self.directory / (segment_name(self.base_offset) + ".timeindex")

    @classmethod
    def create(
        cls, directory: Path, base_offset: int, now_ms: int, index_interval_bytes: int
    ) -> Segment:
        """Create an empty segment file (called on roll and for a new partition)."""
        path = directory / (segment_name(base_offset) + ".log")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        segment = cls(directory, base_offset, fd, now_ms)
        segment.index_interval_bytes = index_interval_bytes
        for stale in (segment.index_path, segment.time_index_path):
            stale.unlink(missing_ok=True)
        return segment

    @classmethod
    def open(
        cls, directory: Path, base_offset: int, *, active: bool, index_interval_bytes: int
    ) -> tuple[Segment, bool]:
        """Open an existing segment and recover it (see the module docstring).

        Returns the segment and whether it had to be truncated (the caller then drops every
        later segment).
        """
        path = directory / (segment_name(base_offset) + ".log")
        fd = os.open(path, os.O_RDWR)
        stat = os.fstat(fd)
        segment = cls(directory, base_offset, fd, int(stat.st_mtime * 1000))
        segment.index_interval_bytes = index_interval_bytes
        segment.size = stat.st_size
        if not active and segment._load_indexes():
            return segment, False
        truncated = segment._recover(check_crc=True)
        if not active:
            segment.seal()
        return segment, truncated

    @classmethod
    def open_rewritten(
        cls, directory: Path, base_offset: int, path: Path, index_interval_bytes: int
    ) -> Segment:
        """Open a rewritten copy (the cleaner's ``.cleaned`` file, renamed into place later)
        and index it by a header scan."""
        fd = os.open(path, os.O_RDWR)
        segment = cls(directory, base_offset, fd, int(os.fstat(fd).st_mtime * 1000))
        segment.index_interval_bytes = index_interval_bytes
        segment.size = os.fstat(fd).st_size
        segment._recover(check_crc=False)
        return segment

    def _load_indexes(self) -> bool:
        """Load a closed segment's indexes and walk its tail; False = needs recovery."""
        index = OffsetIndex.load(self.index_path, self.size)
        if index is None or (self.size and not len(index)):
            logger.warning("rebuilding the offset index of %s (missing or invalid)", self.log_path)
            return False
        start_rel, start = (
            (index.relative_offsets[-1], index.positions[-1]) if len(index) else (0, 0)
        )
        end = start
        last: BatchHeader | None = None
        for header in iter_headers(self._pread, start, self.size):
            if end == start and len(index) and header.base_offset != self.base_offset + start_rel:
                logger.warning("the offset index of %s does not match its log", self.log_path)
                return False
            end = header.position + header.size
            last = header
        if end != self.size:
            logger.warning(
                "closed segment %s does not end with a whole batch (%d of %d bytes valid)",
                self.log_path,
                end,
                self.size,
            )
            return False
        self.next_offset = last.next_offset if last else self.base_offset
        time_index = TimeIndex.load(self.time_index_path, self.next_offset - self.base_offset)
        if time_index is None or (self.size and not len(time_index)):
            logger.warning("rebuilding the time index of %s (missing or invalid)", self.log_path)
            return False
        self.index = index
        self.time_index = time_index
        self.max_timestamp = time_index.max_timestamp
        self.offset_of_max_timestamp = (
            self.base_offset + time_index.relative_offsets[-1] if len(time_index) else -1
        )
        first = next(iter_headers(self._pread, 0, self.size), None)
        self.first_batch_timestamp = first.max_timestamp if first else -1
        return True

    def _recover(self, *, check_crc: bool) -> bool:
        """Scan every batch, rebuild both indexes, truncate a torn/corrupt tail."""
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.max_timestamp = self.offset_of_max_timestamp = self.first_batch_timestamp = -1
        self.bytes_since_index_entry = 0
        self.next_offset = self.base_offset
        end = 0
        for header in iter_headers(self._pread, 0, self.size, check_crc=check_crc):
            self._track(header, header.base_offset, header.position)
            end = header.position + header.size
        truncated = end != self.size
        if truncated:
            logger.warning(
                "recovery truncated %s at byte %d: cut %d bytes of torn or corrupt data after "
                "offset %d",
                self.log_path,
                end,
                self.size - end,
                self.next_offset - 1,
            )
            os.ftruncate(self.fd, end)
            self.size = end
        return truncated

    def _track(self, header: BatchHeader, base_offset: int, position: int) -> None:
        """Update indexes and timestamps for a batch now stored at ``position``."""
        relative = base_offset - self.base_offset
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = base_offset
        if position == 0:
            self.first_batch_timestamp = header.max_timestamp
        if position == 0 or self.bytes_since_index_entry >= self.index_interval_bytes:
            self.index.append(relative, position)
            self.bytes_since_index_entry = 0
            self.time_index.maybe_append(
                self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
            )
        self.bytes_since_index_entry += header.size
        self.next_offset = base_offset + header.last_offset_delta + 1

    def _pread(self, length: int, position: int) -> bytes:
        return os.pread(self.fd, length, position)

    # ------------------------------------------------------------------ writes
    def append(
        self, chunks: Sequence[bytes | memoryview], batches: Sequence[tuple[BatchHeader, int, int]]
    ) -> None:
        """Write ``chunks`` at the end of the file and index ``batches``.

        ``batches`` = (header as received, assigned base offset, max timestamp as stored).
        Called by PartitionLog.append on the event loop. Raises KafkaStorageError (the file
        is cut back to its previous size first).
        """
        start = self.size
        try:
            position = start
            for i in range(0, len(chunks), _IOV_MAX):
                group = list(chunks[i : i + _IOV_MAX])
                while group:
                    written = os.pwritev(self.fd, group, position)
                    position += written
                    while group and written >= len(group[0]):
                        written -= len(group[0])
                        group.pop(0)
                    if group and written:
                        group[0] = memoryview(group[0])[written:]
        except OSError as exc:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                logger.exception("could not cut %s back to %d bytes", self.log_path, start)
            raise KafkaStorageError(f"writing to {self.log_path} failed: {exc}") from exc
        position = start
        for header, base_offset, max_timestamp in batches:
            header.max_timestamp = max_timestamp
            self._track(header, base_offset, position)
            position += header.size
            self.size = position

    def seal(self) -> None:
        """Called when the segment stops being the active one: final time index entry, then
        both indexes written to disk (the log itself is fsynced by the flusher)."""
        if self.max_timestamp > self.time_index.max_timestamp:
            self.time_index.maybe_append(
                self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
            )
        self.write_indexes()

    def write_indexes(self) -> None:
        """Write both indexes to disk (rename over the old files)."""
        try:
            write_file_atomically(self.index_path, self.index.to_bytes(), fsync=False)
            write_file_atomically(self.time_index_path, self.time_index.to_bytes(), fsync=False)
        except OSError as exc:
            raise KafkaStorageError(
                f"writing the indexes of {self.log_path} failed: {exc}"
            ) from exc

    # ------------------------------------------------------------------ reads
    def find(self, offset: int) -> BatchHeader | None:
        """The first batch of this segment whose last offset is >= ``offset`` (None if none)."""
        _, position = self.index.lookup(offset - self.base_offset)
        for header in iter_headers(self._pread, position, self.size):
            if header.last_offset >= offset:
                return header
        return None

    def headers_from(self, position: int) -> list[BatchHeader]:
        """Every batch header from ``position`` to the end (retention, cleaner, recovery)."""
        return list(iter_headers(self._pread, position, self.size))

    def slice_end(self, first: BatchHeader, max_bytes: int) -> int:
        """End position of a read starting at batch ``first``: whole batches only, at least
        one (KIP-74), at most ``max_bytes`` otherwise."""
        start = first.position
        end = start + first.size
        limit = start + max(max_bytes, 0)
        if end >= limit or end >= self.size:
            return end
        if self.size <= limit:
            return self.size
        jump = self.index.floor_position(limit)
        if jump > end:
            end = jump
        for header in iter_headers(self._pread, end, self.size):
            if header.position + header.size > limit:
                break
            end = header.position + header.size
        return end

    def read_batch(self, header: BatchHeader) -> bytes:
        """The whole bytes of one batch of this segment."""
        return os.pread(self.fd, header.size, header.position)

    def timestamp_start(self, timestamp: int) -> int:
        """Byte position to scan from for the first batch with max timestamp >= ``timestamp``."""
        relative = self.time_index.start_for(timestamp)
        return self.index.lookup(relative)[1]

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> None:
        """One more reader of the file (a slice, the cleaner)."""
        self.readers += 1

    def release(self) -> None:
        """A reader is done; the last one hands a retired segment back to the reaper."""
        self.readers -= 1
        if self.readers <= 0 and self.on_unread is not None:
            callback, self.on_unread = self.on_unread, None
            callback(self)

    def close(self) -> None:
        """Close the file (once: a descriptor number is reused as soon as it is closed)."""
        if self.closed:
            return
        self.closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass

    def delete_files(self) -> None:
        """Unlink the segment's three files (the fd stays valid until :meth:`close`)."""
        for path in (self.log_path, self.index_path, self.time_index_path):
            path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return (
            f"Segment({self.log_path.name}, offsets {self.base_offset}..{self.next_offset - 1}, "
            f"{self.size} bytes)"
        )
