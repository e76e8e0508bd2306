"""Recovery of a partition folder when the broker starts (``PartitionLog.load``).

The crash rule: everything acknowledged to an acks=all producer was fsynced, so a crash
can only leave behind what was written after the last fsync, at the end of the active
segment (the last one). Recovery therefore:

1. removes leftovers of interrupted writes: ``*.tmp`` (atomic replacements of index,
   checkpoint and metadata files) and ``*.log.cleaned`` (a compaction copy never renamed
   over its segment);
2. reads the ``log-start-offset`` checkpoint (DeleteRecords; an unreadable one is
   ignored with a WARNING: the first segment's base offset applies);
3. opens the segments in base-offset order; the last one is validated batch by batch
   and cut at the first torn or corrupt batch, and every missing or stale index is
   rebuilt (``Segment.open``). If an older segment turns out truncated, the segments
   after it cannot be trusted either: they are removed, each with a WARNING.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .segment import Segment

__all__ = ["LOG_START_FILE", "recover_segments"]

logger = logging.getLogger(__name__)

LOG_START_FILE = "log-start-offset"
_SEGMENT_FILE = re.compile(r"^(\d{20})\.log$")


def recover_segments(directory: Path, index_interval_bytes: int, segments: list[Segment]) -> int:
    """Recover ``directory`` (created if missing), appending its segments to ``segments``
    (the caller closes them if this raises); returns the log start offset checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.iterdir():
        if leftover.name.endswith((".tmp", ".cleaned")):
            leftover.unlink()
    checkpoint = 0
    try:
        checkpoint = int((directory / LOG_START_FILE).read_text().strip() or 0)
    except FileNotFoundError:
        pass
    except ValueError:
        logger.warning("ignoring an unreadable %s in %s", LOG_START_FILE, directory)
    bases = sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := _SEGMENT_FILE.match(p.name))
    )
    for i, base in enumerate(bases):
        active = i == len(bases) - 1
        segment, truncated = Segment.open(
            directory, base, active=active, index_interval_bytes=index_interval_bytes
        )
        segments.append(segment)
        if truncated and not active:
            for later in bases[i + 1 :]:
                logger.warning(
                    "recovery removed segment %020d of %s: it follows a truncated segment",
                    later,
                    directory,
                )
                for ext in (".log", ".index", ".timeindex"):
                    (directory / f"{later:020d}{ext}").unlink(missing_ok=True)
            break
    return checkpoint
