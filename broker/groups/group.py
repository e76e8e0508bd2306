"""One consumer group's membership and committed offsets (Kafka's ``GroupMetadata``).

Plain data plus small queries; the protocol (who may join when, timers, rebalances)
lives in :mod:`backbone.broker.groups.coordinator`, which is the only caller.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backbone.broker.errors import BrokerError
from backbone.broker.groups.clock import Timer
from backbone.broker.groups.records import GroupMetadata, MemberMetadata
from backbone.broker.groups.results import (
    CommittedOffset,
    JoinedMember,
    JoinResult,
    SyncResult,
)
from backbone.broker.groups.state import GroupState, check_transition

__all__ = ["Group", "Member", "parse_subscribed_topics"]


Protocols = list[tuple[str, bytes]]


@dataclass(eq=False)
class Member:
    """A member of a group; ``join_future``/``sync_future`` are set while it waits."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    assignment: bytes = b""
    is_new: bool = False
    join_future: asyncio.Future[JoinResult | BrokerError] | None = None
    sync_future: asyncio.Future[SyncResult | BrokerError] | None = None
    deadline: float = 0.0
    timer: Timer | None = None
    timer_at: float = 0.0

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol_name: str | None) -> bytes:
        """This member's metadata for ``protocol_name`` (b"" if it has none)."""
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        return b""

    def matches(self, protocols: Sequence[tuple[str, bytes]]) -> bool:
        return list(protocols) == self.protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among ``candidates``."""
        for name in self.protocol_names:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def resolve_join(self, result: JoinResult | BrokerError) -> None:
        """Answer a waiting JoinGroup (if any) and stop waiting."""
        fut, self.join_future = self.join_future, None
        if fut is not None and not fut.done():
            fut.set_result(result)

    def resolve_sync(self, result: SyncResult | BrokerError) -> None:
        """Answer a waiting SyncGroup (if any) and stop waiting."""
        fut, self.sync_future = self.sync_future, None
        if fut is not None and not fut.done():
            fut.set_result(result)


@dataclass(eq=False)
class Group:
    """A group: state, generation, members (insertion order), pending ids and offsets."""

    group_id: str
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_members: dict[str, Timer] = field(default_factory=dict)
    pending_sync: set[str] = field(default_factory=set)
    offsets: dict[tuple[str, int], CommittedOffset] = field(default_factory=dict)
    new_member_added: bool = False
    initial_delay_remaining_s: float | None = None
    join_timer: Timer | None = None
    sync_timer: Timer | None = None

    def transition(self, target: GroupState) -> None:
        """Move to ``target``; raises IllegalStateTransition if the table forbids it."""
        check_transition(self.group_id, self.state, target)
        self.state = target

    # -- membership queries -------------------------------------------------------

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        timer = self.pending_members.pop(member.member_id, None)
        if timer is not None:
            timer.cancel()

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        instance_id = member.group_instance_id if member is not None else None
        if instance_id is not None and self.static_members.get(instance_id) == member_id:
            del self.static_members[instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        timer = self.pending_members.pop(member_id, None)
        if timer is not None:
            timer.cancel()
        self.pending_sync.discard(member_id)
        return member

    def is_static_member_fenced(self, group_instance_id: str | None, member_id: str) -> bool:
        """An instance id bound to another member id: the caller is a stale duplicate."""
        if group_instance_id is None:
            return False
        current = self.static_members.get(group_instance_id)
        return current is not None and current != member_id

    def all_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_future is not None for m in self.members.values()
        )

    def candidate_protocols(self) -> set[str]:
        """Protocols every current member supports."""
        counts = Counter(name for m in self.members.values() for name in set(m.protocol_names))
        return {name for name, n in counts.items() if n == len(self.members)}

    def supports_protocols(self, protocol_type: str, names: Sequence[str]) -> bool:
        if not self.members:
            return bool(protocol_type) and bool(names)
        return protocol_type == self.protocol_type and bool(set(names) & self.candidate_protocols())

    def select_protocol(self) -> str:
        """Kafka's vote: each member votes its favourite candidate; most votes wins
        (ties go to the leader's preference)."""
        candidates = self.candidate_protocols()
        votes = Counter(m.vote(candidates) for m in self.members.values())
        leader = self.members.get(self.leader_id or "")
        order = leader.protocol_names if leader else sorted(candidates)
        best = max(votes.values())
        return next(name for name in order if votes.get(name) == best)

    def rebalance_timeout_s(self) -> float:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0) / 1000

    def elect_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick any member that did; False if none."""
        if self.leader_id is None:
            return False
        leader = self.members.get(self.leader_id)
        if leader is not None and leader.join_future is not None:
            return True
        for member_id, member in self.members.items():
            if member.join_future is not None:
                self.leader_id = member_id
                return True
        return False

    def joined_members(self) -> list[JoinedMember]:
        return [
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]

    def join_result(self, member: Member, *, leader_id: str | None = None) -> JoinResult:
        """The JoinGroup answer for ``member`` in the current generation."""
        is_leader = member.member_id == self.leader_id
        return JoinResult(
            member_id=member.member_id,
            generation_id=self.generation_id,
            protocol_type=self.protocol_type,
            protocol_name=self.protocol_name,
            leader_id=leader_id if leader_id is not None else (self.leader_id or ""),
            members=self.joined_members() if is_leader and leader_id is None else [],
        )

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol); None if unknown."""
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = parse_subscribed_topics(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics.update(parsed)
        return topics

    def to_metadata(
        self, assignment: Mapping[str, bytes] | None = None, now_ms: int = -1
    ) -> GroupMetadata:
        """The group's GroupMetadataValue record (``assignment`` overrides the members')."""
        return GroupMetadata(
            protocol_type=self.protocol_type or "",
            generation=self.generation_id,
            protocol=self.protocol_name,
            leader=self.leader_id,
            current_state_timestamp=now_ms,
            members=tuple(
                MemberMetadata(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout_ms=m.rebalance_timeout_ms,
                    session_timeout_ms=m.session_timeout_ms,
                    subscription=m.metadata(self.protocol_name),
                    assignment=(
                        assignment.get(m.member_id, b"") if assignment is not None else m.assignment
                    ),
                )
                for m in self.members.values()
            ),
        )

    def restore(self, record: GroupMetadata) -> None:
        """Load a GroupMetadata record (start): members come back Stable with their
        assignment."""
        self.members.clear()
        self.static_members.clear()
        self.generation_id = record.generation
        self.protocol_type = record.protocol_type or None
        self.protocol_name = record.protocol
        for m in record.members:
            member = Member(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms,
                protocol_type=self.protocol_type or "",
                protocols=[(self.protocol_name or "", m.subscription)],
                assignment=m.assignment,
            )
            self.members[member.member_id] = member
            if member.group_instance_id is not None:
                self.static_members[member.group_instance_id] = member.member_id
        self.leader_id = record.leader if record.leader in self.members else None
        self.state = GroupState.STABLE if self.members else GroupState.EMPTY


def parse_subscribed_topics(metadata: bytes) -> list[str] | None:
    """Topic names from a ConsumerProtocolSubscription (version, [topic]); None if malformed.

    Only the leading fields every version shares are read: int16 version, int32 count,
    then int16-length UTF-8 topic names.
    """
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        pos = 6
        topics = []
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.append(metadata[pos : pos + length].decode())
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
