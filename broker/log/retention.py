"""Retention: delete whole segments of a partition by time, size and log start offset.

Called by LogManager for every partition, by its maintenance task every
``retention_check_interval_s`` and by ``LogManager.enforce_retention()``, with the
injected clock. Rules (Kafka's):

- segments entirely below the log start offset (DeleteRecords) are always deleted;
- with ``delete`` in ``cleanup.policy``:
  - time: oldest first, a segment is deleted while ``now - its largest timestamp >
    retention.ms`` (-1 = forever); if the active segment itself is expired and not empty,
    the log rolls first, so the log ends up empty with log start offset = high watermark;
    a closed segment left empty by the cleaner is deleted;
  - size: oldest first, a closed segment is deleted while the rest still holds at least
    ``retention.bytes`` (-1 = unlimited); the active segment never is.
- each deletion advances the log start offset to the new first segment's base offset.
"""

from __future__ import annotations

from .partition import PartitionLog

__all__ = ["enforce_retention"]


def enforce_retention(log: PartitionLog, now_ms: int) -> int:
    """One retention pass over ``log``; returns the number of segments deleted."""
    if log.closed:
        return 0
    deleted = log.delete_segments_below_start()
    config = log.config
    if not config.delete:
        return deleted
    if config.retention_ms >= 0:
        while log.segments:
            segment = log.segments[0]
            active = segment is log.active_segment
            if not segment.size:
                if active:
                    break
                log.delete_oldest_segment()  # emptied by the cleaner
                deleted += 1
                continue
            newest = segment.max_timestamp if segment.max_timestamp >= 0 else segment.created_ms
            if now_ms - newest <= config.retention_ms:
                break
            if active:
                log.roll(now_ms)
            log.delete_oldest_segment()
            deleted += 1
    if config.retention_bytes >= 0:
        total = log.size_bytes
        while len(log.segments) > 1 and total - log.segments[0].size >= config.retention_bytes:
            total -= log.segments[0].size
            log.delete_oldest_segment()
            deleted += 1
    return deleted
