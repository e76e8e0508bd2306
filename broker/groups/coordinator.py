"""The group coordinator: groups, committed offsets and their durable log.

:class:`GroupCoordinator` = :class:`~backbone.broker.groups.membership.Membership` (the
JoinGroup/SyncGroup protocol) + ListGroups/DescribeGroups/DeleteGroups + OffsetCommit/
OffsetFetch/OffsetDelete + replay of the offsets log on start
(:mod:`backbone.broker.groups.store`: fsync before acknowledging). The public API is
listed in the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from backbone.broker.errors import (
    BrokerError,
    GroupIdNotFound,
    GroupSubscribedToTopic,
    IllegalGeneration,
    NonEmptyGroup,
    NotCoordinator,
    OffsetMetadataTooLarge,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.clock import Clock, LoopClock
from backbone.broker.groups.group import Group
from backbone.broker.groups.membership import Membership, check_group_id
from backbone.broker.groups.results import (
    CommittedOffset,
    GroupDescription,
    GroupListing,
    MemberDescription,
    OffsetCommit,
)
from backbone.broker.groups.state import GroupState
from backbone.broker.groups.store import OffsetLog, Record

__all__ = ["GroupCoordinator"]

logger = logging.getLogger(__name__)

_S = GroupState


class GroupCoordinator(Membership):
    """Consumer groups and committed offsets of one broker (see the package docstring)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        initial_rebalance_delay_ms: int = 100,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 1_800_000,
        max_group_size: int | None = None,
        offset_metadata_max_bytes: int = 4096,
        compact_min_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            clock=clock if clock is not None else LoopClock(),
            log=OffsetLog(
                Path(data_dir) / "__consumer_offsets", compact_min_bytes=compact_min_bytes
            ),
            initial_rebalance_delay_ms=initial_rebalance_delay_ms,
            min_session_timeout_ms=min_session_timeout_ms,
            max_session_timeout_ms=max_session_timeout_ms,
            max_group_size=max_group_size,
        )
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self._open = False

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> GroupCoordinator:
        records = await asyncio.to_thread(self._log.open)
        for record in records:
            self._replay(record)
        now = self.clock.now()
        for group in self._groups.values():
            for member in group.members.values():
                self._touch(group, member, now=now)
        self._open = True
        logger.info(
            "Group coordinator ready: %d groups, %d committed partitions",
            len(self._groups),
            sum(len(g.offsets) for g in self._groups.values()),
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
        self._log.close()

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
                self._cancel_group_timers(group)
                group.transition(_S.DEAD)
                del self._groups[group_id]
                self._log.append({"type": "group_delete", "group": group_id})
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
        entries: list[tuple[str, int, int, int, str]] = []
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
                (commit.topic, commit.partition, commit.offset, commit.leader_epoch, metadata)
            )
        if entries:
            self._log.append({"type": "offsets", "group": group_id, "offsets": entries})
            await self._sync_log()
            # visible to OffsetFetch only once durable (a failed fsync raises above)
            for topic, partition, offset, leader_epoch, metadata in entries:
                group.offsets[(topic, partition)] = CommittedOffset(
                    topic, partition, offset, leader_epoch, metadata
                )
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
            self._log.append({"type": "offset_delete", "group": group_id, "partitions": deleted})
            await self._sync_log()
            for topic, partition in deleted:
                group.offsets.pop((topic, partition), None)
        return results

    async def drop_topic(self, topic: str) -> None:
        """Forget every group's committed offsets of a deleted topic (persisted)."""
        for group in self._groups.values():
            for key in [k for k in group.offsets if k[0] == topic]:
                del group.offsets[key]
        self._log.append({"type": "topic_delete", "topic": topic})
        await self._sync_log()

    def _replay(self, record: Record) -> None:
        kind = record["type"]
        if kind == "topic_delete":
            for group in self._groups.values():
                for key in [k for k in group.offsets if k[0] == record["topic"]]:
                    del group.offsets[key]
            return
        group_id = record["group"]
        if kind == "group_delete":
            self._groups.pop(group_id, None)
            return
        group = self._groups.setdefault(group_id, Group(group_id))
        if kind == "offsets":
            for topic, partition, offset, epoch, metadata in record["offsets"]:
                group.offsets[(topic, partition)] = CommittedOffset(
                    topic, partition, offset, epoch, metadata
                )
        elif kind == "offset_delete":
            for topic, partition in record["partitions"]:
                group.offsets.pop((topic, partition), None)
        elif kind == "group":
            group.restore(record)
        else:
            logger.warning("Skipping an offsets log record of unknown type %r", kind)
