"""SegmentReaper: closes the files of deleted segments only after a delay.

A fetch answered with a :class:`~.segment.FileSlice` sends from the segment's open
descriptor after the handler returned (``sendfile`` in the server's writer). When
retention, DeleteRecords, compaction or a topic deletion removes that segment
meanwhile, its file is unlinked at once but its descriptor stays open for
``delay_s`` (60 s by default), so the in-flight send completes from the unlinked
file instead of failing or reading a reused descriptor.
"""

from __future__ import annotations

import time

from .segment import Segment

__all__ = ["SegmentReaper"]


class SegmentReaper:
    """Closes the files of deleted segments after a delay (in-flight reads finish first).

    Owned by LogManager, shared by its partitions; ``reap()`` runs in the maintenance loop,
    ``reap(force=True)`` on close.
    """

    def __init__(self, delay_s: float = 60.0) -> None:
        self.delay_s = delay_s
        self._pending: list[tuple[float, Segment]] = []

    def retire(self, segment: Segment) -> None:
        self._pending.append((time.monotonic() + self.delay_s, segment))

    def reap(self, *, force: bool = False) -> int:
        now = time.monotonic()
        keep, closed = [], 0
        for deadline, segment in self._pending:
            if force or deadline <= now:
                segment.close()
                closed += 1
            else:
                keep.append((deadline, segment))
        self._pending = keep
        return closed
