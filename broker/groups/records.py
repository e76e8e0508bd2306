"""The records of ``__consumer_offsets``, in Kafka's format (pure bytes, no I/O).

Kafka's group coordinator writes two kinds of records to the compacted topic
``__consumer_offsets``; lag tools (Burrow, Kafka's ``kafka-consumer-groups`` and
``ConsumerGroupCommand``, kafka-console-consumer's ``OffsetsMessageFormatter``) read them.
The definitions are the ``OffsetCommitKey``/``OffsetCommitValue`` and
``GroupMetadataKey``/``GroupMetadataValue`` messages of Kafka's group-coordinator module;
each key and value starts with an int16 version, then the fields (big endian; a string
is an int16 length + UTF-8, -1 = null; bytes an int32 length + bytes)::

    key version 0 or 1: OffsetCommitKey     group string, topic string, partition int32
    key version 2:      GroupMetadataKey    group string

    OffsetCommitValue v3 (written; v0-v3 read):
        offset int64, leaderEpoch int32 (v3+), metadata string,
        commitTimestamp int64, expireTimestamp int64 (v1 only)
    GroupMetadataValue v3 (written; v0-v3 read):
        protocolType string, generation int32, protocol nullable string,
        leader nullable string, currentStateTimestamp int64 (v2+),
        members [memberId string, groupInstanceId nullable string (v3+),
                 clientId string, clientHost string, rebalanceTimeout int32 (v1+),
                 sessionTimeout int32, subscription bytes, assignment bytes]

A null value (tombstone) deletes the key: a committed offset, or the group's metadata.
Keys written are version 1 (offsets) and 2 (groups) as Kafka 3.x writes them. A group's
records go to partition ``partition_for(group_id, n)`` (Kafka's: the Java
``String.hashCode`` of the group id, made non-negative, modulo the partition count).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "GroupKey",
    "GroupMetadata",
    "MemberMetadata",
    "OffsetKey",
    "OffsetValue",
    "RecordFormatError",
    "decode_group_metadata",
    "decode_key",
    "decode_offset_value",
    "encode_group_metadata",
    "encode_key",
    "encode_offset_value",
    "partition_for",
]

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3

_H = struct.Struct(">h")
_I = struct.Struct(">i")
_Q = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A key or value of ``__consumer_offsets`` that does not parse."""


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberMetadata, ...]


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's partition of a group in ``__consumer_offsets`` (``Utils.abs(hashCode) % n``
    with Java's ``String.hashCode`` over UTF-16 code units)."""
    h = 0
    data = group_id.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------- writing


def _string(value: str | None) -> bytes:
    if value is None:
        return _H.pack(-1)
    raw = value.encode()
    return _H.pack(len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return _I.pack(len(value)) + value


def encode_key(key: OffsetKey | GroupKey) -> bytes:
    if isinstance(key, OffsetKey):
        return (
            _H.pack(OFFSET_KEY_VERSION)
            + _string(key.group)
            + _string(key.topic)
            + _I.pack(key.partition)
        )
    return _H.pack(GROUP_KEY_VERSION) + _string(key.group)


def encode_offset_value(value: OffsetValue) -> bytes:
    return (
        _H.pack(OFFSET_VALUE_VERSION)
        + _Q.pack(value.offset)
        + _I.pack(value.leader_epoch)
        + _string(value.metadata)
        + _Q.pack(value.commit_timestamp)
    )


def encode_group_metadata(value: GroupMetadata) -> bytes:
    out = [
        _H.pack(GROUP_VALUE_VERSION),
        _string(value.protocol_type),
        _I.pack(value.generation),
        _string(value.protocol),
        _string(value.leader),
        _Q.pack(value.current_state_timestamp),
        _I.pack(len(value.members)),
    ]
    for m in value.members:
        out += [
            _string(m.member_id),
            _string(m.group_instance_id),
            _string(m.client_id),
            _string(m.client_host),
            _I.pack(m.rebalance_timeout_ms),
            _I.pack(m.session_timeout_ms),
            _bytes(m.subscription),
            _bytes(m.assignment),
        ]
    return b"".join(out)


# ---------------------------------------------------------------- reading


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fixed(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error as exc:
            raise RecordFormatError(f"truncated at byte {self.pos}") from exc
        self.pos += fmt.size
        return int(value)

    def string(self, nullable: bool = False) -> str | None:
        length = self.fixed(_H)
        if length < 0:
            if nullable:
                return None
            raise RecordFormatError(f"null string at byte {self.pos - 2}")
        return self._take(length).decode()

    def required_string(self) -> str:
        value = self.string()
        assert value is not None
        return value

    def blob(self) -> bytes:
        length = self.fixed(_I)
        return self._take(max(length, 0))

    def _take(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise RecordFormatError(f"a field of {length} bytes runs past the end")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value


def decode_key(data: bytes) -> OffsetKey | GroupKey | None:
    """The key of a record (None for key versions this broker does not know, such as the
    KIP-848 group records, which it skips)."""
    reader = _Reader(data)
    version = reader.fixed(_H)
    if version in (0, 1):
        return OffsetKey(reader.required_string(), reader.required_string(), reader.fixed(_I))
    if version == 2:
        return GroupKey(reader.required_string())
    return None


def decode_offset_value(data: bytes) -> OffsetValue:
    reader = _Reader(data)
    version = reader.fixed(_H)
    if not 0 <= version <= 3:
        raise RecordFormatError(f"OffsetCommitValue version {version} is not known")
    offset = reader.fixed(_Q)
    leader_epoch = reader.fixed(_I) if version >= 3 else -1
    metadata = reader.required_string()
    commit_timestamp = reader.fixed(_Q)
    return OffsetValue(offset, leader_epoch, metadata, commit_timestamp)


def decode_group_metadata(data: bytes) -> GroupMetadata:
    reader = _Reader(data)
    version = reader.fixed(_H)
    if not 0 <= version <= 3:
        raise RecordFormatError(f"GroupMetadataValue version {version} is not known")
    protocol_type = reader.required_string()
    generation = reader.fixed(_I)
    protocol = reader.string(nullable=True)
    leader = reader.string(nullable=True)
    timestamp = reader.fixed(_Q) if version >= 2 else -1
    members = []
    for _ in range(reader.fixed(_I)):
        member_id = reader.required_string()
        instance_id = reader.string(nullable=True) if version >= 3 else None
        client_id = reader.required_string()
        client_host = reader.required_string()
        rebalance_timeout = reader.fixed(_I) if version >= 1 else -1
        session_timeout = reader.fixed(_I)
        if rebalance_timeout < 0:
            rebalance_timeout = session_timeout
        members.append(
            MemberMetadata(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                reader.blob(),
                reader.blob(),
            )
        )
    return GroupMetadata(protocol_type, generation, protocol, leader, timestamp, tuple(members))
