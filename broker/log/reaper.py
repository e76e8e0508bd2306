"""SegmentReaper: closes the files of deleted segments as soon as nobody reads them.

A fetch answered with a :class:`~.segment.FileSlice` sends from the segment's open
descriptor after the handler returned (``sendfile`` in the server's writer), and the
cleaner reads segments in a thread. When retention, DeleteRecords, compaction or a
topic deletion removes a segment meanwhile, its files are unlinked at once; its
descriptor is closed when its last reader is done (``Segment.readers`` drops to 0: the
server releases a slice right after sending it, a dropped slice releases itself), so
the in-flight send completes from the unlinked file and the disk space comes back right
after, not minutes later.

Closing goes through the flusher (``Flusher.release_file``): a descriptor that the fsync
thread is syncing at that moment is closed when that round ends, never under it (a
closed descriptor number is reused at once, e.g. by a new socket).
"""

from __future__ import annotations

from collections.abc import Callable

from .segment import Segment

__all__ = ["SegmentReaper"]


def _close_now(fd: int, close: Callable[[], None]) -> None:
    close()


class SegmentReaper:
    """Closes retired segments' files once unread. Owned by LogManager, shared by its
    partitions; ``close_all()`` on shutdown closes the ones still being read."""

    def __init__(
        self, release_file: Callable[[int, Callable[[], None]], None] = _close_now
    ) -> None:
        self._release_file = release_file
        self._held: dict[Segment, None] = {}

    @property
    def held(self) -> int:
        """Retired segments whose file is still open because someone reads it."""
        return len(self._held)

    def retire(self, segment: Segment) -> None:
        """``segment`` is deleted (its files unlinked): close its file once unread."""
        if segment.readers > 0:
            self._held[segment] = None
            segment.on_unread = self._close
        else:
            self._close(segment)

    def _close(self, segment: Segment) -> None:
        self._held.pop(segment, None)
        self._release_file(segment.fd, segment.close)

    def close_all(self) -> int:
        """Close every retired file still being read (shutdown); returns how many."""
        held = list(self._held)
        for segment in held:
            segment.on_unread = None
            self._close(segment)
        return len(held)
