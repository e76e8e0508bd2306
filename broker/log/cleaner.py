"""Log compaction (``cleanup.policy=compact``): keep the newest record per key.

LogManager owns one :class:`LogCleaner`; its maintenance task calls
:meth:`LogCleaner.clean` for each partition of a compacted topic every
``cleaner_interval_s`` (tests call ``LogManager.clean()``). The cleaner keeps what it
remembers between passes (tombstone horizons, how far it cleaned) per partition itself;
the partition log knows nothing of compaction.

One pass over a partition:

1. The cleanable range is the closed segments (never the active one), oldest first, up to
   the first whose largest timestamp is newer than ``now - min.compaction.lag.ms``.
   Nothing happens when no segment was added since the last pass and no tombstone
   horizon expired.
2. In a thread: read every batch of the range, decompressing when needed (the only place
   besides the timestamp lookup), and build the map key -> offset of its newest record.
3. Rewrite each segment: a record survives when it is the newest for its key; a tombstone
   (null value) survives until the segment's tombstone horizon, set to
   ``now + delete.retention.ms`` by the first pass that keeps it (KIP-534's rule, kept per
   segment in ``cleaner-horizons.json`` of the partition folder). Batches keep their base
   offset, lastOffsetDelta, timestamps and producer fields; surviving records keep their
   bytes (hence their offset and timestamp deltas); the records section is recompressed
   with the batch's codec and the CRC recomputed. A batch left without records is dropped,
   except the last batch of a producer still known to the partition, which stays as a
   header-only batch so its sequence survives a restart. A batch whose codec package is
   missing is kept unchanged (its keys are not considered).
4. Segments that changed are written to ``<base>.log.cleaned`` and fsynced; back on the
   loop, the old index files are removed, the copy is renamed over ``<base>.log`` and its
   indexes written. A crash in between leaves either the old or the new log, and a missing
   index is rebuilt on start. In-flight reads keep the old file open (see SegmentReaper).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakKeyDictionary

from backbone.broker.errors import CorruptRecord
from backbone.durable import fsync_dir, write_file_atomically

from .batch import BatchHeader, Record, build_batch, iter_records
from .compression import CodecUnavailable, compress
from .partition import PartitionLog
from .segment import Segment

__all__ = ["HORIZONS_FILE", "LogCleaner", "load_horizons"]

logger = logging.getLogger(__name__)

HORIZONS_FILE = "cleaner-horizons.json"


def load_horizons(directory: Path) -> dict[int, int]:
    """Segment base offset -> tombstone horizon (ms), as last persisted."""
    try:
        raw = json.loads((directory / HORIZONS_FILE).read_text())
        return {int(k): int(v) for k, v in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError, TypeError):
        logger.warning("ignoring an unreadable %s in %s", HORIZONS_FILE, directory)
        return {}


@dataclass(slots=True)
class _Rewrite:
    old: Segment
    new: Segment | None  # None: unchanged content (only the horizon changed)
    cleaned_path: Path


@dataclass(slots=True)
class _PartitionState:
    """What the cleaner remembers about one partition between passes."""

    horizons: dict[int, int]  # segment base offset -> tombstone horizon (ms)
    checkpoint: int = -1  # next offset after the last cleaned segment


class LogCleaner:
    """Compaction passes over partition logs (owned by LogManager, one per broker).

    The per-partition state is loaded from ``cleaner-horizons.json`` on the first pass
    over a partition and forgotten with the partition log (a deleted topic's logs).
    """

    def __init__(self) -> None:
        self._states: WeakKeyDictionary[PartitionLog, _PartitionState] = WeakKeyDictionary()

    def _state(self, log: PartitionLog) -> _PartitionState:
        state = self._states.get(log)
        if state is None:
            state = self._states[log] = _PartitionState(load_horizons(log.directory))
        return state

    def horizons(self, log: PartitionLog) -> dict[int, int]:
        """Segment base offset -> tombstone horizon (ms) of ``log``, as last persisted."""
        return dict(self._state(log).horizons)

    async def clean(self, log: PartitionLog, now_ms: int) -> int:
        """One compaction pass over ``log``; returns the number of segments rewritten."""
        config = log.config
        cleanable: list[Segment] = []
        for segment in log.segments[:-1]:
            if segment.max_timestamp > now_ms - config.min_compaction_lag_ms:
                break
            cleanable.append(segment)
        if not cleanable:
            return 0
        state = self._state(log)
        horizons = dict(state.horizons)
        dirty = cleanable[-1].next_offset > state.checkpoint or any(
            horizons.get(s.base_offset, now_ms + 1) <= now_ms for s in cleanable
        )
        if not dirty:
            return 0
        last_batches = {
            entry.producer_id: entry.batches[-1].base_offset
            for entry in log.producers.entries()
            if entry.batches
        }
        for segment in cleanable:  # read in a thread: their files stay open meanwhile
            segment.acquire()
        try:
            rewrites, new_horizons = await asyncio.to_thread(
                _compact, cleanable, horizons, now_ms, config.delete_retention_ms, last_batches
            )
        finally:
            for segment in cleanable:
                segment.release()
        replaced = 0
        for rewrite in rewrites:
            if rewrite.new is None:
                continue
            if log.closed or rewrite.old not in log.segments or rewrite.old is log.active_segment:
                rewrite.new.close()
                rewrite.cleaned_path.unlink(missing_ok=True)
                continue
            old = rewrite.old
            old.index_path.unlink(missing_ok=True)
            old.time_index_path.unlink(missing_ok=True)
            os.replace(rewrite.cleaned_path, old.log_path)
            rewrite.new.seal()
            log.replace_segment(old, rewrite.new)
            replaced += 1
        if log.closed:
            return 0
        present = {s.base_offset for s in log.segments}
        state.horizons = {b: h for b, h in new_horizons.items() if b in present}
        state.checkpoint = cleanable[-1].next_offset
        await asyncio.to_thread(
            write_file_atomically,
            log.directory / HORIZONS_FILE,
            json.dumps({str(k): v for k, v in state.horizons.items()}).encode(),
        )
        if replaced:
            await asyncio.to_thread(fsync_dir, log.directory)
            logger.info(
                "compacted %d segments of %s-%d",
                replaced,
                log.topic,
                log.partition,
                extra=log.context,
            )
        return replaced


def _batches(segment: Segment) -> list[tuple[BatchHeader, bytes]]:
    return [(h, segment.read_batch(h)) for h in segment.headers_from(0)]


def _decode(header: BatchHeader, raw: bytes, *, warn: bool = False) -> list[Record] | None:
    """The records of a stored batch, or None when they cannot be read (kept unchanged)."""
    try:
        return list(iter_records(raw, header))
    except (CodecUnavailable, CorruptRecord) as exc:
        if warn:
            logger.warning(
                "cleaner keeps the batch at offset %d unchanged: %s", header.base_offset, exc
            )
        return None


def _compact(
    segments: list[Segment],
    horizons: dict[int, int],
    now_ms: int,
    delete_retention_ms: int,
    last_batches: dict[int, int],
) -> tuple[list[_Rewrite], dict[int, int]]:
    """Thread side of a pass: map, then rewrite segments that change (one segment's
    batches in memory at a time)."""
    newest: dict[bytes, int] = {}
    for segment in segments:
        for header, raw in _batches(segment):
            for record in _decode(header, raw) or ():
                if record.key is not None:
                    newest[record.key] = header.base_offset + record.offset_delta

    rewrites: list[_Rewrite] = []
    new_horizons = dict(horizons)
    for segment in segments:
        batches = [(h, raw, _decode(h, raw, warn=True)) for h, raw in _batches(segment)]
        horizon = horizons.get(segment.base_offset)
        expired = horizon is not None and horizon <= now_ms
        changed = False
        keeps_tombstones = False
        out: list[bytes] = []
        for header, raw, records in batches:
            if records is None:
                out.append(raw)
                continue
            kept = []
            for record in records:
                offset = header.base_offset + record.offset_delta
                if record.key is not None and newest.get(record.key) != offset:
                    continue
                if record.is_tombstone and record.key is not None:
                    if expired:
                        continue
                    keeps_tombstones = True
                kept.append(record)
            if len(kept) == len(records):
                out.append(raw)
                continue
            changed = True
            if kept or last_batches.get(header.producer_id) == header.base_offset:
                out.append(build_batch(header, kept, compress))
        if keeps_tombstones and horizon is None:
            new_horizons[segment.base_offset] = now_ms + delete_retention_ms
        elif not keeps_tombstones:
            new_horizons.pop(segment.base_offset, None)
        if not changed:
            continue
        cleaned = segment.log_path.with_name(segment.log_path.name + ".cleaned")
        fd = os.open(cleaned, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in out:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        new = Segment.open_rewritten(
            segment.directory, segment.base_offset, cleaned, segment.index_interval_bytes
        )
        rewrites.append(_Rewrite(segment, new, cleaned))
    return rewrites, new_horizons
