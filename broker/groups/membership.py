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

The base class of :class:`~backbone.broker.groups.coordinator.GroupCoordinator`, which adds
listing, deletion, committed offsets and replay; the public API is in the package docstring.
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
from backbone.broker.groups.clock import Clock
from backbone.broker.groups.group import Group, Member
from backbone.broker.groups.results import (
    JoinResult,
    MemberIdentity,
    SyncResult,
)
from backbone.broker.groups.state import GroupState
from backbone.broker.groups.store import OffsetLog, Record

__all__ = ["NEW_MEMBER_JOIN_TIMEOUT_S", "Membership"]

logger = logging.getLogger(__name__)

_S = GroupState
NEW_MEMBER_JOIN_TIMEOUT_S = 300.0
"""Kafka's NewMemberJoinTimeoutMs: a new member stuck in JoinGroup is dropped after this."""


class Membership:
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup over ``groups`` (one broker's groups).

    Every timer callback and every method runs on the event loop thread; between two
    awaits a method sees and leaves the group in a consistent state.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        log: OffsetLog,
        initial_rebalance_delay_ms: int,
        min_session_timeout_ms: int,
        max_session_timeout_ms: int,
        max_group_size: int | None,
    ) -> None:
        self.clock = clock
        self.initial_rebalance_delay_s = max(initial_rebalance_delay_ms, 0) / 1000
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.max_group_size = max_group_size
        self._log = log
        self._groups: dict[str, Group] = {}

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
        _check_group_id(group_id)
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

    # -- rebalance machinery -------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state in (_S.STABLE, _S.COMPLETING_REBALANCE, _S.EMPTY):
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state is _S.COMPLETING_REBALANCE:
            self._reset_assignments(
                group, RebalanceInProgress(f"Group {group.group_id!r} is rebalancing; rejoin.")
            )
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None
        if group.join_timer is not None:
            group.join_timer.cancel()
        now = self.clock.now()
        rebalance_s = group.rebalance_timeout_s()
        delay = self.initial_rebalance_delay_s
        if group.state is _S.EMPTY and delay > 0:
            group.initial_delay_remaining_s = max(rebalance_s - delay, 0.0)
            group.join_timer = self.clock.call_at(
                now + delay, lambda: self._initial_delay_expired(group)
            )
        else:
            group.initial_delay_remaining_s = None
            group.join_timer = self.clock.call_at(
                now + rebalance_s, lambda: self._complete_join(group)
            )
        logger.info(
            "Preparing to rebalance group %s in state %s with old generation %d (reason: %s)",
            group.group_id,
            group.state.value,
            group.generation_id,
            reason,
        )
        group.transition(_S.PREPARING_REBALANCE)
        self._try_complete_join(group)

    def _reset_assignments(self, group: Group, error: BrokerError) -> None:
        for member in group.members.values():
            member.assignment = b""
            member.resolve_sync(error)

    def _initial_delay_expired(self, group: Group) -> None:
        group.join_timer = None
        remaining = group.initial_delay_remaining_s or 0.0
        if group.new_member_added and remaining > 0:
            group.new_member_added = False
            delay = min(self.initial_rebalance_delay_s, remaining)
            group.initial_delay_remaining_s = max(remaining - delay, 0.0)
            group.join_timer = self.clock.call_at(
                self.clock.now() + delay, lambda: self._initial_delay_expired(group)
            )
            return
        self._complete_join(group)

    def _try_complete_join(self, group: Group) -> None:
        if (
            group.state is _S.PREPARING_REBALANCE
            and group.initial_delay_remaining_s is None
            and group.all_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        """End the join phase: drop dynamic non-rejoiners, start the next generation."""
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        group.initial_delay_remaining_s = None
        group.new_member_added = False
        if group.state is not _S.PREPARING_REBALANCE:
            return
        for member in list(group.members.values()):
            if member.join_future is None and member.group_instance_id is None:
                logger.info(
                    "Member %s of group %s did not rejoin within the rebalance timeout; removed",
                    member.member_id,
                    group.group_id,
                )
                self._drop_member(group, member)
        if group.members and not group.elect_joined_leader():
            logger.error(
                "Group %s could not complete the rebalance because no member rejoined",
                group.group_id,
            )
            group.join_timer = self.clock.call_at(
                self.clock.now() + group.rebalance_timeout_s(), lambda: self._complete_join(group)
            )
            return
        group.generation_id += 1
        group.pending_sync.clear()
        if not group.members:
            group.protocol_name = None
            group.transition(_S.EMPTY)
            logger.info(
                "Group %s with generation %d is now empty", group.group_id, group.generation_id
            )
            # Not awaited: nobody is waiting for it; the next sync or close fsyncs it.
            self._log.append(group.to_record())
            return
        group.protocol_name = group.select_protocol()
        group.transition(_S.COMPLETING_REBALANCE)
        logger.info(
            "Stabilized group %s generation %d with %d members (protocol %s, leader %s)",
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
            group.leader_id,
        )
        for member in group.members.values():
            member.resolve_join(group.join_result(member))
            member.is_new = False
            self._touch(group, member)
            group.pending_sync.add(member.member_id)
        group.sync_timer = self.clock.call_at(
            self.clock.now() + group.rebalance_timeout_s(), lambda: self._expire_pending_sync(group)
        )

    def _expire_pending_sync(self, group: Group) -> None:
        group.sync_timer = None
        if group.state not in (_S.COMPLETING_REBALANCE, _S.STABLE) or not group.pending_sync:
            return
        for member_id in list(group.pending_sync):
            member = group.members.get(member_id)
            logger.info(
                "Member %s of group %s sent no SyncGroup within the rebalance timeout; removing it",
                member_id,
                group.group_id,
            )
            if member is not None:
                self._drop_member(group, member)
        group.pending_sync.clear()
        self._prepare_rebalance(group, "members failed to sync")

    def _expire_pending(self, group: Group, member_id: str) -> None:
        if group.pending_members.pop(member_id, None) is None:
            return
        logger.info(
            "Pending member %s of group %s did not rejoin within its session timeout",
            member_id,
            group.group_id,
        )
        self._try_complete_join(group)

    def _touch(
        self,
        group: Group,
        member: Member,
        *,
        timeout_s: float | None = None,
        now: float | None = None,
    ) -> None:
        """Push the member's expiry deadline to now + its session timeout (or ``timeout_s``)."""
        now = self.clock.now() if now is None else now
        member.deadline = now + (
            member.session_timeout_ms / 1000 if timeout_s is None else timeout_s
        )
        if member.timer is not None and member.timer_at <= member.deadline:
            return
        if member.timer is not None:
            member.timer.cancel()
        member.timer_at = member.deadline
        member.timer = self.clock.call_at(
            member.deadline, lambda: self._check_expiry(group, member)
        )

    def _check_expiry(self, group: Group, member: Member) -> None:
        member.timer = None
        if group.members.get(member.member_id) is not member or group.state is _S.DEAD:
            return
        now = self.clock.now()
        if now < member.deadline:
            member.timer_at = member.deadline
            member.timer = self.clock.call_at(
                member.deadline, lambda: self._check_expiry(group, member)
            )
            return
        if not member.is_new and (member.join_future is not None or member.sync_future is not None):
            return  # waiting in JoinGroup/SyncGroup: the rebalance timeout governs it
        logger.info(
            "Member %s of group %s has failed (no heartbeat within %d ms); removing it",
            member.member_id,
            group.group_id,
            member.session_timeout_ms,
        )
        self._remove_member_and_update(group, member, "session timeout")

    def _drop_member(self, group: Group, member: Member) -> None:
        gone = UnknownMemberId(
            f"Member {member.member_id!r} was removed from group {group.group_id!r}."
        )
        member.resolve_join(gone)
        member.resolve_sync(gone)
        if member.timer is not None:
            member.timer.cancel()
            member.timer = None
        group.remove(member.member_id)

    def _remove_member_and_update(self, group: Group, member: Member, reason: str) -> None:
        self._drop_member(group, member)
        if group.state in (_S.STABLE, _S.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, f"removing member {member.member_id} ({reason})")
        elif group.state is _S.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _cancel_group_timers(self, group: Group) -> None:
        for timer in (group.join_timer, group.sync_timer, *group.pending_members.values()):
            if timer is not None:
                timer.cancel()
        group.join_timer = group.sync_timer = None
        group.pending_members.clear()

    # -- SyncGroup, Heartbeat, LeaveGroup -----------------------------------------

    def _current_member(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> tuple[Group, Member]:
        _check_group_id(group_id)
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
        error: BrokerError | None = None
        try:
            await self._sync_log()
        except KafkaStorageError as exc:
            error = exc
        if group.state is not _S.COMPLETING_REBALANCE or group.generation_id != generation_id:
            return
        if error is not None:
            self._reset_assignments(group, error)
            self._maybe_prepare_rebalance(group, "could not store the group assignment")
            return
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
        _check_group_id(group_id)
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

    # -- persistence (shared with the coordinator) ---------------------------------

    async def _sync_log(self) -> None:
        try:
            await self._log.sync()
        except OSError as exc:
            logger.error("Could not fsync the offsets log %s: %s", self._log.path, exc)
            raise KafkaStorageError(f"The offsets log could not be written: {exc}") from exc
        if self._log.should_compact:
            try:
                await self._log.rewrite(self._snapshot)
            except OSError as exc:
                logger.error("Could not compact the offsets log %s: %s", self._log.path, exc)

    def _snapshot(self) -> list[Record]:
        records: list[Record] = []
        for group in self._groups.values():
            if group.protocol_type is not None or group.generation_id:
                records.append(group.to_record())
            if group.offsets:
                records.append(
                    {
                        "type": "offsets",
                        "group": group.group_id,
                        "offsets": [
                            [c.topic, c.partition, c.offset, c.leader_epoch, c.metadata]
                            for c in group.offsets.values()
                        ],
                    }
                )
        return records


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


def _check_group_id(group_id: str) -> None:
    if not group_id:
        raise InvalidGroupId("The group id must not be empty.")
