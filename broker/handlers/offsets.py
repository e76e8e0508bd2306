"""ListOffsets (v0-7) and OffsetForLeaderEpoch (v0-4).

ListOffsets timestamps: -2 = earliest (log start offset), -1 = latest (high
watermark = last offset + 1), -3 = the record with the largest timestamp
(v7), t >= 0 = the first offset whose timestamp is >= t (none: offset -1).
ListOffsets v0 (Sarama, Burrow) answers Kafka's legacy list instead: up to
``max_num_offsets`` segment offsets, largest first (-1 = [high watermark, ...],
-2 = [log start offset]). The leader epoch is always 0 on this single node.
"""

from __future__ import annotations

from ..errors import BrokerError
from ..log.partition import PartitionLog
from ..protocol import (
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from .base import Handler, RequestContext, error_code

__all__ = ["HANDLERS"]

EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3

PartitionResponse = ListOffsetsResponse.ListOffsetsPartitionResponse


def _list_offset(partition_log: PartitionLog, timestamp: int) -> tuple[int, int]:
    """(offset, timestamp) answered for one ListOffsets partition."""
    if timestamp == EARLIEST:
        return partition_log.log_start_offset, -1
    if timestamp == LATEST:
        return partition_log.high_watermark, -1
    if timestamp == MAX_TIMESTAMP:
        found = partition_log.max_timestamp_offset()
        return (found[0], found[1]) if found is not None else (-1, -1)
    found = partition_log.offset_for_timestamp(timestamp)
    return (found[0], found[1]) if found is not None else (-1, -1)


async def handle_list_offsets(
    ctx: RequestContext, request: ListOffsetsRequest
) -> ListOffsetsResponse:
    """ListOffsets v0-7: earliest, latest, max timestamp or first offset at a timestamp."""
    legacy = ctx.api_version == 0
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            index = partition.partition_index
            try:
                partition_log = ctx.logs.partition(topic.name, index)
                if legacy:
                    offsets = partition_log.offsets_before(
                        partition.timestamp, partition.max_num_offsets
                    )
                    partitions.append(
                        PartitionResponse(
                            partition_index=index, error_code=0, old_style_offsets=offsets
                        )
                    )
                    continue
                offset, timestamp = _list_offset(partition_log, partition.timestamp)
            except BrokerError as exc:
                partitions.append(
                    PartitionResponse(partition_index=index, error_code=error_code(exc))
                )
                continue
            partitions.append(
                PartitionResponse(
                    partition_index=index,
                    error_code=0,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=0 if offset >= 0 else -1,
                )
            )
        topics.append(
            ListOffsetsResponse.ListOffsetsTopicResponse(name=topic.name, partitions=partitions)
        )
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics)


async def handle_offset_for_leader_epoch(
    ctx: RequestContext, request: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    """OffsetForLeaderEpoch v0-4: epoch 0 ends at the high watermark; later epochs are unknown
    (v0 answers the end offset only)."""
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            index = partition.partition
            try:
                partition_log = ctx.logs.partition(topic.topic, index)
            except BrokerError as exc:
                partitions.append(
                    OffsetForLeaderEpochResponse.EpochEndOffset(
                        error_code=error_code(exc), partition=index
                    )
                )
                continue
            if partition.leader_epoch == 0:
                epoch, end_offset = 0, partition_log.high_watermark
            else:
                epoch, end_offset = -1, -1
            partitions.append(
                OffsetForLeaderEpochResponse.EpochEndOffset(
                    error_code=0, partition=index, leader_epoch=epoch, end_offset=end_offset
                )
            )
        topics.append(
            OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(
                topic=topic.topic, partitions=partitions
            )
        )
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)


HANDLERS = (
    Handler(ListOffsetsRequest, ListOffsetsResponse, handle_list_offsets, 0, 7),
    Handler(
        OffsetForLeaderEpochRequest,
        OffsetForLeaderEpochResponse,
        handle_offset_for_leader_epoch,
        0,
        4,
    ),
)
