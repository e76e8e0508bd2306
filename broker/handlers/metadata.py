"""ApiVersions, Metadata and DescribeCluster: what the broker serves and where topics live.

Single node: node id ``config.node_id`` at the advertised host/port leads every
partition (leader epoch 0, replicas = isr = [node id]).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import BrokerError, TopicAlreadyExists, UnknownTopicOrPartition
from ..protocol import (
    ApiVersionsResponse,
    DescribeClusterResponse,
    MetadataResponse,
)
from .base import Handler, RequestContext, handlers

__all__ = ["HANDLERS", "api_versions_response", "ensure_topic"]

logger = logging.getLogger(__name__)

_NO_OPERATIONS = -(2**31)


def api_versions_response(registry: Mapping[int, Handler], code: int = 0) -> Any:
    """The ApiVersions answer computed from the handler registry (no tagged fields)."""
    return ApiVersionsResponse(
        error_code=code,
        api_keys=[
            ApiVersionsResponse.ApiVersion(
                api_key=h.api_key, min_version=h.min_version, max_version=h.max_version
            )
            for h in sorted(registry.values(), key=lambda h: h.api_key)
        ],
    )


async def handle_api_versions(ctx: RequestContext, request: Any) -> Any:
    """ApiVersions v0-4 (an unsupported version is answered by the dispatcher, in v0)."""
    return api_versions_response(ctx.state.registry)


async def ensure_topic(ctx: RequestContext, name: str) -> Any:
    """The topic ``name``, auto-created with the default partition count when allowed.

    Raises UnknownTopicOrPartition when it does not exist and auto-creation is
    off, InvalidTopic for a bad name. Called by Metadata and Produce.
    """
    try:
        return ctx.logs.topic(name)
    except UnknownTopicOrPartition:
        if not ctx.config.auto_create_topics:
            raise
    try:
        topic = await ctx.logs.create_topic(name, ctx.config.default_partitions)
    except TopicAlreadyExists:
        return ctx.logs.topic(name)
    logger.info("auto-created topic %s (%d partitions)", name, len(topic.partitions))
    return topic


def _brokers(ctx: RequestContext, cls: Any) -> list[Any]:
    return [
        cls(
            node_id=ctx.config.node_id,
            host=ctx.state.advertised_host,
            port=ctx.state.advertised_port,
        )
    ]


def _topic_metadata(ctx: RequestContext, topic: Any) -> Any:
    node = ctx.config.node_id
    return MetadataResponse.MetadataResponseTopic(
        error_code=0,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=False,
        partitions=[
            MetadataResponse.MetadataResponsePartition(
                error_code=0,
                partition_index=index,
                leader_id=node,
                leader_epoch=0,
                replica_nodes=[node],
                isr_nodes=[node],
                offline_replicas=[],
            )
            for index in range(len(topic.partitions))
        ],
        topic_authorized_operations=_NO_OPERATIONS,
    )


async def handle_metadata(ctx: RequestContext, request: Any) -> Any:
    """Metadata v0-12: brokers, cluster id, topics (auto-created when asked and allowed)."""
    version = ctx.api_version
    requested = request.topics
    allow_create = version < 4 or request.allow_auto_topic_creation
    topics: list[Any] = []
    if requested is None or (version == 0 and not requested):
        topics = [_topic_metadata(ctx, t) for t in list(ctx.logs.topics.values())]
    else:
        by_id = {t.topic_id: t for t in ctx.logs.topics.values()} if version >= 10 else {}
        for entry in requested:
            name = entry.name
            if name is None:
                topic_id = getattr(entry, "topic_id", None)
                topic = by_id.get(topic_id)
                if topic is None:
                    topics.append(
                        MetadataResponse.MetadataResponseTopic(
                            error_code=100, name=None, topic_id=topic_id
                        )
                    )
                else:
                    topics.append(_topic_metadata(ctx, topic))
                continue
            try:
                if allow_create:
                    topic = await ensure_topic(ctx, name)
                else:
                    topic = ctx.logs.topic(name)
            except BrokerError as exc:
                topics.append(
                    MetadataResponse.MetadataResponseTopic(
                        error_code=exc.code, name=name, topic_id=uuid.UUID(int=0)
                    )
                )
                continue
            topics.append(_topic_metadata(ctx, topic))
    return MetadataResponse(
        brokers=_brokers(ctx, MetadataResponse.MetadataResponseBroker),
        cluster_id=ctx.config.cluster_id,
        controller_id=ctx.config.node_id,
        topics=topics,
        cluster_authorized_operations=_NO_OPERATIONS,
    )


async def handle_describe_cluster(ctx: RequestContext, request: Any) -> Any:
    """DescribeCluster v0-1: this one broker, as its own controller."""
    return DescribeClusterResponse(
        error_code=0,
        cluster_id=ctx.config.cluster_id,
        controller_id=ctx.config.node_id,
        brokers=[
            DescribeClusterResponse.DescribeClusterBroker(
                broker_id=ctx.config.node_id,
                host=ctx.state.advertised_host,
                port=ctx.state.advertised_port,
            )
        ],
        cluster_authorized_operations=_NO_OPERATIONS,
    )


HANDLERS = handlers(
    Handler(18, 0, 4, handle_api_versions),
    Handler(3, 0, 12, handle_metadata),
    Handler(60, 0, 1, handle_describe_cluster),
)
