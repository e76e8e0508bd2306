"""Idempotent producer state of one partition: the last 5 batches per producer id.

PartitionLog.append calls :meth:`ProducerStateTable.prepare` for the batches of a produce
request after it assigned their offsets and before it writes anything, then
:meth:`ProducerStateTable.commit` once the write succeeded. The rules are Kafka's
(``ProducerAppendInfo.checkSequence``):

- producer id -1 (or base sequence -1): not idempotent, no check;
- a batch whose epoch equals the producer's and whose (first, last) sequence equals one of
  the 5 cached batches is a duplicate: the append returns that batch's base offset and
  writes nothing;
- epoch below the producer's current epoch: InvalidProducerEpoch (fenced);
- a higher epoch must start at sequence 0 (unless the producer was unknown);
- same epoch: the first sequence must follow the last one (wrapping from int32 max to 0),
  else OutOfOrderSequenceNumber;
- an unknown producer id (no state, e.g. after a restart lost nothing but retention removed
  its batches) is accepted at any sequence, as Kafka does.

Producers idle for longer than ``producer_id_expiration_ms`` (LogManager option, Kafka's
``producer.id.expiration.ms``, default 1 day) are forgotten by the maintenance task.

The state is not stored separately: on start the partition replays the batch headers of
its segments through :meth:`ProducerStateTable.replay` (headers carry producer id, epoch,
base sequence and lastOffsetDelta).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from backbone.broker.errors import InvalidProducerEpoch, OutOfOrderSequenceNumber

from .batch import BatchHeader

__all__ = ["BatchMetadata", "ProducerEntry", "ProducerStateTable"]

MAX_CACHED_BATCHES = 5
_INT32_MAX = 2**31 - 1


@dataclass(slots=True, frozen=True)
class BatchMetadata:
    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset_delta: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=MAX_CACHED_BATCHES))
    last_timestamp: int = -1  # ms: append time of its last batch (replay: the batch's max)

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1

    @property
    def last_offset(self) -> int:
        """Last offset of the producer's latest batch (-1 when none)."""
        if not self.batches:
            return -1
        last = self.batches[-1]
        return last.base_offset + last.last_offset_delta

    def copy(self) -> ProducerEntry:
        return ProducerEntry(
            self.producer_id,
            self.epoch,
            deque(self.batches, maxlen=MAX_CACHED_BATCHES),
            self.last_timestamp,
        )

    def add(self, header: BatchHeader, base_offset: int, timestamp: int) -> None:
        self.last_timestamp = max(self.last_timestamp, timestamp)
        if header.producer_epoch != self.epoch:
            self.epoch = header.producer_epoch
            self.batches.clear()
        self.batches.append(
            BatchMetadata(
                header.base_sequence, header.last_sequence, base_offset, header.last_offset_delta
            )
        )


def _in_sequence(last_sequence: int, first_sequence: int) -> bool:
    return first_sequence == last_sequence + 1 or (
        first_sequence == 0 and last_sequence == _INT32_MAX
    )


class ProducerStateTable:
    """Per-partition map producer id -> ProducerEntry; owned by PartitionLog."""

    def __init__(self) -> None:
        self._entries: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, producer_id: int) -> ProducerEntry | None:
        return self._entries.get(producer_id)

    def entries(self) -> list[ProducerEntry]:
        return list(self._entries.values())

    def prepare(
        self, batches: list[tuple[BatchHeader, int]], now_ms: int = -1
    ) -> tuple[dict[int, ProducerEntry], int | None]:
        """Check (header, assigned base offset) pairs in order (``now_ms``: append time).

        Returns (updated entries to commit, None) or ({}, duplicate's original base offset).
        Raises InvalidProducerEpoch or OutOfOrderSequenceNumber; nothing is changed here.
        """
        pending: dict[int, ProducerEntry] = {}
        for header, base_offset in batches:
            pid = header.producer_id
            if pid < 0 or header.base_sequence < 0:
                continue
            entry = pending.get(pid)
            if entry is None:
                current = self._entries.get(pid)
                entry = current.copy() if current else ProducerEntry(pid, -1)
            epoch = header.producer_epoch
            if epoch == entry.epoch:
                for cached in entry.batches:
                    if (
                        cached.first_sequence == header.base_sequence
                        and cached.last_sequence == header.last_sequence
                    ):
                        return {}, cached.base_offset
            if epoch < entry.epoch:
                raise InvalidProducerEpoch(
                    f"producer {pid} has epoch {epoch}, but epoch {entry.epoch} is current: "
                    "this producer was fenced by a newer instance"
                )
            if epoch > entry.epoch:
                if header.base_sequence != 0 and entry.epoch != -1:
                    raise OutOfOrderSequenceNumber(
                        f"producer {pid} started epoch {epoch} at sequence "
                        f"{header.base_sequence}; a new epoch must start at 0"
                    )
            elif entry.batches and not _in_sequence(entry.last_sequence, header.base_sequence):
                raise OutOfOrderSequenceNumber(
                    f"producer {pid} (epoch {epoch}) sent sequence {header.base_sequence}, "
                    f"expected {(entry.last_sequence + 1) % (_INT32_MAX + 1)}"
                )
            entry.add(header, base_offset, now_ms)
            pending[pid] = entry
        return pending, None

    def commit(self, pending: dict[int, ProducerEntry]) -> None:
        self._entries.update(pending)

    def expire(self, now_ms: int, max_age_ms: int) -> int:
        """Forget producers idle for more than ``max_age_ms`` (Kafka's
        producer.id.expiration.ms); returns how many. Called by the maintenance task."""
        stale = [
            pid
            for pid, entry in self._entries.items()
            if now_ms - entry.last_timestamp > max_age_ms
        ]
        for pid in stale:
            del self._entries[pid]
        return len(stale)

    def replay(self, header: BatchHeader) -> None:
        """Apply a stored batch header without checks (recovery on start)."""
        pid = header.producer_id
        if pid < 0 or header.base_sequence < 0:
            return
        entry = self._entries.get(pid)
        if entry is None:
            entry = self._entries[pid] = ProducerEntry(pid, header.producer_epoch)
        if header.producer_epoch < entry.epoch:
            return
        entry.add(header, header.base_offset, header.max_timestamp)
