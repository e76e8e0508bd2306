"""Group membership: Kafka's classic JoinGroup/SyncGroup protocol over an injected clock.

Follows Kafka's ``GroupCoordinator`` closely (the behaviour real clients expect):

- A new dynamic member on JoinGroup v4+ gets MEMBER_ID_REQUIRED with a generated id,
  held as *pending* (not a member; the rebalance waits for it only until it rejoins or
  its session timeout passes).
- Joining moves the group to PreparingRebalance; the join completes when every known
  member has rejoined (or the rebalance timeout removes the dynamic members that did
  not). From Empty the first rebalance waits ``initial_rebalance_delay_ms``, extended
  while new members keep arriving. Completion bumps the generation, picks the protocol
  by vote, answers every waiting JoinGroup (the leader gets the members' metadata) and
  moves to CompletingRebalance (or Empty when nobody is left).
- The leader's SyncGroup carries the assignment: it is persisted, then every waiting
  SyncGroup is answered and the group is Stable. Members that do not send SyncGroup
  within the rebalance timeout are removed and the group rebalances.
- A member with no heartbeat for ``session.timeout.ms`` is removed and the group
  rebalances; members waiting in JoinGroup/SyncGroup are not expired (the rebalance
  timeout governs them).
- Static members (``group.instance.id``) rejoining with an unknown member id replace
  their old member id (the old one is fenced with FENCED_INSTANCE_ID).

The request side lives here; the timer-driven side (preparing and completing rebalances,
expiring members) in :mod:`backbone.broker.groups.rebalance`. This is the base class of
:class:`~backbone.broker.groups.coordinator.GroupCoordinator`, which adds listing,
deletion, committed offsets and replay; the public API is in the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence

from backbone.broker.errors import (
    BrokerError,
    CoordinatorNotAvailable,
    FencedInstanceId,
    GroupMaxSizeReached,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    InvalidSessionTimeout,
    KafkaStorageError,
    MemberIdRequired,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.group import Group, Member
from backbone.broker.groups.rebalance import Rebalancer
from backbone.broker.groups.results import (
    JoinResult,
    MemberIdentity,
    SyncResult,
)
from backbone.broker.groups.state import GroupState

__all__ = ["NEW_MEMBER_JOIN_TIMEOUT_S", "Membership", "check_group_id"]

logger = logging.getLogger(__name__)

_S = GroupState
NEW_MEMBER_JOIN_TIMEOUT_S = 300.0
"""Kafka's NewMemberJoinTimeoutMs: a new member stuck in JoinGroup is dropped after this."""


class Membership(Rebalancer):
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup over ``groups`` (one broker's groups).

    Every method runs on the event loop thread; between two awaits a method sees and
    leaves the group in a consistent state.
    """

    # -- JoinGroup ---------------------------------------------------------------

    async def join_group(
        self,
        group_id: str,
        member_id: str,
        *,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        require_known_member_id: bool = True,
        supports_skip_assignment: bool = False,
        reason: str | None = None,
    ) -> JoinResult:
        """JoinGroup: wait for the rebalance and return this member's view of the generation."""
        check_group_id(group_id)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            raise InvalidSessionTimeout(
                f"The session timeout {session_timeout_ms} ms is outside the broker's range"
                f" [{self.min_session_timeout_ms}, {self.max_session_timeout_ms}] ms."
            )
        protocols = [(name, bytes(metadata)) for name, metadata in protocols]
        names = [name for name, _ in protocols]
        group = self._groups.get(group_id)
        if group is None or group.state is _S.DEAD:
            if member_id:
                raise UnknownMemberId(
                    f"Group {group_id!r} does not exist, so member {member_id!r} is unknown;"
                    " rejoin with an empty member id."
                )
            group = self._groups[group_id] = Group(group_id)
        if (
            self.max_group_size is not None
            and member_id not in group.members
            and len(group.members) >= self.max_group_size
        ):
            raise GroupMaxSizeReached(
                f"Group {group_id!r} already has {len(group.members)} members"
                f" (the maximum is {self.max_group_size})."
            )
        if not group.supports_protocols(protocol_type, names):
            raise InconsistentGroupProtocol(
                f"Protocol type {protocol_type!r} with protocols {names} does not match group"
                f" {group_id!r} (type {group.protocol_type!r}, common protocols"
                f" {sorted(group.candidate_protocols())})."
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[JoinResult | BrokerError] = loop.create_future()
        params = _JoinParams(
            protocol_type,
            protocols,
            session_timeout_ms,
            rebalance_timeout_ms,
            client_id,
            client_host,
        )
        if not member_id:
            result = await self._join_unknown(
                group,
                group_instance_id,
                params,
                fut,
                require_known_member_id,
                supports_skip_assignment,
            )
        else:
            result = self._join_known(group, member_id, group_instance_id, params, fut)
        if group.state is _S.PREPARING_REBALANCE:
            self._try_complete_join(group)
        if result is None:
            result = await fut
        if isinstance(result, BrokerError):
            raise result
        return result

    async def _join_unknown(
        self,
        group: Group,
        group_instance_id: str | None,
        params: _JoinParams,
        fut: asyncio.Future[JoinResult | BrokerError],
        require_known_member_id: bool,
        supports_skip_assignment: bool,
    ) -> JoinResult | BrokerError | None:
        new_id = f"{params.client_id}-{uuid.uuid4()}"
        if group_instance_id is not None:
            old_id = group.static_members.get(group_instance_id)
            if old_id is None:
                self._add_member_and_rebalance(group, new_id, group_instance_id, params, fut)
                return None
            return await self._replace_static_member(
                group, group_instance_id, old_id, new_id, params, fut, supports_skip_assignment
            )
        if require_known_member_id:
            session_s = params.session_timeout_ms / 1000
            group.pending_members[new_id] = self.clock.call_at(
                self.clock.now() + session_s, lambda: self._expire_pending(group, new_id)
            )
            exc = MemberIdRequired(
                f"Group {group.group_id!r} requires a member id: rejoin with member id {new_id!r}."
            )
            exc.member_id = new_id  # type: ignore[attr-defined]
            raise exc
        self._add_member_and_rebalance(group, new_id, None, params, fut)
        return None

    def _join_known(
        self,
        group: Group,
        member_id: str,
        group_instance_id: str | None,
        params: _JoinParams,
        fut: asyncio.Future[JoinResult | BrokerError],
    ) -> JoinResult | BrokerError | None:
        if member_id in group.pending_members:
            if group_instance_id is not None and group_instance_id in group.static_members:
                raise FencedInstanceId(
                    f"Instance id {group_instance_id!r} already belongs to another member of"
                    f" group {group.group_id!r}."
                )
            self._add_member_and_rebalance(group, member_id, group_instance_id, params, fut)
            return None
        if group.is_static_member_fenced(group_instance_id, member_id):
            raise FencedInstanceId(
                f"Member {member_id!r} of group {group.group_id!r} was replaced by a newer member"
                f" with instance id {group_instance_id!r}."
            )
        member = group.members.get(member_id)
        if member is None or (
            group_instance_id is not None and group_instance_id not in group.static_members
        ):
            raise UnknownMemberId(
                f"Member {member_id!r} is not in group {group.group_id!r}; rejoin with an empty"
                " member id."
            )
        state = group.state
        if state is _S.PREPARING_REBALANCE:
            self._update_member(member, params, fut)
            return None
        if state is _S.COMPLETING_REBALANCE:
            if member.matches(params.protocols):
                return group.join_result(member)
            self._update_member(member, params, fut)
            self._prepare_rebalance(group, f"member {member_id} changed its metadata")
            return None
        if state is _S.STABLE:
            if member_id == group.leader_id or not member.matches(params.protocols):
                self._update_member(member, params, fut)
                self._prepare_rebalance(group, f"member {member_id} rejoined")
                return None
            return group.join_result(member)
        raise UnknownMemberId(
            f"Member {member_id!r} is not in group {group.group_id!r} ({state.value});"
            " rejoin with an empty member id."
        )

    async def _replace_static_member(
        self,
        group: Group,
        instance_id: str,
        old_id: str,
        new_id: str,
        params: _JoinParams,
        fut: asyncio.Future[JoinResult | BrokerError],
        supports_skip_assignment: bool,
    ) -> JoinResult | BrokerError | None:
        current_leader = group.leader_id
        fenced = FencedInstanceId(
            f"Member {old_id!r} was replaced by {new_id!r} with the same instance id"
            f" {instance_id!r}."
        )
        member = group.members.pop(old_id)
        member.resolve_join(fenced)
        member.resolve_sync(fenced)
        member.member_id = new_id
        group.members[new_id] = member
        group.static_members[instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new_id)
        logger.info("Static member %s of group %s replaced by %s", old_id, group.group_id, new_id)
        self._touch(group, member)
        if group.state is _S.STABLE:
            old_protocols = member.protocols
            member.protocols = params.protocols
            if group.protocol_name == group.select_protocol():
                member.rebalance_timeout_ms = params.rebalance_timeout_ms
                member.session_timeout_ms = params.session_timeout_ms
                self._log.append(group.to_record())
                await self._sync_log()
                if group.leader_id == new_id and supports_skip_assignment:
                    result = group.join_result(member)
                    return JoinResult(
                        member_id=new_id,
                        generation_id=result.generation_id,
                        protocol_type=result.protocol_type,
                        protocol_name=result.protocol_name,
                        leader_id=new_id,
                        members=group.joined_members(),
                        skip_assignment=True,
                    )
                return group.join_result(member, leader_id=current_leader or "")
            member.protocols = old_protocols
            self._update_member(member, params, fut)
            self._prepare_rebalance(group, f"static member {new_id} changed the group's protocol")
            return None
        self._update_member(member, params, fut)
        if group.state is _S.COMPLETING_REBALANCE:
            self._prepare_rebalance(group, f"static member {new_id} rejoined during sync")
        return None

    def _add_member_and_rebalance(
        self,
        group: Group,
        member_id: str,
        group_instance_id: str | None,
        params: _JoinParams,
        fut: asyncio.Future[JoinResult | BrokerError],
    ) -> Member:
        member = Member(
            member_id=member_id,
            group_instance_id=group_instance_id,
            client_id=params.client_id,
            client_host=params.client_host,
            rebalance_timeout_ms=params.rebalance_timeout_ms,
            session_timeout_ms=params.session_timeout_ms,
            protocol_type=params.protocol_type,
            protocols=params.protocols,
            is_new=True,
        )
        if group.state is _S.PREPARING_REBALANCE and group.generation_id == 0:
            group.new_member_added = True
        group.add(member)
        member.join_future = fut
        self._touch(group, member, timeout_s=NEW_MEMBER_JOIN_TIMEOUT_S)
        self._maybe_prepare_rebalance(group, f"new member {member_id} joined")
        return member

    def _update_member(
        self, member: Member, params: _JoinParams, fut: asyncio.Future[JoinResult | BrokerError]
    ) -> None:
        member.protocols = params.protocols
        member.rebalance_timeout_ms = params.rebalance_timeout_ms
        member.session_timeout_ms = params.session_timeout_ms
        member.resolve_join(
            RebalanceInProgress("A newer JoinGroup from this member replaced this one.")
        )
        member.join_future = fut

    # -- SyncGroup, Heartbeat, LeaveGroup -----------------------------------------

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
        self._log.append(group.to_record(assignment))
        try:
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


class _JoinParams:
    __slots__ = (
        "client_host",
        "client_id",
        "protocol_type",
        "protocols",
        "rebalance_timeout_ms",
        "session_timeout_ms",
    )

    def __init__(
        self,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str,
        client_host: str,
    ) -> None:
        self.protocol_type = protocol_type
        self.protocols = protocols
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.client_id = client_id
        self.client_host = client_host


def check_group_id(group_id: str) -> None:
    if not group_id:
        raise InvalidGroupId("The group id must not be empty.")
