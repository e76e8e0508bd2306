"""PartitionLog: the segments of one partition, its offsets and its producer state.

Folder ``<data_dir>/<topic>-<partition>/`` holds the segments (see ``segment.py``) and
``log-start-offset`` (decimal text, written atomically with fsync by DeleteRecords).
The log start offset is ``max(that checkpoint, first segment's base offset)``.

Everything that changes the log runs on the event loop without awaiting in between
(validate -> check producer state -> roll -> write -> index), so appends to one partition
never interleave; only the fsync (group commit, see ``flusher.py``) and checkpoint writes
leave the loop. Reads return a :class:`FileSlice` of one segment; a deleted segment's file
descriptor is closed as soon as no slice of it is in flight (``reaper.py``), so an
in-flight sendfile completes and the disk space comes back right after.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backbone.broker.errors import (
    CorruptRecord,
    InvalidRecord,
    InvalidRequiredAcks,
    InvalidTimestamp,
    KafkaStorageError,
    MessageTooLarge,
    OffsetOutOfRange,
    UnknownTopicOrPartition,
)
from backbone.durable import write_file_atomically

from .batch import HEADER_SIZE, BatchHeader, patched_header, validate_batches
from .config import LogConfig
from .diskspace import DiskWatch
from .flusher import Flusher
from .producers import ProducerStateTable
from .reaper import SegmentReaper
from .recovery import LOG_START_FILE, recover_segments
from .segment import FileSlice, Segment
from .tail import RecentBatches
from .timestamps import first_at_or_after, largest_timestamp, offsets_before

__all__ = ["AppendResult", "PartitionLog", "ReadResult"]

logger = logging.getLogger(__name__)

_INT32_MAX = 2**31 - 1


@dataclass(slots=True, frozen=True)
class AppendResult:
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int


@dataclass(slots=True, frozen=True)
class ReadResult:
    records: FileSlice | bytes
    high_watermark: int
    log_start_offset: int


class PartitionLog:
    """The log of one partition. Created by LogManager (``load``); not thread-safe."""

    def __init__(
        self,
        topic: str,
        partition: int,
        directory: Path,
        config: LogConfig,
        *,
        flusher: Flusher,
        reaper: SegmentReaper,
        clock: Callable[[], float] = time.time,
        disk: DiskWatch | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.config = config
        self.flusher = flusher
        self.reaper = reaper
        self.clock = clock
        self.disk = disk if disk is not None else DiskWatch()
        self.producers = ProducerStateTable()
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self._log_start_offset = 0
        self._watchers: list[Callable[[], None]] = []
        self._closed = False
        self.recent = RecentBatches()  # positions of the last batches (fast tail reads)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        topic: str,
        partition: int,
        directory: Path,
        config: LogConfig,
        *,
        flusher: Flusher,
        reaper: SegmentReaper,
        clock: Callable[[], float] = time.time,
        disk: DiskWatch | None = None,
    ) -> PartitionLog:
        """Open (creating if needed) and recover a partition folder (``recovery.py``), then
        rebuild the producer state from its batch headers. Blocking: LogManager runs it in
        a thread before serving."""
        log = cls(
            topic,
            partition,
            directory,
            config,
            flusher=flusher,
            reaper=reaper,
            clock=clock,
            disk=disk,
        )
        try:
            checkpoint = recover_segments(directory, config.index_interval_bytes, log.segments)
            interval = config.index_interval_bytes
            if not log.segments:
                now_ms = int(clock() * 1000)
                log.segments.append(Segment.create(directory, checkpoint, now_ms, interval))
                flusher.mark_dir(directory)
            log._bases = [s.base_offset for s in log.segments]
            log._log_start_offset = max(checkpoint, log.segments[0].base_offset)
            if log._log_start_offset > log.high_watermark:
                log._log_start_offset = log.high_watermark
            for segment in log.segments:
                for header in segment.headers_from(0):
                    log.producers.replay(header)
        except BaseException:
            log.discard()  # a half-opened folder must not keep its segments' files open
            raise
        return log

    @property
    def context(self) -> dict[str, object]:
        """``extra`` of this partition's log records (JSON log lines carry it)."""
        return {"topic": self.topic, "partition": self.partition}

    # ------------------------------------------------------------------ offsets
    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def high_watermark(self) -> int:
        """Log end offset (single node: every written batch is committed)."""
        return self.segments[-1].next_offset

    log_end_offset = high_watermark

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def active_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def closed(self) -> bool:
        """True once the partition was closed (topic deleted or manager stopped)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise UnknownTopicOrPartition(
                f"partition {self.topic}-{self.partition} was deleted or closed"
            )

    # ------------------------------------------------------------------ append
    async def append(self, records: bytes | bytearray | memoryview, *, acks: int) -> AppendResult:
        """Validate, assign offsets and append the batches of one produce request.

        Called by the Produce handler. acks=-1 returns after the data is fsynced (flush
        policy ``always``, group commit); acks=0/1 after the write. A duplicate of one of a
        producer's last 5 batches returns the original base offset and writes nothing.
        """
        result, fd = self.append_nowait(records, acks=acks)
        if fd is not None:
            await self.flusher.sync(fd)
        return result

    def append_nowait(
        self, records: bytes | bytearray | memoryview, *, acks: int
    ) -> tuple[AppendResult, int | None]:
        """The synchronous part of :meth:`append`: ``(result, fd)``, where ``fd`` is the file
        the caller must ``flusher.sync`` before acknowledging (acks=-1 under the ``always``
        policy), else None. Lets the Produce handler write every partition of a request at
        once and wait for one group-commit round for all of them."""
        if acks not in (-1, 0, 1):
            raise InvalidRequiredAcks(f"acks must be -1, 0 or 1 (got {acks})")
        result = self.write(records)
        flusher = self.flusher
        if acks == -1 and flusher.waits_on_acks:
            return result, self.active_segment.fd
        if flusher.policy == "interval":
            flusher.mark(self.active_segment.fd)
        return result, None

    def write(self, records: bytes | bytearray | memoryview) -> AppendResult:
        """The synchronous part of :meth:`append`: validate, assign offsets and write the
        batches (page cache; the caller decides when to wait for an fsync). Raises the
        validation errors (nothing written) and KafkaStorageError. Also used by the broker
        for its own records (``__consumer_offsets``)."""
        self._check_open()
        view = memoryview(records)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        headers = validate_batches(view)
        if not headers:
            raise CorruptRecord("the produce request holds no record batch for this partition")
        config = self.config
        now_ms = int(self.clock() * 1000)
        for header in headers:
            self._check_batch(header, config, now_ms)
        log_append_time = now_ms if config.log_append_time else None
        offset = self.high_watermark
        assigned: list[tuple[BatchHeader, int]] = []
        for header in headers:
            assigned.append((header, offset))
            offset += header.last_offset_delta + 1
        pending, duplicate = self.producers.prepare(assigned, now_ms)
        if duplicate is not None:
            logger.debug(
                "duplicate batch for %s-%d: original base offset %d",
                self.topic,
                self.partition,
                duplicate,
                extra=self.context,
            )
            return AppendResult(duplicate, -1, self._log_start_offset)
        size = sum(h.size for h in headers)
        if self._should_roll(size, headers, now_ms, offset):
            try:
                self.roll(now_ms)
            except KafkaStorageError as exc:
                self.disk.write_failed(self.directory, exc)
                raise
        segment = self.active_segment
        chunks: list[bytes | memoryview] = []
        stored: list[tuple[BatchHeader, int, int]] = []
        for header, base_offset in assigned:
            start = header.position
            max_ts = log_append_time if log_append_time is not None else header.max_record_timestamp
            chunks.append(patched_header(view, header, base_offset, log_append_time, max_ts))
            chunks.append(view[start + HEADER_SIZE : start + header.size])
            stored.append((header, base_offset, max_ts))
        position = segment.size
        try:
            segment.append(chunks, stored)
        except KafkaStorageError as exc:
            self.disk.write_failed(segment.log_path, exc)
            raise
        if self.disk.failing is not None:
            self.disk.write_succeeded(segment.log_path)
        self.recent.remember(segment, assigned, position)
        self.producers.commit(pending)
        self._notify()
        return AppendResult(
            assigned[0][1],
            log_append_time if log_append_time is not None else -1,
            self._log_start_offset,
        )

    def _check_batch(self, header: BatchHeader, config: LogConfig, now_ms: int) -> None:
        where = f"{self.topic}-{self.partition}"
        if header.size > config.max_message_bytes:
            raise MessageTooLarge(
                f"a record batch of {header.size} bytes exceeds max.message.bytes "
                f"({config.max_message_bytes}) of {where}"
            )
        if header.is_control:
            raise InvalidRecord(f"clients may not produce control batches (to {where})")
        if header.is_transactional:
            raise InvalidRecord(
                f"transactional batches are not supported by this broker (to {where})"
            )
        if config.compact and header.null_keys:
            raise InvalidRecord(
                f"Compacted topic cannot accept message without key in topic partition {where}."
            )
        if not config.log_append_time:
            low = now_ms - config.message_timestamp_before_max_ms
            high = now_ms + config.message_timestamp_after_max_ms
            for ts in (header.min_record_timestamp, header.max_record_timestamp):
                if ts != -1 and not low <= ts <= high:  # -1: no timestamp (Kafka skips it)
                    raise InvalidTimestamp(
                        f"Timestamp {ts} of a record in {where} is out of range: it must be "
                        f"within [{low}, {high}] (message.timestamp.before.max.ms / "
                        "message.timestamp.after.max.ms)"
                    )

    def _should_roll(
        self, size: int, headers: list[BatchHeader], now_ms: int, next_offset: int
    ) -> bool:
        segment = self.active_segment
        if not segment.size:
            return False
        config = self.config
        if segment.size + size > config.segment_bytes:
            return True
        if next_offset - segment.base_offset > _INT32_MAX:
            return True
        incoming_ts = max(h.max_record_timestamp for h in headers)
        if segment.first_batch_timestamp >= 0 and incoming_ts >= 0:
            waited = incoming_ts - segment.first_batch_timestamp
        else:
            waited = now_ms - segment.created_ms
        return waited > config.segment_ms

    def roll(self, now_ms: int | None = None) -> Segment:
        """Close the active segment and start a new one at the log end offset."""
        if now_ms is None:
            now_ms = int(self.clock() * 1000)
        old = self.active_segment
        try:
            new = Segment.create(
                self.directory, old.next_offset, now_ms, self.config.index_interval_bytes
            )
        except OSError as exc:
            raise KafkaStorageError(
                f"cannot create a new segment for {self.topic}-{self.partition}: {exc}"
            ) from exc
        old.seal()
        self.segments.append(new)
        self._bases.append(new.base_offset)
        if self.flusher.policy != "os":
            self.flusher.mark(old.fd)
        self.flusher.mark_dir(self.directory)
        logger.debug(
            "rolled %s-%d at offset %d",
            self.topic,
            self.partition,
            new.base_offset,
            extra=self.context,
        )
        return new

    # ------------------------------------------------------------------ watchers
    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on the loop after each append becomes readable (Fetch long
        polling). Returns the unsubscribe function."""
        self._watchers.append(callback)

        def unsubscribe() -> None:
            try:
                self._watchers.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    @property
    def watcher_count(self) -> int:
        """How many callbacks wait for the next append (Fetch requests long-polling here)."""
        return len(self._watchers)

    def _notify(self) -> None:
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:
                logger.exception(
                    "a watcher of %s-%d failed", self.topic, self.partition, extra=self.context
                )

    # ------------------------------------------------------------------ reads
    def read(self, offset: int, max_bytes: int) -> ReadResult:
        """Whole batches from the one containing ``offset`` (Fetch handler).

        At least one batch even above ``max_bytes`` (KIP-74); empty at the high watermark;
        OffsetOutOfRange outside [log_start_offset, high_watermark].
        """
        self._check_open()
        start, end = self._log_start_offset, self.high_watermark
        if offset < start or offset > end:
            raise OffsetOutOfRange(
                f"offset {offset} is out of range for {self.topic}-{self.partition} "
                f"(log start offset {start}, high watermark {end})"
            )
        if offset == end:
            return ReadResult(b"", end, start)
        tail = self.recent.slice(self.segments[-1], offset, max_bytes)
        if tail is not None:
            return ReadResult(tail, end, start)
        i = max(bisect.bisect_right(self._bases, offset) - 1, 0)
        for segment in self.segments[i:]:
            header = segment.find(offset)
            if header is not None:
                stop = segment.slice_end(header, max_bytes)
                return ReadResult(
                    FileSlice(segment, header.position, stop - header.position), end, start
                )
        return ReadResult(b"", end, start)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp_ms`` at or
        after the log start offset; None when there is none (ListOffsets)."""
        self._check_open()
        return first_at_or_after(list(self.segments), self._log_start_offset, timestamp_ms)

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (ListOffsets -3)."""
        self._check_open()
        return largest_timestamp(list(self.segments), self._log_start_offset)

    def offsets_before(self, timestamp_ms: int, max_count: int) -> list[int]:
        """ListOffsets v0: up to ``max_count`` segment offsets, largest first (see
        ``timestamps.offsets_before``)."""
        self._check_open()
        now_ms = int(self.clock() * 1000)
        return offsets_before(
            list(self.segments),
            self._log_start_offset,
            self.high_watermark,
            timestamp_ms,
            max_count,
            now_ms,
        )

    # ------------------------------------------------------------------ deletion
    async def delete_records(self, before_offset: int) -> int:
        """Advance the log start offset to ``before_offset`` (-1 = high watermark), persist
        it, delete segments entirely below it; returns the new log start offset."""
        self._check_open()
        end = self.high_watermark
        if before_offset == -1:
            before_offset = end
        if before_offset < 0 or before_offset > end:
            raise OffsetOutOfRange(
                f"cannot delete records before offset {before_offset} of "
                f"{self.topic}-{self.partition}: the high watermark is {end}"
            )
        if before_offset > self._log_start_offset:
            self._log_start_offset = before_offset
            value = str(before_offset).encode()
            path = self.directory / LOG_START_FILE
            try:
                await asyncio.to_thread(write_file_atomically, path, value)
            except OSError as exc:
                raise KafkaStorageError(
                    f"cannot persist the log start offset of {self.topic}-{self.partition}: {exc}"
                ) from exc
            self.delete_segments_below_start()
        return self._log_start_offset

    def delete_segments_below_start(self) -> int:
        """Remove segments entirely below the log start offset; returns how many."""
        deleted = 0
        while len(self.segments) > 1 and self.segments[1].base_offset <= self._log_start_offset:
            self.delete_oldest_segment()
            deleted += 1
        return deleted

    def delete_oldest_segment(self) -> None:
        """Remove the first segment (retention, DeleteRecords); its fd is retired."""
        segment = self.segments.pop(0)
        self._bases.pop(0)
        segment.delete_files()
        self.flusher.forget(segment.fd)
        self.reaper.retire(segment)
        self._log_start_offset = max(self._log_start_offset, self.segments[0].base_offset)
        logger.info(
            "deleted segment %020d of %s-%d; log start offset is now %d",
            segment.base_offset,
            self.topic,
            self.partition,
            self._log_start_offset,
            extra=self.context,
        )

    def replace_segment(self, old: Segment, new: Segment) -> bool:
        """Swap a cleaned copy in for ``old`` (cleaner); False if ``old`` is gone."""
        try:
            i = self.segments.index(old)
        except ValueError:
            return False
        if old is self.active_segment:
            return False
        self.segments[i] = new
        self.flusher.forget(old.fd)
        self.reaper.retire(old)
        return True

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Write the active segment's indexes and hand every file to the reaper."""
        if self._closed:
            return
        self._closed = True
        try:
            self.active_segment.write_indexes()
        except Exception:
            logger.exception("could not write the indexes of %s", self.active_segment.log_path)
        for segment in self.segments:
            self.flusher.forget(segment.fd)
            self.reaper.retire(segment)
        self._watchers.clear()

    def discard(self) -> None:
        """Close every file now, for a log that was never served (failed load or rolled-back
        creation): no fetch can hold one of its segments."""
        self._closed = True
        for segment in self.segments:
            self.flusher.forget(segment.fd)
            segment.close()
        self._watchers.clear()

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, offsets "
            f"{self._log_start_offset}..{self.high_watermark}, {len(self.segments)} segments)"
        )
