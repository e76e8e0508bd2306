"""Committed offsets: OffsetCommit (v0-8), OffsetFetch (v0-8) and OffsetDelete (v0).

Thin translations between the decoded requests and
:class:`~backbone.broker.groups.GroupCoordinator`; domain errors become error codes
through ``exc.code``. OffsetCommit answers after the commit is fsynced; partitions of
unknown topics are refused per partition. OffsetCommit v9+ and OffsetFetch v9+ (KIP-848
semantics) are not offered; OffsetFetch v8 carries several groups per request.
OffsetCommit v0 (no generation, no member) is a simple commit; v1's per-partition commit
timestamp and v2-4's retention time are ignored (offsets do not expire, as with v5+).
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
from .base import Handler, RequestContext, error_code

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
    for topic in request.topics:
        for p in topic.partitions:
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
) -> dict[str, list[CommittedOffset]]:
    """Committed offsets by topic name for one group (``topics`` None = all committed)."""
    wanted: list[tuple[str, int]] | None = None
    by_topic: dict[str, list[CommittedOffset]] = {}
    if topics is not None:
        wanted = [(t.name, index) for t in topics for index in t.partition_indexes]
        for t in topics:
            by_topic.setdefault(t.name, [])
    for committed in ctx.groups.fetch_offsets(group_id, wanted):
        by_topic.setdefault(committed.topic, []).append(committed)
    return by_topic


async def handle_offset_fetch(
    ctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse:
    """OffsetFetch v0-8: null topics = every committed partition; v8 = several groups."""
    version = ctx.api_version
    if version >= 8:
        groups = []
        for group in request.groups:
            by_topic = _fetch(ctx, group.group_id, group.topics)
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
                                    error_code=0,
                                )
                                for c in committed
                            ],
                        )
                        for name, committed in by_topic.items()
                    ],
                )
            )
        return OffsetFetchResponse(groups=groups)
    by_topic = _fetch(ctx, request.group_id, request.topics)
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
                        error_code=0,
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
    codes: dict[tuple[str, int], int] = {}
    wanted: list[tuple[str, int]] = []
    for topic in request.topics:
        for p in topic.partitions:
            if _partition_known(ctx, topic.name, p.partition_index):
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
