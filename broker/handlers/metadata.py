"""ApiVersions, Metadata and DescribeCluster: what the broker serves and where topics live.

Single node: node id ``config.node_id`` at the advertised host/port leads every
partition (leader epoch 0, replicas = isr = [node id]).
"""

from __future__ import annotations

import logging
import uuid

from ..errors import BrokerError, TopicAlreadyExists, UnknownTopicOrPartition
from ..log.manager import INTERNAL_TOPICS, Topic
from ..protocol import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    DescribeClusterRequest,
    DescribeClusterResponse,
    MetadataRequest,
    MetadataResponse,
)
from . import api_versions_response
from .base import Handler, RequestContext

__all__ = ["HANDLERS", "ensure_topic"]

logger = logging.getLogger(__name__)

_NO_OPERATIONS = -(2**31)


async def handle_api_versions(
    ctx: RequestContext, request: ApiVersionsRequest
) -> ApiVersionsResponse:
    """ApiVersions v0-4 (an unsupported version is answered by the dispatcher, in v0)."""
    return api_versions_response(ctx.state.registry)


async def ensure_topic(ctx: RequestContext, name: str) -> Topic:
    """The topic ``name``, auto-created with the default partition count when allowed.

    Raises UnknownTopicOrPartition when it does not exist and auto-creation is
    off, InvalidTopic for a bad name. Called by Metadata and Produce.
    """
    try:
        return ctx.logs.topic(name)
    except UnknownTopicOrPartition:
        if not ctx.config.auto_create_topics or name in INTERNAL_TOPICS:
            raise  # internal topics are the broker's to create, never auto-created
    try:
        topic = await ctx.logs.create_topic(name, ctx.config.default_partitions)
    except TopicAlreadyExists:
        return ctx.logs.topic(name)
    logger.info(
        "auto-created topic %s (%d partitions)", name, len(topic.partitions), extra={"topic": name}
    )
    return topic


def _topic_metadata(ctx: RequestContext, topic: Topic) -> MetadataResponse.MetadataResponseTopic:
    node = ctx.config.node_id
    return MetadataResponse.MetadataResponseTopic(
        error_code=0,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.internal,
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


async def handle_metadata(ctx: RequestContext, request: MetadataRequest) -> MetadataResponse:
    """Metadata v0-12: brokers, cluster id, topics (auto-created when asked and allowed)."""
    version = ctx.api_version
    requested = request.topics
    allow_create = version < 4 or request.allow_auto_topic_creation
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    if requested is None or (version == 0 and not requested):
        topics = [_topic_metadata(ctx, t) for t in list(ctx.logs.topics.values())]
    else:
        by_id = {t.topic_id: t for t in ctx.logs.topics.values()} if version >= 10 else {}
        for entry in requested:
            name = entry.name
            if name is None:
                topic_id = entry.topic_id
                by_id_topic = by_id.get(topic_id)
                if by_id_topic is None:
                    topics.append(
                        MetadataResponse.MetadataResponseTopic(
                            error_code=100, name=None, topic_id=topic_id
                        )
                    )
                else:
                    topics.append(_topic_metadata(ctx, by_id_topic))
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
        brokers=[
            MetadataResponse.MetadataResponseBroker(
                node_id=ctx.config.node_id,
                host=ctx.state.advertised_host,
                port=ctx.state.advertised_port,
            )
        ],
        cluster_id=ctx.state.cluster_id,
        controller_id=ctx.config.node_id,
        topics=topics,
        cluster_authorized_operations=_NO_OPERATIONS,
    )


async def handle_describe_cluster(
    ctx: RequestContext, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    """DescribeCluster v0-1: this one broker, as its own controller."""
    return DescribeClusterResponse(
        error_code=0,
        cluster_id=ctx.state.cluster_id,
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


HANDLERS = (
    Handler(ApiVersionsRequest, ApiVersionsResponse, handle_api_versions, 0, 4),
    Handler(MetadataRequest, MetadataResponse, handle_metadata, 0, 12),
    Handler(DescribeClusterRequest, DescribeClusterResponse, handle_describe_cluster, 0, 1),
)
