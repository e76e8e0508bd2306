"""Group membership: SyncGroup, Heartbeat and LeaveGroup (JoinGroup in ``joining.py``).

- The leader's SyncGroup carries the assignment: it is persisted, then every waiting
  SyncGroup is answered and the group is Stable. Members that do not send SyncGroup
  within the rebalance timeout are removed and the group rebalances.
- A member with no heartbeat for ``session.timeout.ms`` is removed and the group
  rebalances; members waiting in JoinGroup/SyncGroup are not expired (the rebalance
  timeout governs them).
- LeaveGroup removes members at once (by member id, or by instance id for static
  members) and rebalances.

:class:`Membership` is the base class of
:class:`~backbone.broker.groups.coordinator.GroupCoordinator`, which adds listing,
deletion, committed offsets and replay; the public API is in the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from backbone.broker.errors import (
    BrokerError,
    CoordinatorNotAvailable,
    FencedInstanceId,
    IllegalGeneration,
    InconsistentGroupProtocol,
    KafkaStorageError,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.group import Group, Member
from backbone.broker.groups.joining import Joining, check_group_id
from backbone.broker.groups.results import (
    MemberIdentity,
    SyncResult,
)
from backbone.broker.groups.state import GroupState

__all__ = ["Membership", "check_group_id"]

logger = logging.getLogger(__name__)

_S = GroupState


class Membership(Joining):
    """JoinGroup (inherited), SyncGroup, Heartbeat and LeaveGroup over ``groups``.

    Every method runs on the event loop thread; between two awaits a method sees and
    leaves the group in a consistent state.
    """

    def _current_member(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> tuple[Group, Member]:
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is None:
            raise UnknownMemberId(
                f"Group {group_id!r} does not exist; rejoin with an empty member id."
            )
        if group.state is _S.DEAD:
            raise CoordinatorNotAvailable(f"Group {group_id!r} is being deleted.")
        if group.is_static_member_fenced(group_instance_id, member_id):
            raise FencedInstanceId(
                f"Member {member_id!r} of group {group_id!r} was replaced by a newer member with"
                f" instance id {group_instance_id!r}."
            )
        member = group.members.get(member_id)
        if member is None:
            raise UnknownMemberId(f"Member {member_id!r} is not in group {group_id!r}; rejoin.")
        if generation_id != group.generation_id:
            raise IllegalGeneration(
                f"Generation {generation_id} of group {group_id!r} is not the current one"
                f" ({group.generation_id}); rejoin."
            )
        return group, member

    async def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        *,
        assignments: Mapping[str, bytes],
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> SyncResult:
        """SyncGroup: the leader hands out assignments; everyone gets its own."""
        group, member = self._current_member(group_id, generation_id, member_id, group_instance_id)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            raise InconsistentGroupProtocol(
                f"SyncGroup names protocol {protocol_type!r}/{protocol_name!r} but group"
                f" {group_id!r} uses {group.protocol_type!r}/{group.protocol_name!r}."
            )
        if group.state is _S.EMPTY:
            raise UnknownMemberId(f"Group {group_id!r} is empty; rejoin.")
        if group.state is _S.PREPARING_REBALANCE:
            raise RebalanceInProgress(f"Group {group_id!r} is rebalancing; rejoin.")
        self._mark_synced(group, member_id)
        if group.state is _S.STABLE:
            self._touch(group, member)
            return SyncResult(group.protocol_type, group.protocol_name, member.assignment)
        fut: asyncio.Future[SyncResult | BrokerError] = asyncio.get_running_loop().create_future()
        member.resolve_sync(
            RebalanceInProgress("A newer SyncGroup from this member replaced this one.")
        )
        member.sync_future = fut
        if member_id == group.leader_id:
            await self._store_assignment(group, generation_id, assignments)
        result = await fut
        if isinstance(result, BrokerError):
            raise result
        return result

    def _mark_synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    async def _store_assignment(
        self, group: Group, generation_id: int, assignments: Mapping[str, bytes]
    ) -> None:
        assignment = {mid: bytes(assignments.get(mid, b"")) for mid in group.members}
        missing = [mid for mid in group.members if mid not in assignments]
        if missing:
            logger.warning(
                "Leader of group %s gave no assignment to %s; they get an empty one",
                group.group_id,
                missing,
            )
        try:
            self._store.write_group(group, assignment)
            await self._sync_log()
        except KafkaStorageError as exc:
            if group.state is _S.COMPLETING_REBALANCE and group.generation_id == generation_id:
                self._reset_assignments(group, exc)
                self._maybe_prepare_rebalance(group, "could not store the group assignment")
            return
        except asyncio.CancelledError:
            # The leader went away mid-fsync; the record is written and the next fsync
            # covers it, so hand the assignment out rather than strand the followers.
            self._apply_assignment(group, generation_id, assignment)
            raise
        self._apply_assignment(group, generation_id, assignment)

    def _apply_assignment(
        self, group: Group, generation_id: int, assignment: Mapping[str, bytes]
    ) -> None:
        if group.state is not _S.COMPLETING_REBALANCE or group.generation_id != generation_id:
            return  # a newer rebalance started while the assignment was being stored
        for member_id, member in group.members.items():
            member.assignment = assignment.get(member_id, b"")
        group.transition(_S.STABLE)
        for member in group.members.values():
            member.resolve_sync(
                SyncResult(group.protocol_type, group.protocol_name, member.assignment)
            )

    def heartbeat(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> None:
        """Heartbeat: keep the member alive; RebalanceInProgress means "rejoin"."""
        group, member = self._current_member(group_id, generation_id, member_id, group_instance_id)
        if group.state is _S.EMPTY:
            raise UnknownMemberId(f"Group {group_id!r} is empty; rejoin.")
        self._touch(group, member)
        if group.state is _S.PREPARING_REBALANCE:
            raise RebalanceInProgress(f"Group {group_id!r} is rebalancing; rejoin.")

    def leave_group(
        self, group_id: str, members: Sequence[MemberIdentity]
    ) -> list[BrokerError | None]:
        """LeaveGroup: remove each member at once (one result per member) and rebalance."""
        check_group_id(group_id)
        group = self._groups.get(group_id)
        if group is None:
            return [UnknownMemberId(f"Group {group_id!r} does not exist.") for _ in members]
        if group.state is _S.DEAD:
            raise CoordinatorNotAvailable(f"Group {group_id!r} is being deleted.")
        results: list[BrokerError | None] = []
        for identity in members:
            results.append(self._leave_one(group, identity))
        return results

    def _leave_one(self, group: Group, identity: MemberIdentity) -> BrokerError | None:
        member_id, instance_id = identity.member_id, identity.group_instance_id
        reason = f"member left the group ({identity.reason or 'no reason given'})"
        if not member_id:
            current = group.static_members.get(instance_id) if instance_id is not None else None
            if current is None:
                return UnknownMemberId(
                    f"No member of group {group.group_id!r} has instance id {instance_id!r}."
                )
            member_id = current
        elif member_id in group.pending_members:
            group.pending_members.pop(member_id).cancel()
            logger.info("Pending member %s left group %s", member_id, group.group_id)
            self._try_complete_join(group)
            return None
        elif group.is_static_member_fenced(instance_id, member_id):
            return FencedInstanceId(
                f"Member {member_id!r} does not own instance id {instance_id!r} in group"
                f" {group.group_id!r}."
            )
        member = group.members.get(member_id)
        if member is None:
            return UnknownMemberId(f"Member {member_id!r} is not in group {group.group_id!r}.")
        logger.info("Member %s left group %s (%s)", member_id, group.group_id, reason)
        self._remove_member_and_update(group, member, reason)
        return None
