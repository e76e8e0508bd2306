"""Committed offsets: OffsetCommit (v0-8), OffsetFetch (v0-8) and OffsetDelete (v0).

Thin translations between the decoded requests and
:class:`~backbone.broker.groups.GroupCoordinator`; domain errors become error codes
through ``exc.code``. OffsetCommit answers after the commit is fsynced; partitions of
unknown topics are refused per partition. OffsetCommit v9+ and OffsetFetch v9+ (KIP-848
semantics) are not offered; OffsetFetch v8 carries several groups per request.
OffsetCommit v0 (no generation, no member) is a simple commit; v1's per-partition commit
timestamp and v2-4's retention time are ignored (offsets do not expire, as with v5+).

With ACLs (Kafka's rules): OffsetCommit needs READ on the group and on each topic,
OffsetFetch DESCRIBE on the group and on each topic (topics it may not describe are
left out of "all committed offsets"), OffsetDelete DELETE on the group and READ on
each topic; refusals are GROUP_ or TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BrokerError, UnknownTopicOrPartition
from ..groups import CommittedOffset, OffsetCommit
from ..protocol import (
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from ..security import (
    AclOperation,
    GroupAuthorizationFailed,
    ResourceType,
    TopicAuthorizationFailed,
)
from .base import Handler, RequestContext, error_code

_TOPIC, _GROUP = ResourceType.TOPIC, ResourceType.GROUP

__all__ = ["HANDLERS"]


def _partition_known(ctx: RequestContext, topic: str, partition: int) -> bool:
    try:
        ctx.logs.partition(topic, partition)
    except UnknownTopicOrPartition:
        return False
    return True


async def handle_offset_commit(
    ctx: RequestContext, request: OffsetCommitRequest
) -> OffsetCommitResponse:
    """OffsetCommit v0-8: persisted (fsync) before the answer; unknown partitions refused."""
    codes: dict[tuple[str, int], int] = {}
    commits: list[OffsetCommit] = []
    group_ok = ctx.authorized(AclOperation.READ, _GROUP, request.group_id)
    for topic in request.topics:
        topic_ok = ctx.authorized(AclOperation.READ, _TOPIC, topic.name)
        for p in topic.partitions:
            if not group_ok or not topic_ok:
                codes[(topic.name, p.partition_index)] = (
                    GroupAuthorizationFailed.code if not group_ok else TopicAuthorizationFailed.code
                )
                continue
            if not _partition_known(ctx, topic.name, p.partition_index):
                codes[(topic.name, p.partition_index)] = UnknownTopicOrPartition.code
                continue
            commits.append(
                OffsetCommit(
                    topic=topic.name,
                    partition=p.partition_index,
                    offset=p.committed_offset,
                    leader_epoch=p.committed_leader_epoch if ctx.api_version >= 6 else -1,
                    metadata=p.committed_metadata,
                )
            )
    if commits:
        try:
            results = await ctx.groups.commit_offsets(
                request.group_id,
                request.generation_id_or_member_epoch,
                request.member_id,
                commits,
                request.group_instance_id if ctx.api_version >= 7 else None,
            )
        except BrokerError as exc:
            results = [exc] * len(commits)
        for commit, result in zip(commits, results, strict=True):
            codes[(commit.topic, commit.partition)] = error_code(result) if result else 0
    return OffsetCommitResponse(
        topics=[
            OffsetCommitResponse.OffsetCommitResponseTopic(
                name=topic.name,
                partitions=[
                    OffsetCommitResponse.OffsetCommitResponsePartition(
                        partition_index=p.partition_index,
                        error_code=codes[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )


def _fetch(
    ctx: RequestContext,
    group_id: str,
    topics: Sequence[OffsetFetchRequest.OffsetFetchRequestTopic]
    | Sequence[OffsetFetchRequest.OffsetFetchRequestGroup.OffsetFetchRequestTopics]
    | None,
) -> tuple[dict[str, list[CommittedOffset]], set[str]]:
    """Committed offsets by topic name for one group (``topics`` None = all committed),
    and the requested topics the principal may not describe (answered with -1 and
    TOPIC_AUTHORIZATION_FAILED)."""
    wanted: list[tuple[str, int]] | None = None
    by_topic: dict[str, list[CommittedOffset]] = {}
    refused: set[str] = set()
    if topics is not None:
        refused = {
            t.name for t in topics if not ctx.authorized(AclOperation.DESCRIBE, _TOPIC, t.name)
        }
        wanted = [
            (t.name, index)
            for t in topics
            if t.name not in refused
            for index in t.partition_indexes
        ]
        for t in topics:
            by_topic.setdefault(t.name, [])
            if t.name in refused:
                by_topic[t.name] += [CommittedOffset(t.name, i, -1) for i in t.partition_indexes]
    for committed in ctx.groups.fetch_offsets(group_id, wanted):
        if topics is None and not ctx.authorized(AclOperation.DESCRIBE, _TOPIC, committed.topic):
            continue
        by_topic.setdefault(committed.topic, []).append(committed)
    return by_topic, refused


def _group_refused(ctx: RequestContext, group_id: str) -> bool:
    return not ctx.authorized(AclOperation.DESCRIBE, _GROUP, group_id)


async def handle_offset_fetch(
    ctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse:
    """OffsetFetch v0-8: null topics = every committed partition; v8 = several groups."""
    version = ctx.api_version
    if version >= 8:
        groups = []
        for group in request.groups:
            if _group_refused(ctx, group.group_id):
                groups.append(
                    OffsetFetchResponse.OffsetFetchResponseGroup(
                        group_id=group.group_id, error_code=GroupAuthorizationFailed.code, topics=[]
                    )
                )
                continue
            by_topic, refused = _fetch(ctx, group.group_id, group.topics)
            groups.append(
                OffsetFetchResponse.OffsetFetchResponseGroup(
                    group_id=group.group_id,
                    error_code=0,
                    topics=[
                        OffsetFetchResponse.OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                OffsetFetchResponse.OffsetFetchResponsePartitions(
                                    partition_index=c.partition,
                                    committed_offset=c.offset,
                                    committed_leader_epoch=c.leader_epoch,
                                    metadata=c.metadata,
                                    error_code=TopicAuthorizationFailed.code
                                    if name in refused
                                    else 0,
                                )
                                for c in committed
                            ],
                        )
                        for name, committed in by_topic.items()
                    ],
                )
            )
        return OffsetFetchResponse(groups=groups)
    if _group_refused(ctx, request.group_id):
        if version >= 2:
            return OffsetFetchResponse(error_code=GroupAuthorizationFailed.code, topics=[])
        by_topic = {
            t.name: [CommittedOffset(t.name, i, -1) for i in t.partition_indexes]
            for t in request.topics or ()
        }
        refused, code = set(by_topic), GroupAuthorizationFailed.code
    else:
        by_topic, refused = _fetch(ctx, request.group_id, request.topics)
        code = TopicAuthorizationFailed.code
    return OffsetFetchResponse(
        error_code=0,
        topics=[
            OffsetFetchResponse.OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    OffsetFetchResponse.OffsetFetchResponsePartition(
                        partition_index=c.partition,
                        committed_offset=c.offset,
                        committed_leader_epoch=c.leader_epoch,
                        metadata=c.metadata,
                        error_code=code if name in refused else 0,
                    )
                    for c in committed
                ],
            )
            for name, committed in by_topic.items()
        ],
    )


async def handle_offset_delete(
    ctx: RequestContext, request: OffsetDeleteRequest
) -> OffsetDeleteResponse:
    """OffsetDelete v0: refused per partition while the active group subscribes to it."""
    if not ctx.authorized(AclOperation.DELETE, _GROUP, request.group_id):
        return OffsetDeleteResponse(error_code=GroupAuthorizationFailed.code, topics=[])
    codes: dict[tuple[str, int], int] = {}
    wanted: list[tuple[str, int]] = []
    for topic in request.topics:
        readable = ctx.authorized(AclOperation.READ, _TOPIC, topic.name)
        for p in topic.partitions:
            if not readable:
                codes[(topic.name, p.partition_index)] = TopicAuthorizationFailed.code
            elif _partition_known(ctx, topic.name, p.partition_index):
                wanted.append((topic.name, p.partition_index))
            else:
                codes[(topic.name, p.partition_index)] = UnknownTopicOrPartition.code
    try:
        results = await ctx.groups.delete_offsets(request.group_id, wanted)
    except BrokerError as exc:
        return OffsetDeleteResponse(error_code=exc.code, topics=[])
    for key, result in zip(wanted, results, strict=True):
        codes[key] = error_code(result) if result is not None else 0
    return OffsetDeleteResponse(
        error_code=0,
        topics=[
            OffsetDeleteResponse.OffsetDeleteResponseTopic(
                name=topic.name,
                partitions=[
                    OffsetDeleteResponse.OffsetDeleteResponsePartition(
                        partition_index=p.partition_index,
                        error_code=codes[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ],
    )


HANDLERS = (
    Handler(OffsetCommitRequest, OffsetCommitResponse, handle_offset_commit, 0, 8),
    Handler(OffsetFetchRequest, OffsetFetchResponse, handle_offset_fetch, 0, 8),
    Handler(OffsetDeleteRequest, OffsetDeleteResponse, handle_offset_delete, 0, 0),
)
