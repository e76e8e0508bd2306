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
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "GroupMember",
    "GroupPartition",
    "GroupSummary",
    "GroupView",
    "OffsetChange",
    "PartitionView",
    "RecordView",
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
