"""JoinGroup: Kafka's classic join protocol over an injected clock (request side).

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
- Static members (``group.instance.id``) rejoining with an unknown member id replace
  their old member id (the old one is fenced with FENCED_INSTANCE_ID).

The timer-driven side (preparing and completing rebalances, expiring members) lives in
:mod:`backbone.broker.groups.rebalance`; SyncGroup, Heartbeat and LeaveGroup in
:mod:`backbone.broker.groups.membership`, whose ``Membership`` extends this class.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from backbone.broker.errors import (
    BrokerError,
    FencedInstanceId,
    GroupMaxSizeReached,
    InconsistentGroupProtocol,
    InvalidGroupId,
    InvalidSessionTimeout,
    MemberIdRequired,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.group import Group, Member
from backbone.broker.groups.rebalance import Rebalancer
from backbone.broker.groups.results import JoinResult
from backbone.broker.groups.state import GroupState

__all__ = ["NEW_MEMBER_JOIN_TIMEOUT_S", "Joining", "check_group_id"]

logger = logging.getLogger(__name__)

_S = GroupState
NEW_MEMBER_JOIN_TIMEOUT_S = 300.0
"""Kafka's NewMemberJoinTimeoutMs: a new member stuck in JoinGroup is dropped after this."""


class Joining(Rebalancer):
    """JoinGroup over ``groups`` (one broker's groups); every method runs on the event loop
    thread and leaves the group consistent between two awaits."""

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
                self._store.write_group(group)
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
