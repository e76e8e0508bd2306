"""The coordinator's storage: Kafka's records in the ``__consumer_offsets`` topic.

:class:`GroupStore` turns the coordinator's changes into the records of
:mod:`backbone.broker.groups.records` and hands them to a :class:`RecordLog` (the topic's
partitions, implemented over the broker's log by ``backbone.broker.log.internal``):

- a commit writes one OffsetCommit record per partition, as one batch;
- OffsetDelete, DeleteGroups and a deleted topic write tombstones (null values);
- each new generation (and the empty group after the last member left) writes the
  group's GroupMetadata record, with every member's subscription and assignment.

Writes are synchronous (the page cache, in the order the coordinator made them);
:meth:`GroupStore.sync` returns once they are fsynced, and the coordinator answers a
commit only after it. On start, :meth:`GroupStore.load` reads every record (the newest
per key wins, a tombstone deletes); the log cleaner compacts the topic like any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from backbone.broker.errors import BrokerError, KafkaStorageError
from backbone.broker.groups.group import Group
from backbone.broker.groups.records import (
    GroupKey,
    GroupMetadata,
    OffsetKey,
    OffsetValue,
    decode_group_metadata,
    decode_key,
    decode_offset_value,
    encode_group_metadata,
    encode_key,
    encode_offset_value,
    partition_for,
)
from backbone.broker.groups.results import CommittedOffset

__all__ = ["GroupStore", "LoadedRecord", "RecordLog"]

logger = logging.getLogger(__name__)

LoadedRecord = tuple[OffsetKey | GroupKey, OffsetValue | GroupMetadata | None]


class RecordLog(Protocol):
    """The partitions the coordinator's records go to (``InternalTopic``)."""

    name: str

    @property
    def partition_count(self) -> int: ...

    def read(self) -> list[tuple[bytes | None, bytes | None]]:
        """Every (key, value), each partition in offset order (blocking)."""
        ...

    def write(self, partition: int, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Append ``records`` as one batch now; raises KafkaStorageError."""
        ...

    async def sync(self) -> None:
        """Return once every earlier write is fsynced; raises KafkaStorageError."""
        ...


class GroupStore:
    """Encodes the coordinator's changes as Kafka records (see the module docstring).

    ``wall_clock`` (seconds since the epoch) stamps commit and state timestamps.
    """

    def __init__(self, log: RecordLog, wall_clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self.log.name

    def _now_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    def _write(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> None:
        if not records:
            return
        try:
            self.log.write(partition_for(group_id, self.log.partition_count), records)
        except KafkaStorageError:
            raise
        except (BrokerError, OSError) as exc:
            raise KafkaStorageError(f"cannot write to {self.log.name}: {exc}") from exc

    # -- writes (page cache; call sync() before acknowledging) ------------------------

    def write_offsets(self, group_id: str, offsets: Sequence[CommittedOffset]) -> None:
        now = self._now_ms()
        self._write(
            group_id,
            [
                (
                    encode_key(OffsetKey(group_id, c.topic, c.partition)),
                    encode_offset_value(OffsetValue(c.offset, c.leader_epoch, c.metadata, now)),
                )
                for c in offsets
            ],
        )

    def delete_offsets(self, group_id: str, partitions: Sequence[tuple[str, int]]) -> None:
        self._write(
            group_id, [(encode_key(OffsetKey(group_id, t, p)), None) for t, p in partitions]
        )

    def write_group(self, group: Group, assignment: Mapping[str, bytes] | None = None) -> None:
        metadata = group.to_metadata(assignment, self._now_ms())
        self._write(
            group.group_id,
            [(encode_key(GroupKey(group.group_id)), encode_group_metadata(metadata))],
        )

    def delete_group(self, group_id: str, partitions: Sequence[tuple[str, int]]) -> None:
        """Tombstones for the group's metadata and each of its committed offsets."""
        records: list[tuple[bytes, bytes | None]] = [
            (encode_key(OffsetKey(group_id, t, p)), None) for t, p in partitions
        ]
        records.append((encode_key(GroupKey(group_id)), None))
        self._write(group_id, records)

    async def sync(self) -> None:
        try:
            await self.log.sync()
        except KafkaStorageError:
            raise
        except (BrokerError, OSError) as exc:
            raise KafkaStorageError(f"cannot fsync {self.log.name}: {exc}") from exc

    # -- start ---------------------------------------------------------------------------

    def load(self) -> list[LoadedRecord]:
        """Every decodable record in log order (blocking; the coordinator applies them in
        order, so the newest per key wins). Undecodable records are skipped with a
        WARNING (anyone may have written to the topic before it was internal)."""
        loaded: list[LoadedRecord] = []
        skipped = 0
        for key_bytes, value_bytes in self.log.read():
            try:
                if key_bytes is None:
                    raise ValueError("a record without a key")
                key = decode_key(key_bytes)
                if key is None:
                    continue  # a record kind this broker does not keep (KIP-848 groups)
                value: OffsetValue | GroupMetadata | None = None
                if value_bytes is not None:
                    value = (
                        decode_offset_value(value_bytes)
                        if isinstance(key, OffsetKey)
                        else decode_group_metadata(value_bytes)
                    )
            except ValueError as exc:
                skipped += 1
                if skipped <= 3:
                    logger.warning("Skipping an unreadable record of %s: %s", self.name, exc)
                continue
            loaded.append((key, value))
        if skipped:
            logger.warning("Skipped %d unreadable records of %s", skipped, self.name)
        return loaded
