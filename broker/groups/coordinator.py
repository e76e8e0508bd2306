"""The group coordinator: groups, committed offsets and their durable records.

:class:`GroupCoordinator` = :class:`~backbone.broker.groups.membership.Membership` (the
JoinGroup/SyncGroup protocol) + ListGroups/DescribeGroups/DeleteGroups + OffsetCommit/
OffsetFetch/OffsetDelete + loading the ``__consumer_offsets`` records on start
(:mod:`backbone.broker.groups.store`: Kafka's record format, fsync before acknowledging)
and migrating an old ``offsets.log`` (:mod:`backbone.broker.groups.legacy`). The public
API is listed in the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from backbone.broker.errors import (
    BrokerError,
    GroupIdNotFound,
    GroupSubscribedToTopic,
    IllegalGeneration,
    KafkaStorageError,
    NonEmptyGroup,
    NotCoordinator,
    OffsetMetadataTooLarge,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.clock import Clock, LoopClock
from backbone.broker.groups.group import Group
from backbone.broker.groups.legacy import LEGACY_FILE, LegacyState, read_legacy
from backbone.broker.groups.membership import Membership, check_group_id
from backbone.broker.groups.records import GroupKey, GroupMetadata, OffsetKey, OffsetValue
from backbone.broker.groups.results import (
    CommittedOffset,
    GroupDescription,
    GroupListing,
    MemberDescription,
    OffsetCommit,
)
from backbone.broker.groups.state import GroupState
from backbone.broker.groups.store import GroupStore, RecordLog

__all__ = ["GroupCoordinator"]

logger = logging.getLogger(__name__)

_S = GroupState


class GroupCoordinator(Membership):
    """Consumer groups and committed offsets of one broker (see the package docstring)."""

    def __init__(
        self,
        log: RecordLog,
        *,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        legacy_dir: Path | None = None,
        initial_rebalance_delay_ms: int = 100,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 1_800_000,
        max_group_size: int | None = None,
        offset_metadata_max_bytes: int = 4096,
    ) -> None:
        super().__init__(
            clock=clock if clock is not None else LoopClock(),
            store=GroupStore(log, wall_clock),
            initial_rebalance_delay_ms=initial_rebalance_delay_ms,
            min_session_timeout_ms=min_session_timeout_ms,
            max_session_timeout_ms=max_session_timeout_ms,
            max_group_size=max_group_size,
        )
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self.legacy_dir = legacy_dir
        self._open = False

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> GroupCoordinator:
        records = await asyncio.to_thread(self._store.load)
        for key, value in records:
            self._apply(key, value)
        if self.legacy_dir is not None:
            await self._migrate(self.legacy_dir)
        now = self.clock.now()
        for group in self._groups.values():
            for member in group.members.values():
                self._touch(group, member, now=now)
        self._open = True
        logger.info(
            "Group coordinator ready: %d groups, %d committed partitions (%d records of %s)",
            len(self._groups),
            sum(len(g.offsets) for g in self._groups.values()),
            len(records),
            self._store.name,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        closing = NotCoordinator(
            "The group coordinator is shutting down; find the coordinator again."
        )
        for group in self._groups.values():
            self._cancel_group_timers(group)
            for member in group.members.values():
                if member.timer is not None:
                    member.timer.cancel()
                    member.timer = None
                member.resolve_join(closing)
                member.resolve_sync(closing)

    @property
    def groups(self) -> Mapping[str, Group]:
        """Live groups by id (read-only view for diagnostics and tests)."""
        return self._groups

    def group_exists(self, group_id: str) -> bool:
        group = self._groups.get(group_id)
        return group is not None and group.state is not _S.DEAD

    # -- ListGroups, DescribeGroups, DeleteGroups -----------------------------------

    def list_groups(self, states: Collection[str] | None = None) -> list[GroupListing]:
        """ListGroups: every live group, optionally only those in ``states``."""
        wanted = {GroupState.parse(s) for s in states} if states else None
        return [
            GroupListing(g.group_id, g.protocol_type or "", g.state.value)
            for g in self._groups.values()
            if g.state is not _S.DEAD and (wanted is None or g.state in wanted)
        ]

    def describe_group(self, group_id: str) -> GroupDescription:
        """DescribeGroups data (state "Dead" and no members for an unknown group)."""
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(group_id, _S.DEAD.value, "", "", [])
        stable = group.state is _S.STABLE
        members = [
            MemberDescription(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=m.metadata(group.protocol_name) if stable else b"",
                assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ]
        return GroupDescription(
            group_id,
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            members,
        )

    async def delete_groups(self, group_ids: Sequence[str]) -> list[BrokerError | None]:
        """DeleteGroups: remove Empty groups and their offsets (persisted before returning)."""
        results: list[BrokerError | None] = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None or group.state is _S.DEAD:
                results.append(GroupIdNotFound(f"Group {group_id!r} does not exist."))
            elif group.state is not _S.EMPTY:
                results.append(
                    NonEmptyGroup(
                        f"Group {group_id!r} still has {len(group.members)} members"
                        f" ({group.state.value}); stop its consumers first."
                    )
                )
            else:
                try:
                    self._store.delete_group(group_id, list(group.offsets))
                except KafkaStorageError as exc:
                    results.append(exc)
                    continue
                self._cancel_group_timers(group)
                group.transition(_S.DEAD)
                del self._groups[group_id]
                logger.info("Deleted group %s", group_id)
                results.append(None)
        await self._sync_log()
        return results

    # -- offsets ----------------------------------------------------------------------

    async def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        offsets: Sequence[OffsetCommit],
        group_instance_id: str | None = None,
    ) -> list[BrokerError | None]:
        """OffsetCommit: validate the member/generation, persist, fsync, then return."""
        group = self._groups.get(group_id)
        if group is None or group.state is _S.DEAD:
            if generation_id >= 0:
                raise IllegalGeneration(
                    f"Group {group_id!r} does not exist, so generation {generation_id} is stale."
                )
            group = self._groups[group_id] = Group(group_id)
        elif generation_id >= 0 or member_id or group_instance_id is not None:
            _, member = self._current_member(group_id, generation_id, member_id, group_instance_id)
            if group.state is _S.COMPLETING_REBALANCE:
                raise RebalanceInProgress(f"Group {group_id!r} is rebalancing; rejoin.")
            self._touch(group, member)
        elif group.state is not _S.EMPTY:
            raise UnknownMemberId(
                f"Group {group_id!r} has active members ({group.state.value}); only its members"
                " may commit offsets."
            )
        results: list[BrokerError | None] = []
        entries: list[CommittedOffset] = []
        for commit in offsets:
            metadata = commit.metadata or ""
            if len(metadata.encode()) > self.offset_metadata_max_bytes:
                results.append(
                    OffsetMetadataTooLarge(
                        f"The metadata of {commit.topic}-{commit.partition} is"
                        f" {len(metadata.encode())} bytes; the maximum is"
                        f" {self.offset_metadata_max_bytes}."
                    )
                )
                continue
            results.append(None)
            entries.append(
                CommittedOffset(
                    commit.topic, commit.partition, commit.offset, commit.leader_epoch, metadata
                )
            )
        if entries:
            self._store.write_offsets(group_id, entries)
            await self._sync_log()
            # visible to OffsetFetch only once durable (a failed fsync raises above)
            for entry in entries:
                group.offsets[(entry.topic, entry.partition)] = entry
        return results

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None
    ) -> list[CommittedOffset]:
        """OffsetFetch: committed offsets (None = all of the group's, sorted)."""
        group = self._groups.get(group_id)
        committed = group.offsets if group is not None else {}
        if partitions is None:
            return [committed[key] for key in sorted(committed)]
        return [
            committed.get((topic, partition)) or CommittedOffset(topic, partition, -1)
            for topic, partition in partitions
        ]

    async def delete_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]]
    ) -> list[BrokerError | None]:
        """OffsetDelete: forget offsets unless the active group is subscribed to the topic."""
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is None or group.state is _S.DEAD:
            raise GroupIdNotFound(f"Group {group_id!r} does not exist.")
        subscribed: set[str] | None = None
        if group.state is not _S.EMPTY:
            if group.protocol_type != "consumer":
                raise NonEmptyGroup(
                    f"Group {group_id!r} is active ({group.state.value}) and not a consumer group."
                )
            subscribed = group.subscribed_topics()
        results: list[BrokerError | None] = []
        deleted: list[tuple[str, int]] = []
        for topic, partition in partitions:
            if group.state is not _S.EMPTY and (subscribed is None or topic in subscribed):
                results.append(
                    GroupSubscribedToTopic(
                        f"Group {group_id!r} is subscribed to topic {topic!r}; its offsets stay."
                    )
                )
                continue
            results.append(None)
            deleted.append((topic, partition))
        if deleted:
            self._store.delete_offsets(group_id, deleted)
            await self._sync_log()
            for topic, partition in deleted:
                group.offsets.pop((topic, partition), None)
        return results

    async def drop_topic(self, topic: str) -> None:
        """Forget every group's committed offsets of a deleted topic (tombstones, fsynced)."""
        for group in self._groups.values():
            gone = [k for k in group.offsets if k[0] == topic]
            if gone:
                self._store.delete_offsets(group.group_id, gone)
                for key in gone:
                    del group.offsets[key]
        await self._sync_log()

    # -- start: records and migration ---------------------------------------------------

    def _apply(self, key: OffsetKey | GroupKey, value: OffsetValue | GroupMetadata | None) -> None:
        """One record read back on start (the newest per key wins; None deletes)."""
        if isinstance(key, OffsetKey):
            if value is None:
                group = self._groups.get(key.group)
                if group is not None:
                    group.offsets.pop((key.topic, key.partition), None)
                return
            assert isinstance(value, OffsetValue)
            group = self._groups.setdefault(key.group, Group(key.group))
            group.offsets[(key.topic, key.partition)] = CommittedOffset(
                key.topic, key.partition, value.offset, value.leader_epoch, value.metadata
            )
            return
        if value is None:
            group = self._groups.pop(key.group, None)
            if group is not None and group.offsets:  # offsets outlive the group's metadata
                self._groups[key.group] = Group(key.group, offsets=group.offsets)
            return
        assert isinstance(value, GroupMetadata)
        self._groups.setdefault(key.group, Group(key.group)).restore(value)

    async def _migrate(self, directory: Path) -> None:
        """Move an old ``offsets.log`` (earlier Backbone versions) into the topic, once.

        Its state is applied over what the topic holds (a crash mid-migration left a
        partial copy of the same state there), written to the topic, fsynced; only then
        is the file renamed to ``offsets.log.migrated`` (kept as a backup).
        """
        state = await asyncio.to_thread(read_legacy, directory)
        if state is None:
            return
        self._apply_legacy(state)
        for group in self._groups.values():
            if group.protocol_type is not None or group.generation_id:
                self._store.write_group(group)
            if group.offsets:
                self._store.write_offsets(group.group_id, list(group.offsets.values()))
        await self._sync_log()
        path = directory / LEGACY_FILE
        await asyncio.to_thread(_rename_durably, path, path.with_name(LEGACY_FILE + ".migrated"))
        logger.warning(
            "Migrated %d groups and %d committed offsets from %s into %s; the old file is"
            " kept as %s.migrated and may be deleted",
            len(state.groups),
            sum(len(o) for o in state.offsets.values()),
            path,
            self._store.name,
            LEGACY_FILE,
        )

    def _apply_legacy(self, state: LegacyState) -> None:
        for group_id, metadata in state.groups.items():
            if metadata is not None:
                self._groups.setdefault(group_id, Group(group_id)).restore(metadata)
        for group_id, offsets in state.offsets.items():
            for (topic, partition), value in offsets.items():
                self._apply(OffsetKey(group_id, topic, partition), value)


def _rename_durably(source: Path, target: Path) -> None:
    os.replace(source, target)
    fd = os.open(source.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
