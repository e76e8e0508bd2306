"""The rebalance machinery shared by the group protocol: timers and state moves.

:class:`Rebalancer` owns one broker's groups, the clock and the group store, and
implements what Kafka's ``GroupCoordinator`` does between requests: preparing a
rebalance (with the initial delay from Empty), completing the join phase (dropping
dynamic members that did not rejoin, bumping the generation, answering the waiting
JoinGroups), expiring members without heartbeats, pending member ids and members that
never sent SyncGroup. Every timer callback runs on the event loop thread.

Used by :class:`~backbone.broker.groups.membership.Membership` (the request side).
"""

from __future__ import annotations

import logging

from backbone.broker.errors import (
    BrokerError,
    KafkaStorageError,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups.clock import Clock
from backbone.broker.groups.group import Group, Member
from backbone.broker.groups.state import GroupState
from backbone.broker.groups.store import GroupStore

__all__ = ["Rebalancer"]

logger = logging.getLogger(__name__)

_S = GroupState


class Rebalancer:
    """Groups, clock and group store, plus the timer-driven half of the protocol."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: GroupStore,
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
        self._store = store
        self._groups: dict[str, Group] = {}

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
            try:
                self._store.write_group(group)
            except KafkaStorageError as exc:
                logger.error("Could not store empty group %s: %s", group.group_id, exc)
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

    # -- persistence (shared with the coordinator) ---------------------------------

    async def _sync_log(self) -> None:
        """Wait until every record written so far is fsynced (KafkaStorageError if not)."""
        try:
            await self._store.sync()
        except KafkaStorageError as exc:
            logger.error("Could not fsync %s: %s", self._store.name, exc)
            raise
