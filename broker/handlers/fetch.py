"""Fetch v4-12: serve raw byte ranges of the logs, with long polling.

Reads come from ``PartitionLog.read`` as file slices the server sends with
``sendfile``; no record is looked at. Limits: ``max_bytes`` for the whole
response and ``partition_max_bytes`` per partition, except that the first
non-empty partition always gets at least one whole batch (KIP-74). When less
than ``min_bytes`` is available the request waits (``PartitionLog.watch``) and
is answered the moment an append makes ``min_bytes`` available, or at
``max_wait_ms``, or at broker shutdown. Fetch sessions are not kept: the
response's session id is 0, so clients send full fetch requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..errors import BrokerError
from ..protocol import FetchRequest, FetchResponse, Records
from ..security import AclOperation, ResourceType, TopicAuthorizationFailed
from .base import Handler, RequestContext, error_code

__all__ = ["HANDLERS"]

logger = logging.getLogger(__name__)

TopicResponse = FetchResponse.FetchableTopicResponse
PartitionData = TopicResponse.PartitionData


def _collect(ctx: RequestContext, request: FetchRequest) -> tuple[list[TopicResponse], int, bool]:
    """(topic responses, bytes of records, any partition error) for the request now."""
    logs = ctx.logs
    budget = request.max_bytes if ctx.api_version >= 3 else 2**31 - 1
    total = 0
    failed = False
    responses: list[TopicResponse] = []
    for fetch_topic in request.topics:
        partitions: list[TopicResponse.PartitionData] = []
        readable = ctx.authorized(AclOperation.READ, ResourceType.TOPIC, fetch_topic.topic)
        for fetch_partition in fetch_topic.partitions:
            index = fetch_partition.partition
            try:
                if not readable:
                    ctx.require(AclOperation.READ, ResourceType.TOPIC, fetch_topic.topic)
                partition_log = logs.partition(fetch_topic.topic, index)
                offset = fetch_partition.fetch_offset
                remaining = min(fetch_partition.partition_max_bytes, budget - total)
                if total > 0 and remaining <= 0:
                    records: Records = b""
                    high_watermark = partition_log.high_watermark
                    log_start_offset = partition_log.log_start_offset
                else:
                    result = partition_log.read(offset, max(remaining, 1))
                    records = result.records
                    high_watermark = result.high_watermark
                    log_start_offset = result.log_start_offset
                    if total > 0 and len(records) > remaining:
                        records = b""  # KIP-74 only for the first non-empty partition
                total += len(records)
                partitions.append(
                    PartitionData(
                        partition_index=index,
                        error_code=0,
                        high_watermark=high_watermark,
                        last_stable_offset=high_watermark,
                        log_start_offset=log_start_offset,
                        aborted_transactions=None,
                        records=records,
                    )
                )
            except BrokerError as exc:
                failed = True
                high_watermark = log_start_offset = -1
                try:
                    if isinstance(exc, TopicAuthorizationFailed):
                        raise exc  # tells nothing about the topic
                    partition_log = logs.partition(fetch_topic.topic, index)
                    high_watermark = partition_log.high_watermark
                    log_start_offset = partition_log.log_start_offset
                except BrokerError:
                    pass
                partitions.append(
                    PartitionData(
                        partition_index=index,
                        error_code=error_code(exc),
                        high_watermark=high_watermark,
                        last_stable_offset=high_watermark,
                        log_start_offset=log_start_offset,
                        aborted_transactions=None,
                        records=None,
                    )
                )
        responses.append(TopicResponse(topic=fetch_topic.topic, partitions=partitions))
    return responses, total, failed


async def handle_fetch(ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    """Fetch v4-12: read now; if short of min_bytes, long-poll until data or max_wait_ms."""
    responses, total, failed = _collect(ctx, request)
    min_bytes = max(request.min_bytes, 1)
    if total < min_bytes and not failed and request.max_wait_ms > 0:
        responses = await _long_poll(ctx, request, min_bytes, responses)
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=responses)


async def _long_poll(
    ctx: RequestContext, request: FetchRequest, min_bytes: int, responses: list[TopicResponse]
) -> list[TopicResponse]:
    """Wait for appends to the requested partitions until ``min_bytes`` are available,
    ``max_wait_ms`` passes, the broker stops or the connection closes.

    One future per wakeup, resolved by plain callbacks: the partitions' watches, a timer
    at ``max_wait_ms``, and the broker's ``stopping`` and the connection's ``closing``
    events (:class:`~backbone.broker.connection.WatchableEvent`). No task, no
    ``asyncio.wait`` per poll: a consumer long-polling a partition that gets an append
    every millisecond costs a callback and one future per append.
    """
    loop = asyncio.get_running_loop()
    wakeup: asyncio.Future[None] = loop.create_future()
    expired = False

    def wake() -> None:
        if not wakeup.done():
            wakeup.set_result(None)

    def expire() -> None:
        nonlocal expired
        expired = True
        wake()

    stopping, closing = ctx.state.stopping, ctx.connection.closing
    timer = loop.call_later(request.max_wait_ms / 1000, expire)
    unsubscribe: list[Callable[[], None]] = []
    stopping.watch(wake)
    closing.watch(wake)
    try:
        for fetch_topic in request.topics:
            for fetch_partition in fetch_topic.partitions:
                try:
                    partition_log = ctx.logs.partition(fetch_topic.topic, fetch_partition.partition)
                except BrokerError:
                    continue
                unsubscribe.append(partition_log.watch(wake))
        while True:
            await wakeup
            if expired or stopping.is_set() or closing.is_set():
                break
            wakeup = loop.create_future()
            responses, total, failed = _collect(ctx, request)
            if total >= min_bytes or failed:
                return responses
    finally:
        timer.cancel()
        stopping.unwatch(wake)
        closing.unwatch(wake)
        for stop in unsubscribe:
            stop()
    responses, _, _ = _collect(ctx, request)
    return responses


HANDLERS = (Handler(FetchRequest, FetchResponse, handle_fetch, 4, 12),)
