"""DiskWatch: a log that cannot be written is logged once, and its recovery once.

While the disk is full (or a write fails for another reason), Produce answers
KAFKA_STORAGE_ERROR and nothing is stored; reads keep working. Every partition reports
its failed and successful appends to the one ``DiskWatch`` of its LogManager, which logs:

- the first failure, as one ERROR naming the file, the error and the bytes still free
  on its filesystem (``disk full: cannot write .../00000000000000000000.log: [Errno 28]
  No space left on device (4096 bytes free); produce requests answer KAFKA_STORAGE_ERROR
  until space is freed``); later failures are only counted;
- the first append that succeeds again, as one INFO with the free bytes and how many
  appends failed meanwhile.

A successful append costs one attribute check (``failing is None``).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

__all__ = ["DiskWatch", "free_bytes"]

logger = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int:
    """Bytes available to the broker on the filesystem of ``path`` (-1 if unknown)."""
    for candidate in (path, *path.parents):
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return -1


def _os_error(error: BaseException) -> OSError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__
    return None


class DiskWatch:
    """Owned by LogManager, shared by its partitions (see the module docstring)."""

    def __init__(self) -> None:
        self.failing: Path | None = None  # the file of the first failed write, while failing
        self.failed_writes = 0  # since the first failure

    def write_failed(self, path: Path, error: BaseException) -> None:
        """An append to ``path`` failed with ``error`` (a KafkaStorageError)."""
        self.failed_writes += 1
        if self.failing is not None:
            return
        self.failing = path
        cause = _os_error(error)
        reason = str(cause) if cause is not None else str(error)
        what = "disk full" if cause is not None and cause.errno in _FULL else "log write failed"
        logger.error(
            "%s: cannot write %s: %s (%d bytes free); produce requests answer "
            "KAFKA_STORAGE_ERROR until space is freed",
            what,
            path,
            reason,
            free_bytes(path),
        )

    def write_succeeded(self, path: Path) -> None:
        """An append to ``path`` succeeded after failures: log the recovery."""
        if self.failing is None:
            return
        logger.info(
            "log writes succeed again (%s, %d bytes free) after %d failed appends",
            path,
            free_bytes(path),
            self.failed_writes,
        )
        self.failing = None
        self.failed_writes = 0
