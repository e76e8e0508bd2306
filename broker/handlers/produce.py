"""Produce: append record batches to partition logs (no per-record work).

Versions 0-11 are advertised (librdkafka disables compression unless v0 is
advertised, as Kafka 4 does) but v0-v2 (message formats v0/v1) are refused
per partition with UNSUPPORTED_VERSION. acks=0 sends no response; acks=1
answers after the write, acks=-1 after fsync (the log's group commit).

Appends of one connection happen in request order: the partitions of a request
are written (synchronously, ``PartitionLog.append_nowait``) under the
connection's ``produce_lane`` (so pipelined idempotent batches reach the log in
sequence order); the fsync is awaited outside it, one group-commit round for all
the request's files (so a request waiting for fsync does not hold up the next
one, and a request costs no task per partition).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from ..connection import CloseConnection, Connection
from ..errors import (
    BrokerError,
    CorruptRecord,
    InvalidRequiredAcks,
    InvalidTopic,
    UnknownTopicOrPartition,
    UnsupportedVersion,
)
from ..log.flusher import Flusher
from ..log.manager import INTERNAL_TOPICS, Topic
from ..protocol import ProduceRequest, ProduceResponse
from ..security import AclOperation, ResourceType
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

    # (topic name, [[partition index, result or error, flusher to wait for or None]])
    plan: list[tuple[str, list[list[Any]]]] = []
    syncs: dict[Flusher, set[int]] = {}  # files to fsync before answering, per flusher
    append_failures: list[BaseException] = []
    async with ctx.connection.produce_lane:
        for topic_data in request.topic_data:
            entries: list[list[Any]] = []
            plan.append((topic_data.name, entries))
            topic: Topic | BrokerError
            if refusal is not None:
                topic = refusal
            elif topic_data.name in INTERNAL_TOPICS:
                topic = InvalidTopic(f"Cannot append to internal topic {topic_data.name}")
            else:
                try:
                    ctx.require(AclOperation.WRITE, ResourceType.TOPIC, topic_data.name)
                    topic = await ensure_topic(ctx, topic_data.name)
                except BrokerError as exc:
                    topic = exc
            for partition_data in topic_data.partition_data:
                index = partition_data.index
                if isinstance(topic, BrokerError):
                    entries.append([index, topic, None])
                    continue
                if not 0 <= index < len(topic.partitions):
                    missing = UnknownTopicOrPartition(
                        f"topic {topic_data.name!r} has no partition {index}"
                    )
                    entries.append([index, missing, None])
                    continue
                records = partition_data.records
                if records is None:
                    records = b""
                if not isinstance(records, bytes | bytearray | memoryview):  # only on encode
                    entries.append([index, CorruptRecord("records are not bytes"), None])
                    continue
                partition = topic.partitions[index]
                try:
                    result, fd = partition.append_nowait(records, acks=acks)
                except Exception as exc:
                    if not isinstance(exc, BrokerError):
                        logger.error(
                            "bug: append to %s-%d failed", topic_data.name, index, exc_info=exc
                        )
                    entries.append([index, exc, None])
                    append_failures.append(exc)
                    continue
                if fd is None:
                    entries.append([index, result, None])
                else:
                    syncs.setdefault(partition.flusher, set()).add(fd)
                    entries.append([index, result, partition.flusher])
    # Written (page cache); acks=-1 waits for one group-commit round for all its files.
    # If this request is cancelled (connection closed) the round still runs for the others.
    failures: dict[Flusher, BaseException] = {}
    for flusher, fds in syncs.items():
        try:
            await flusher.sync_files(fds)
        except BrokerError as exc:
            failures[flusher] = exc
    if acks == 0:
        for failure in append_failures:
            logger.warning("acks=0 produce from %s failed: %s", ctx.peer, failure)
        return None
    responses: list[ProduceResponse.TopicProduceResponse] = []
    for name, entries in plan:
        partitions: list[ProduceResponse.TopicProduceResponse.PartitionProduceResponse] = []
        for index, outcome, flusher in entries:
            if flusher is not None and flusher in failures:
                outcome = failures[flusher]
            if isinstance(outcome, BaseException):
                partitions.append(_error(index, outcome))
                continue
            result = outcome
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
