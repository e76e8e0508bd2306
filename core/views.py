"""What operators see: topics, partitions, consumer groups and records as pydantic models.

One set of models for the CLI's ``--json`` output and the admin HTTP API (whose
OpenAPI schema is generated from them): :class:`TopicView`, :class:`GroupView`,
:class:`GroupSummary`, :class:`RecordView`, :class:`OffsetChange`. Offsets follow
Kafka's words: ``start_offset`` is the log start offset (the first record still
there), ``end_offset`` the high watermark (the offset the next record gets); a
consumer group's ``committed`` offset is the next record it will read, so
``lag = end_offset - committed``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ConnectorDetail",
    "ConnectorPartition",
    "ConnectorView",
    "DeadLetterView",
    "GroupMember",
    "GroupPartition",
    "GroupSummary",
    "GroupView",
    "OffsetChange",
    "PartitionView",
    "RateSample",
    "RecordPage",
    "RecordView",
    "RedriveResult",
    "TopicConfig",
    "TopicView",
    "decode_data",
]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class PartitionView(_View):
    """One partition of a topic."""

    partition: int
    leader: int | None = None
    """Node id of the partition's leader (``None`` when it has none)."""
    start_offset: int
    """Log start offset: the first record still in the partition."""
    end_offset: int
    """High watermark: the offset the next record gets."""
    records: int
    """``end_offset - start_offset`` (fewer records may remain in a compacted topic)."""
    size_bytes: int | None = None
    """Bytes on disk (segments and indexes); ``None`` when the broker's data directory
    is not on this machine."""


class TopicConfig(_View):
    """One topic config entry."""

    name: str
    value: str | None
    default: bool
    """``False`` when set on the topic itself (an override)."""


class TopicView(_View):
    """A topic: partitions with offsets and sizes, and its configs."""

    name: str
    internal: bool = False
    """Kafka's internal topics, and Backbone's own (names starting with ``_``)."""
    partitions: list[PartitionView]
    records: int
    """Sum over the partitions."""
    size_bytes: int | None = None
    """Sum over the partitions (``None`` when unknown)."""
    configs: list[TopicConfig] = Field(default_factory=list)
    """Every config of the topic (empty in listings)."""


class GroupMember(_View):
    """A live member of a consumer group."""

    member_id: str
    client_id: str
    host: str
    assignment: dict[str, list[int]] = Field(default_factory=dict)
    """Partitions assigned to it, by topic."""


class GroupPartition(_View):
    """A group's progress on one partition."""

    topic: str
    partition: int
    committed: int | None
    """The committed offset (the next record the group reads); ``None`` if none."""
    end_offset: int
    lag: int | None
    """``end_offset - committed`` (``None`` without a committed offset)."""
    member: str | None = None
    """``client_id`` of the member that holds the partition now."""


class GroupSummary(_View):
    """One line of ``groups list``."""

    name: str
    state: str
    """Kafka's group state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead."""
    members: int
    topics: list[str]
    lag: int
    """Sum of the partitions' lag (partitions without a committed offset count 0)."""


class GroupView(_View):
    """A consumer group in full: members and per-partition progress."""

    name: str
    state: str
    protocol: str
    """The partition assignor in use (``range``, ``roundrobin``...), empty when idle."""
    members: list[GroupMember]
    partitions: list[GroupPartition]
    lag: int


class OffsetChange(_View):
    """One partition of a group's offset reset."""

    topic: str
    partition: int
    current: int | None
    new: int


class RecordView(_View):
    """A record as ``backbone consume`` prints it (and the stdout sink writes it).

    ``key`` and ``value`` are JSON when the bytes are JSON, text when they are UTF-8,
    else ``{"base64": "..."}``; header values are text.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch (UTC)."""
    key: Any = None
    value: Any = None
    headers: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
    ) -> RecordView:
        """Build from a consumed record's parts (header values as bytes)."""
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=timestamp,
            key=decode_data(key),
            value=decode_data(value),
            headers={name: bytes(data or b"").decode("utf-8", "replace") for name, data in headers},
        )


def decode_data(data: bytes | None) -> Any:
    """JSON if ``data`` is JSON, text if UTF-8, else ``{"base64": ...}`` (``None`` stays)."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


class RecordPage(_View):
    """Records of a topic as the admin API browses them."""

    topic: str
    records: list[RecordView]
    """In the order asked for: oldest first from an offset or a time, newest first else."""


class ConnectorView(_View):
    """A connector as the admin API lists it (``GET /connectors``)."""

    name: str
    role: Literal["source", "sink", "processor"]
    kind: str
    """The connector type (``sql``, ``stdout``...); ``function`` or ``transforms`` for
    processors."""
    state: Literal["STARTING", "RUNNING", "BACKOFF", "PAUSED", "FAILED", "STOPPED", "UNASSIGNED"]
    """UNASSIGNED: a source of the gateway cluster that no process runs right now."""
    error: str | None = None
    """The error the connector is in now (``None`` when healthy)."""
    last_error: str | None = None
    """The most recent error, kept after recovery."""
    last_error_at: dt.datetime | None = None
    records_in: int
    """Sources: records read (or pushed); sinks and processors: records consumed."""
    records_out: int
    """Sources: records acknowledged by the broker; sinks: records written; processors:
    output records acknowledged. Dead-lettered records are not counted."""
    dead_lettered: int
    retries: int
    errors: int
    rate_in: float
    """Records in per second over the last minute."""
    rate_out: float
    last_record_at: dt.datetime | None = None
    """Newest record seen (a source: when it was read; else the record's timestamp)."""
    position: Any = None
    """A source's last saved position."""
    lag: int | None = None
    """Sinks and processors: records behind the end of their topics, summed over the
    partitions they hold now (``None`` while they hold none)."""
    topics: list[str]
    """What it reads (sinks, processors) or writes (a source's topic)."""
    outputs: list[str] = Field(default_factory=list)
    """Where a processor writes (``to`` and route targets)."""
    dead_letter_topic: str | None = None
    group: str | None = None
    """The consumer group of a sink or processor."""
    restarts: int = 0
    worker: str | None
    """``<hostname>:<pid>`` of the gateway process running it (in a gateway cluster a
    source may run in another process; ``None`` while no process runs it)."""


class ConnectorPartition(_View):
    """A sink's or processor's progress on one partition."""

    topic: str
    partition: int
    committed: int | None
    end_offset: int
    lag: int | None


class RateSample(_View):
    """Totals of a connector at one moment (one every 5 s, the last 10 minutes)."""

    at: dt.datetime
    records_in: int
    records_out: int


class ConnectorDetail(ConnectorView):
    """``GET /connectors/{name}``: the view plus per-partition lag and recent totals."""

    partitions: list[ConnectorPartition] = Field(default_factory=list)
    history: list[RateSample] = Field(default_factory=list)


class DeadLetterView(_View):
    """A dead-lettered record with the error that sent it there."""

    record: RecordView
    """The record on the dead-letter topic (headers include ``backbone.error.*``)."""
    connector: str | None
    error_class: str | None
    error_message: str | None
    attempts: int | None
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    redriven: bool
    """Already sent back by a redrive (a later failure is a new dead letter)."""


class RedriveResult(_View):
    """What a redrive did."""

    connector: str
    mode: Literal["sink", "processor", "republish"]
    """Sinks write through the sink, processors through the processor; a source's dead
    letters are re-published to its topic."""
    records: int
    """Dead letters of this connector that were redriven."""
    delivered: int
    failed_again: int
    """Records that failed again (they are on the dead-letter topic once more)."""
    errors: list[str] = Field(default_factory=list)
    """The distinct errors of the records that failed again."""
