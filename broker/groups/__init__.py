"""Consumer groups (Kafka's classic group protocol) and committed offsets — domain code.

Knows nothing of the codec or sockets: handlers (``backbone.broker.handlers.groups``)
decode requests, call the methods below and map raised :class:`~backbone.broker.errors.
BrokerError` subclasses to error codes through ``exc.code``.

Lifecycle (owned by the broker assembly)::

    groups = GroupCoordinator(InternalTopic(logs), legacy_dir=data_dir / "__consumer_offsets")
    async with groups:            # loads the __consumer_offsets records, migrates an old
        ...                       # offsets.log once; exit: cancels timers, answers waiting
                                  # joins/syncs with NotCoordinator

``GroupCoordinator(log: RecordLog, *, clock: Clock | None = None (LoopClock),
wall_clock: Callable[[], float] = time.time, legacy_dir: Path | None = None,
initial_rebalance_delay_ms: int = 100, min_session_timeout_ms: int = 1000,
max_session_timeout_ms: int = 1_800_000, max_group_size: int | None = None,
offset_metadata_max_bytes: int = 4096)``

``log`` is where the records go: the ``__consumer_offsets`` topic, in Kafka's record
format (:mod:`backbone.broker.groups.records`, :mod:`backbone.broker.groups.store`);
``wall_clock`` stamps their commit timestamps.

``initial_rebalance_delay_ms`` is Kafka's ``group.initial.rebalance.delay.ms`` (3000 in
Kafka): when an Empty group starts its first rebalance the coordinator waits this long
(extended by the same amount, up to the rebalance timeout, while new members keep
arriving) so that consumers started together land in one generation. The default here
is small so tests and single-process deployments settle fast.

Membership (member ids are ``f"{client_id}-{uuid4()}"`` as in Kafka):

- ``async join_group(group_id: str, member_id: str, *, protocol_type: str,
  protocols: Sequence[tuple[str, bytes]], session_timeout_ms: int,
  rebalance_timeout_ms: int, group_instance_id: str | None = None, client_id: str = "",
  client_host: str = "", require_known_member_id: bool = True,
  supports_skip_assignment: bool = False, reason: str | None = None) -> JoinResult``
  Waits until the rebalance completes (all known members rejoined, or the rebalance
  timeout kicked the rest). ``require_known_member_id`` = JoinGroup v4+: an unknown
  dynamic member gets ``MemberIdRequired`` whose instance carries ``.member_id`` (answer
  it in the response's member_id); the id is held as *pending* (not a member, not shown
  to the leader) until it rejoins or its session timeout passes. ``supports_skip_assignment``
  = JoinGroup v9+. Raises InvalidGroupId, InvalidSessionTimeout, InconsistentGroupProtocol,
  UnknownMemberId, FencedInstanceId, GroupMaxSizeReached, CoordinatorNotAvailable,
  MemberIdRequired, NotCoordinator (the coordinator is shutting down).
- ``async sync_group(group_id: str, generation_id: int, member_id: str, *,
  assignments: Mapping[str, bytes], group_instance_id: str | None = None,
  protocol_type: str | None = None, protocol_name: str | None = None) -> SyncResult``
  Followers wait for the leader's SyncGroup; the leader's assignment is persisted (fsync)
  before anyone is answered. Raises InvalidGroupId, UnknownMemberId, IllegalGeneration,
  RebalanceInProgress, FencedInstanceId, InconsistentGroupProtocol.
- ``heartbeat(group_id: str, generation_id: int, member_id: str,
  group_instance_id: str | None = None) -> None`` (RebalanceInProgress tells the member
  to rejoin; UnknownMemberId, IllegalGeneration, FencedInstanceId, InvalidGroupId).
- ``leave_group(group_id: str, members: Sequence[MemberIdentity]) -> list[BrokerError | None]``
  one result per member (UnknownMemberId, FencedInstanceId); removes at once, rebalances;
  raises InvalidGroupId. An unknown group answers UnknownMemberId for every member.
- ``list_groups(states: Collection[str] | None = None) -> list[GroupListing]``
  (state names case-insensitive; unknown name -> ValueError).
- ``describe_group(group_id: str) -> GroupDescription`` (an unknown group is described
  with state "Dead" and no members, as Kafka's DescribeGroups < v6 does; handlers for
  v6+ answer GROUP_ID_NOT_FOUND when ``state == "Dead"``). ``group_exists(group_id) -> bool``.
- ``async delete_groups(group_ids: Sequence[str]) -> list[BrokerError | None]``
  (GroupIdNotFound, NonEmptyGroup, InvalidGroupId); offsets go with the group.

Committed offsets (durable: written to ``__consumer_offsets`` and fsynced before returning):

- ``async commit_offsets(group_id: str, generation_id: int, member_id: str,
  offsets: Sequence[OffsetCommit], group_instance_id: str | None = None)
  -> list[BrokerError | None]`` — group-level problems are raised (apply them to every
  partition: IllegalGeneration, UnknownMemberId, RebalanceInProgress, FencedInstanceId,
  CoordinatorNotAvailable, KafkaStorageError); per-partition results (OffsetMetadataTooLarge)
  come back in order. ``generation_id < 0`` with member_id "" is a "simple" commit, allowed
  for an Empty or unknown group. Whether the topic exists is the handler's check.
- ``fetch_offsets(group_id: str, partitions: Sequence[tuple[str, int]] | None)
  -> list[CommittedOffset]`` — None = every committed partition of the group (sorted);
  a partition with no commit comes back with offset -1.
- ``async delete_offsets(group_id: str, partitions: Sequence[tuple[str, int]])
  -> list[BrokerError | None]`` — raises InvalidGroupId, GroupIdNotFound, NonEmptyGroup
  (active non-consumer group); per partition GroupSubscribedToTopic.
- ``async drop_topic(topic: str) -> None`` — forget every group's offsets for a deleted topic.

Time: :class:`Clock` (``now() -> float`` seconds, ``call_at(when, callback) -> Timer``);
:class:`LoopClock` for production, :class:`ManualClock` (``advance(seconds)``) for tests.
State: :class:`GroupState` enum with the transition table :data:`TRANSITIONS`.
"""

from backbone.broker.groups.clock import Clock, LoopClock, ManualClock, Timer
from backbone.broker.groups.coordinator import GroupCoordinator
from backbone.broker.groups.results import (
    CommittedOffset,
    GroupDescription,
    GroupListing,
    JoinedMember,
    JoinResult,
    MemberDescription,
    MemberIdentity,
    OffsetCommit,
    SyncResult,
)
from backbone.broker.groups.state import (
    TRANSITIONS,
    GroupState,
    IllegalStateTransition,
)
from backbone.broker.groups.store import RecordLog

__all__ = [
    "TRANSITIONS",
    "Clock",
    "CommittedOffset",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupState",
    "IllegalStateTransition",
    "JoinResult",
    "JoinedMember",
    "LoopClock",
    "ManualClock",
    "MemberDescription",
    "MemberIdentity",
    "OffsetCommit",
    "RecordLog",
    "SyncResult",
    "Timer",
]
