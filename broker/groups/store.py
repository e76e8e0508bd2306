"""The committed-offsets log: ``<data_dir>/__consumer_offsets/offsets.log``.

On-disk format: a sequence of frames, each::

    length  u32 big-endian   bytes of payload
    crc     u32 big-endian   CRC-32C of payload
    payload UTF-8 JSON object, one record

Records (``type`` field):

- ``offsets``       ``{"group", "offsets": [[topic, partition, offset, leader_epoch, metadata]]}``
- ``offset_delete`` ``{"group", "partitions": [[topic, partition]]}``
- ``group``         group metadata: ``generation``, ``protocol_type``, ``protocol_name``,
  ``leader``, ``members`` (``member_id``, ``group_instance_id``, ``client_id``,
  ``client_host``, ``session_timeout_ms``, ``rebalance_timeout_ms``, ``metadata``,
  ``assignment``; bytes as base64)
- ``group_delete``  ``{"group"}``: the group and its offsets are gone
- ``topic_delete``  ``{"topic"}``: every group's offsets for that topic are gone

Durability: :meth:`OffsetLog.append` writes the frame (page cache) and
:meth:`OffsetLog.sync` returns once an fsync covering it finished; concurrent callers
share one fsync (group commit). Callers answer a client only after ``sync``.

Crash rule: replay reads frames from the start and stops at the first frame that is
short or fails its CRC or JSON decoding; the file is truncated there with a WARNING
(a torn tail was never acknowledged, because acknowledgement waits for the fsync).

Compaction: when the file grows past ``max(compact_min_bytes, 2 x size after the last
rewrite)``, :meth:`OffsetLog.rewrite` writes the live state (one snapshot from the
coordinator) to ``offsets.log.tmp``, fsyncs it, renames it over ``offsets.log`` and
fsyncs the directory; records appended meanwhile are written to the new file after the
swap, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crc32c

from backbone.durable import write_file_atomically

__all__ = ["OffsetLog"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_MAX_RECORD = 64 * 1024 * 1024

Record = dict[str, Any]


def encode_frame(record: Record) -> bytes:
    """One framed record (length, CRC-32C, JSON payload)."""
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return _HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[Record], int]:
    """Every valid record from the start of ``data`` and where the valid prefix ends."""
    records: list[Record] = []
    pos = 0
    view = memoryview(data)
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data):
            break
        payload = view[pos + _HEADER.size : end]
        if crc32c.crc32c(payload) != crc:
            break
        try:
            record = json.loads(bytes(payload))
        except ValueError:
            break
        if not isinstance(record, dict) or "type" not in record:
            break
        records.append(record)
        pos = end
    return records, pos


class OffsetLog:
    """The append-only file behind the coordinator (see the module docstring).

    Used only by :class:`~backbone.broker.groups.coordinator.GroupCoordinator`:
    ``open()`` once on start (returns the records to replay), ``append``/``sync`` per
    change, ``rewrite`` when :attr:`should_compact`, ``close()`` on exit.
    """

    def __init__(self, directory: Path, *, compact_min_bytes: int = 1024 * 1024) -> None:
        self.directory = directory
        self.path = directory / "offsets.log"
        self._compact_min_bytes = compact_min_bytes
        self._fd: int | None = None
        self._size = 0
        self._live_size = 0
        self._written = 0
        self._synced = 0
        self._lock = asyncio.Lock()
        self._diverted: list[bytes] | None = None

    def open(self) -> list[Record]:
        """Create the directory if needed, read and validate the file, truncate a bad tail."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        if tmp.exists():
            logger.warning("Removing an unfinished offsets log rewrite %s", tmp)
            tmp.unlink()
        data = self.path.read_bytes() if self.path.exists() else b""
        records, valid = decode_frames(data)
        if valid < len(data):
            logger.warning(
                "Offsets log %s has %d bytes of corrupt or torn tail after byte %d;"
                " truncating (those records were never acknowledged)",
                self.path,
                len(data) - valid,
                valid,
            )
            with open(self.path, "r+b") as f:
                f.truncate(valid)
                f.flush()
                os.fsync(f.fileno())
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = valid
        self._live_size = valid
        logger.info("Replaying %d records from offsets log %s", len(records), self.path)
        return records

    def append(self, record: Record) -> None:
        """Write one record (not yet durable: call :meth:`sync` before acknowledging)."""
        frame = encode_frame(record)
        self._written += 1
        if self._diverted is not None:
            self._diverted.append(frame)
            return
        self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self._fd is None:
            raise RuntimeError("the offsets log is not open")
        view = memoryview(frame)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(frame)

    async def sync(self) -> None:
        """Return once everything appended before this call is fsynced (shared fsyncs)."""
        target = self._written
        if self._synced >= target:
            return
        async with self._lock:
            if self._synced >= target:
                return
            upto = self._written
            fd = self._fd
            if fd is None:
                raise RuntimeError("the offsets log is not open")
            await asyncio.to_thread(os.fsync, fd)
            self._synced = max(self._synced, upto)

    @property
    def should_compact(self) -> bool:
        """Whether the file has grown enough past its last rewrite to be worth compacting."""
        return self._size > max(self._compact_min_bytes, 2 * self._live_size)

    async def rewrite(self, snapshot: Callable[[], list[Record]]) -> None:
        """Replace the file with ``snapshot()`` (the live state), atomically."""
        async with self._lock:
            records = snapshot()
            written_at_snapshot = self._written
            self._diverted = []
            data = b"".join(encode_frame(r) for r in records)
            try:
                await asyncio.to_thread(write_file_atomically, self.path, data)
                new_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            except BaseException:
                diverted, self._diverted = self._diverted, None
                for frame in diverted:
                    self._write(frame)
                raise
            old_fd, self._fd = self._fd, new_fd
            if old_fd is not None:
                os.close(old_fd)
            diverted, self._diverted = self._diverted, None
            self._size = len(data)
            self._live_size = len(data)
            self._synced = max(self._synced, written_at_snapshot)
            for frame in diverted:
                self._write(frame)
        logger.info(
            "Compacted offsets log %s to %d records (%d bytes)", self.path, len(records), len(data)
        )

    def close(self) -> None:
        """Fsync and close the file (idempotent)."""
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
