"""CreateTopics (v0-7), DeleteTopics (v0-6), CreatePartitions (v0-3), DeleteRecords (v0-2).

Single node: the replication factor must be 1 or -1 (= default), manual
assignments may only name this node. Topic errors are answered per topic with
the domain error's code and message.
"""

from __future__ import annotations

import logging
import uuid

from ..errors import (
    BrokerError,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidRequest,
    UnknownTopicId,
)
from ..protocol import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
)
from .base import Handler, RequestContext, error_code, error_message

__all__ = ["HANDLERS"]

logger = logging.getLogger(__name__)

_ZERO_ID = uuid.UUID(int=0)
_TOPIC_CONFIG = 1
_DEFAULT_CONFIG = 5


def _partition_count(ctx: RequestContext, topic: CreateTopicsRequest.CreatableTopic) -> int:
    node = ctx.config.node_id
    if topic.replication_factor not in (-1, 1):
        raise InvalidReplicationFactor(
            f"replication factor {topic.replication_factor} is not possible on a single "
            "broker: use 1 (or -1 for the default)"
        )
    if topic.assignments:
        if topic.num_partitions != -1:
            raise InvalidRequest("give either num_partitions or replica assignments, not both")
        for assignment in topic.assignments:
            if list(assignment.broker_ids) != [node]:
                raise InvalidReplicationFactor(
                    f"partition {assignment.partition_index} is assigned to brokers "
                    f"{list(assignment.broker_ids)}; only [{node}] exists"
                )
        return len(topic.assignments)
    if topic.num_partitions == -1:
        return ctx.config.default_partitions
    if topic.num_partitions < 1:
        raise InvalidPartitions(f"num_partitions must be at least 1 (got {topic.num_partitions})")
    return topic.num_partitions


async def handle_create_topics(
    ctx: RequestContext, request: CreateTopicsRequest
) -> CreateTopicsResponse:
    """CreateTopics v0-7: create each topic (or only validate), answer per topic."""
    results = []
    seen: set[str] = set()
    for topic in request.topics:
        result = CreateTopicsResponse.CreatableTopicResult(
            name=topic.name,
            topic_id=_ZERO_ID,
            error_message=None,  # null on success, as Kafka
        )
        try:
            if topic.name in seen:
                raise InvalidRequest(f"topic {topic.name!r} appears twice in the request")
            seen.add(topic.name)
            count = _partition_count(ctx, topic)
            configs = {c.name: c.value for c in topic.configs}
            created = await ctx.logs.create_topic(
                topic.name, count, configs, validate_only=request.validate_only
            )
        except BrokerError as exc:
            result.error_code = error_code(exc)
            result.error_message = error_message(exc)
            results.append(result)
            continue
        result.error_code = 0
        result.topic_id = created.topic_id if not request.validate_only else _ZERO_ID
        result.num_partitions = count
        result.replication_factor = 1
        result.configs = [
            CreateTopicsResponse.CreatableTopicConfigs(
                name=entry.name,
                value=entry.value,
                read_only=entry.read_only,
                config_source=_DEFAULT_CONFIG if entry.is_default else _TOPIC_CONFIG,
                is_sensitive=entry.is_sensitive,
            )
            for entry in created.config.describe()
        ]
        results.append(result)
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


async def handle_delete_topics(
    ctx: RequestContext, request: DeleteTopicsRequest
) -> DeleteTopicsResponse:
    """DeleteTopics v0-6 (by name; by topic id from v6)."""
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        result = DeleteTopicsResponse.DeletableTopicResult(
            name=name, topic_id=topic_id or _ZERO_ID, error_code=0
        )
        try:
            if name is None:
                found = ctx.logs.topic_by_id(topic_id) if topic_id is not None else None
                if found is None:
                    raise UnknownTopicId(f"no topic has id {topic_id}")
                name = found.name
                result.name = name
            topic = ctx.logs.topic(name)
            result.topic_id = topic.topic_id
            if topic.internal:
                raise InvalidRequest(
                    f"Topic {name} is internal (the group coordinator's storage) and cannot "
                    "be deleted."
                )
            await ctx.logs.delete_topic(name)
            if ctx.state.groups is not None:
                await ctx.state.groups.drop_topic(name)
        except BrokerError as exc:
            result.error_code = error_code(exc)
            result.error_message = error_message(exc)
        results.append(result)
    return DeleteTopicsResponse(throttle_time_ms=0, responses=results)


async def handle_create_partitions(
    ctx: RequestContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    """CreatePartitions v0-3: grow a topic to ``count`` partitions."""
    results = []
    for topic in request.topics:
        result = CreatePartitionsResponse.CreatePartitionsTopicResult(name=topic.name)
        try:
            existing = ctx.logs.topic(topic.name)
            if topic.count <= len(existing.partitions):
                raise InvalidPartitions(
                    f"topic {topic.name!r} has {len(existing.partitions)} partitions; "
                    f"the new count must be larger (got {topic.count})"
                )
            if topic.assignments is not None:
                for assignment in topic.assignments:
                    if list(assignment.broker_ids) != [ctx.config.node_id]:
                        raise InvalidReplicationFactor(
                            f"only broker {ctx.config.node_id} exists "
                            f"(assignment {list(assignment.broker_ids)})"
                        )
            await ctx.logs.create_partitions(
                topic.name, topic.count, validate_only=request.validate_only
            )
            result.error_code = 0
        except BrokerError as exc:
            result.error_code = error_code(exc)
            result.error_message = error_message(exc)
        results.append(result)
    return CreatePartitionsResponse(throttle_time_ms=0, results=results)


async def handle_delete_records(
    ctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    """DeleteRecords v0-2: advance log start offsets (offset -1 = the high watermark)."""
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            index = partition.partition_index
            result = DeleteRecordsResponse.DeleteRecordsPartitionResult(
                partition_index=index, low_watermark=-1, error_code=0
            )
            try:
                partition_log = ctx.logs.partition(topic.name, index)
                offset = partition.offset
                if offset == -1:
                    offset = partition_log.high_watermark
                result.low_watermark = await partition_log.delete_records(offset)
            except BrokerError as exc:
                result.error_code = error_code(exc)
            partitions.append(result)
        topics.append(
            DeleteRecordsResponse.DeleteRecordsTopicResult(name=topic.name, partitions=partitions)
        )
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)


HANDLERS = (
    Handler(CreateTopicsRequest, CreateTopicsResponse, handle_create_topics, 0, 7),
    Handler(DeleteTopicsRequest, DeleteTopicsResponse, handle_delete_topics, 0, 6),
    Handler(CreatePartitionsRequest, CreatePartitionsResponse, handle_create_partitions, 0, 3),
    Handler(DeleteRecordsRequest, DeleteRecordsResponse, handle_delete_records, 0, 2),
)
