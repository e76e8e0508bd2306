"""The coordinator's public value types (what handlers pass in and get back)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CommittedOffset",
    "GroupDescription",
    "GroupListing",
    "JoinResult",
    "JoinedMember",
    "MemberDescription",
    "MemberIdentity",
    "OffsetCommit",
    "SyncResult",
]


@dataclass(frozen=True, slots=True)
class JoinedMember:
    """One member as the leader sees it in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A successful JoinGroup: the generation and, for the leader, every member's metadata."""

    member_id: str
    generation_id: int
    protocol_type: str | None
    protocol_name: str | None
    leader_id: str
    members: list[JoinedMember] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class SyncResult:
    """A successful SyncGroup: this member's assignment bytes (as the leader wrote them)."""

    protocol_type: str | None
    protocol_name: str | None
    assignment: bytes


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    """A member named in LeaveGroup (``member_id`` may be "" when ``group_instance_id`` is set)."""

    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class GroupListing:
    """One row of ListGroups: Kafka's state name and the protocol type ("" if none)."""

    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """One member in DescribeGroups (metadata/assignment are b"" unless the group is Stable)."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """DescribeGroups data for one group, with Kafka's state name."""

    group_id: str
    state: str
    protocol_type: str
    protocol_name: str
    members: list[MemberDescription] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """One partition of an OffsetCommit request."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """One partition of an OffsetFetch answer (offset -1 and metadata "" when none committed)."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
