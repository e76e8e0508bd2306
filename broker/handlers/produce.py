"""Produce: append record batches to partition logs (no per-record work).

Versions 0-11 are advertised (librdkafka disables compression unless v0 is
advertised, as Kafka 4 does) but v0-v2 (message formats v0/v1) are refused
per partition with UNSUPPORTED_VERSION. acks=0 sends no response; acks=1
answers after the write, acks=-1 after fsync (the log's group commit).

Appends of one connection start in request order: the partition appends of a
request are started under the connection's ``produce_lane`` (so pipelined
idempotent batches reach the log in sequence order) and awaited outside it
(so a request waiting for fsync does not hold up the next one).
"""

from __future__ import annotations

import asyncio
import logging
import struct

from ..connection import CloseConnection, Connection
from ..errors import (
    BrokerError,
    CorruptRecord,
    InvalidRequiredAcks,
    InvalidTopic,
    UnknownTopicOrPartition,
    UnsupportedVersion,
)
from ..log.manager import INTERNAL_TOPICS, Topic
from ..log.partition import AppendResult
from ..protocol import ProduceRequest, ProduceResponse
from .base import Handler, RequestContext, error_code, error_message
from .metadata import ensure_topic

__all__ = ["HANDLERS", "refuse_legacy_produce"]

logger = logging.getLogger(__name__)

PartitionResponse = ProduceResponse.TopicProduceResponse.PartitionProduceResponse


def _error(
    index: int, exc: BaseException, *, log_start_offset: int = -1
) -> ProduceResponse.TopicProduceResponse.PartitionProduceResponse:
    return PartitionResponse(
        index=index,
        error_code=error_code(exc),
        base_offset=-1,
        log_append_time_ms=-1,
        log_start_offset=log_start_offset,
        error_message=error_message(exc),
    )


async def handle_produce(ctx: RequestContext, request: ProduceRequest) -> ProduceResponse | None:
    """Produce v3-11: append each partition's batches, answer per partition.

    (v0-v2 never get here: the dispatcher answers them with ``refuse_legacy_produce``.)
    """
    acks = request.acks
    refusal: BrokerError | None = None
    if acks not in (-1, 0, 1):
        refusal = InvalidRequiredAcks(f"acks must be -1, 0 or 1 (got {acks})")
    elif request.transactional_id is not None:
        refusal = UnsupportedVersion("transactional produce is not supported by this broker")

    # (topic name, [(partition index, task or error)])
    plan: list[tuple[str, list[tuple[int, asyncio.Task[AppendResult] | BaseException]]]] = []
    tasks: list[asyncio.Task[AppendResult]] = []
    async with ctx.connection.produce_lane:
        for topic_data in request.topic_data:
            entries: list[tuple[int, asyncio.Task[AppendResult] | BaseException]] = []
            plan.append((topic_data.name, entries))
            topic: Topic | BrokerError
            if refusal is not None:
                topic = refusal
            elif topic_data.name in INTERNAL_TOPICS:
                topic = InvalidTopic(f"Cannot append to internal topic {topic_data.name}")
            else:
                try:
                    topic = await ensure_topic(ctx, topic_data.name)
                except BrokerError as exc:
                    topic = exc
            for partition_data in topic_data.partition_data:
                index = partition_data.index
                if isinstance(topic, BrokerError):
                    entries.append((index, topic))
                    continue
                if not 0 <= index < len(topic.partitions):
                    entries.append(
                        (
                            index,
                            UnknownTopicOrPartition(
                                f"topic {topic_data.name!r} has no partition {index}"
                            ),
                        )
                    )
                    continue
                records = partition_data.records
                if records is None:
                    records = b""
                if not isinstance(records, bytes | bytearray | memoryview):  # only on encode
                    entries.append((index, CorruptRecord("records are not bytes")))
                    continue
                task = asyncio.create_task(topic.partitions[index].append(records, acks=acks))
                tasks.append(task)
                entries.append((index, task))
    if tasks:
        try:
            await asyncio.wait(tasks)
        finally:
            # cancelled (connection closed): the appends still finish, owned here
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
    if acks == 0:
        for task in tasks:
            if task.exception() is not None:
                logger.warning("acks=0 produce from %s failed: %s", ctx.peer, task.exception())
        return None
    responses: list[ProduceResponse.TopicProduceResponse] = []
    for name, entries in plan:
        partitions: list[ProduceResponse.TopicProduceResponse.PartitionProduceResponse] = []
        for index, outcome in entries:
            if isinstance(outcome, BaseException):
                partitions.append(_error(index, outcome))
                continue
            failure = outcome.exception()
            if failure is not None:
                if not isinstance(failure, BrokerError):
                    logger.error("bug: append to %s-%d failed", name, index, exc_info=failure)
                partitions.append(_error(index, failure))
                continue
            result = outcome.result()
            partitions.append(
                PartitionResponse(
                    index=index,
                    error_code=0,
                    base_offset=result.base_offset,
                    log_append_time_ms=result.log_append_time_ms,
                    log_start_offset=result.log_start_offset,
                )
            )
        responses.append(
            ProduceResponse.TopicProduceResponse(name=name, partition_responses=partitions)
        )
    return ProduceResponse(responses=responses, throttle_time_ms=0)


def refuse_legacy_produce(body: memoryview, version: int, connection: Connection) -> bytes:
    """The response body refusing a Produce v0-v2 request: UNSUPPORTED_VERSION per partition.

    The codec reads Produce v3+ only; a v0-v2 body is a v3 body without its leading
    transactional id, so it is decoded as v3 behind a null one. The response is
    written by hand (v0: index, error, base offset; v2 adds log append time; v1+ a
    throttle time). With acks=0 no response is due: CloseConnection, so the client
    notices. Raises CodecError for a malformed body. Called by the dispatcher.
    """
    request, _ = ProduceRequest.decode(memoryview(b"\xff\xff" + bytes(body)), 0, 3)
    if request.acks == 0:
        raise CloseConnection(
            f"Produce v{version} with acks=0 refused: message formats v0/v1 are not "
            "supported, use Produce v3+"
        )
    logger.warning(
        "Produce v%d from %s refused: message formats v0/v1 are not supported, "
        "use Produce v3+ (record batches, magic 2)",
        version,
        connection.peer,
    )
    out = [struct.pack(">i", len(request.topic_data))]
    for topic in request.topic_data:
        name = topic.name.encode()
        out.append(struct.pack(">h", len(name)) + name)
        out.append(struct.pack(">i", len(topic.partition_data)))
        for partition in topic.partition_data:
            out.append(struct.pack(">ihq", partition.index, UnsupportedVersion.code, -1))
            if version >= 2:
                out.append(struct.pack(">q", -1))
    if version >= 1:
        out.append(struct.pack(">i", 0))
    return b"".join(out)


HANDLERS = (
    Handler(ProduceRequest, ProduceResponse, handle_produce, 0, 11, legacy=refuse_legacy_produce),
)
