"""The committed-offsets log earlier Backbone versions wrote: ``<data_dir>/__consumer_offsets/
offsets.log``, read once to migrate a data folder into the ``__consumer_offsets`` topic.

On-disk format: a sequence of frames, each::

    length  u32 big-endian   bytes of payload
    crc     u32 big-endian   CRC-32C of payload
    payload UTF-8 JSON object, one record

Records (``type`` field):

- ``offsets``       ``{"group", "offsets": [[topic, partition, offset, leader_epoch, metadata]]}``
- ``offset_delete`` ``{"group", "partitions": [[topic, partition]]}``
- ``group``         group metadata: ``generation``, ``protocol_type``, ``protocol_name``,
  ``leader``, ``members`` (``member_id``, ``group_instance_id``, ``client_id``,
  ``client_host``, ``session_timeout_ms``, ``rebalance_timeout_ms``, ``metadata``,
  ``assignment``; bytes as base64)
- ``group_delete``  ``{"group"}``: the group and its offsets are gone
- ``topic_delete``  ``{"topic"}``: every group's offsets for that topic are gone

Reading stops at the first frame that is short or fails its CRC or JSON decoding (a torn
tail was never acknowledged: acknowledgement waited for the fsync). :func:`replay` turns
the records into the live state (groups' metadata and committed offsets), which the
coordinator writes to the topic before renaming the file to ``offsets.log.migrated``.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c

from backbone.broker.groups.records import GroupMetadata, MemberMetadata, OffsetValue

__all__ = ["LEGACY_FILE", "LegacyState", "decode_frames", "encode_frame", "read_legacy"]

logger = logging.getLogger(__name__)

LEGACY_FILE = "offsets.log"

_HEADER = struct.Struct(">II")
_MAX_RECORD = 64 * 1024 * 1024

Record = dict[str, Any]


def encode_frame(record: Record) -> bytes:
    """One framed record (length, CRC-32C, JSON payload); tests write old files with it."""
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return _HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[Record], int]:
    """Every valid record from the start of ``data`` and where the valid prefix ends."""
    records: list[Record] = []
    pos = 0
    view = memoryview(data)
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data):
            break
        payload = view[pos + _HEADER.size : end]
        if crc32c.crc32c(payload) != crc:
            break
        try:
            record = json.loads(bytes(payload))
        except ValueError:
            break
        if not isinstance(record, dict) or "type" not in record:
            break
        records.append(record)
        pos = end
    return records, pos


@dataclass
class LegacyState:
    """What an old offsets log held: group metadata and committed offsets, by group."""

    groups: dict[str, GroupMetadata | None] = field(default_factory=dict)
    offsets: dict[str, dict[tuple[str, int], OffsetValue]] = field(default_factory=dict)


def _metadata(record: Record) -> GroupMetadata:
    return GroupMetadata(
        protocol_type=record["protocol_type"] or "",
        generation=record["generation"],
        protocol=record["protocol_name"],
        leader=record["leader"],
        current_state_timestamp=-1,
        members=tuple(
            MemberMetadata(
                member_id=m["member_id"],
                group_instance_id=m["group_instance_id"],
                client_id=m["client_id"],
                client_host=m["client_host"],
                rebalance_timeout_ms=m["rebalance_timeout_ms"],
                session_timeout_ms=m["session_timeout_ms"],
                subscription=base64.b64decode(m["metadata"]),
                assignment=base64.b64decode(m["assignment"]),
            )
            for m in record["members"]
        ),
    )


def replay(records: Iterable[Record]) -> LegacyState:
    """The live state after ``records`` (the old coordinator's replay rules)."""
    state = LegacyState()
    for record in records:
        kind = record["type"]
        if kind == "topic_delete":
            for offsets in state.offsets.values():
                for key in [k for k in offsets if k[0] == record["topic"]]:
                    del offsets[key]
            continue
        group_id = record["group"]
        if kind == "group_delete":
            state.groups.pop(group_id, None)
            state.offsets.pop(group_id, None)
        elif kind == "offsets":
            offsets = state.offsets.setdefault(group_id, {})
            for topic, partition, offset, epoch, metadata in record["offsets"]:
                offsets[(topic, partition)] = OffsetValue(offset, epoch, metadata, -1)
        elif kind == "offset_delete":
            for topic, partition in record["partitions"]:
                state.offsets.get(group_id, {}).pop((topic, partition), None)
        elif kind == "group":
            state.groups[group_id] = _metadata(record)
        else:
            logger.warning("Skipping an offsets log record of unknown type %r", kind)
    return state


def read_legacy(directory: Path) -> LegacyState | None:
    """The state of ``directory/offsets.log``; None when there is no such file."""
    path = directory / LEGACY_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    records, valid = decode_frames(data)
    if valid < len(data):
        logger.warning(
            "Offsets log %s has %d bytes of corrupt or torn tail after byte %d; ignoring"
            " them (those records were never acknowledged)",
            path,
            len(data) - valid,
            valid,
        )
    return replay(records)
