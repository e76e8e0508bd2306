"""backbone.broker.log: the durable segment log (domain code: knows nothing of the codec).

Public API (see BROKER_API.md, "Log"): LogManager (topics, partitions, group commit,
retention, compaction), Topic, PartitionLog (append / read / watch / offset_for_timestamp /
delete_records), AppendResult, ReadResult, FileSlice, LogConfig, ConfigEntry.

Additions beyond the agreed interface (all optional keyword arguments or extra methods):
- LogManager(..., retention_check_interval_s=300.0, cleaner_interval_s=15.0,
  producer_id_expiration_ms=86_400_000); LogManager.reaper.held counts deleted segments
  whose file is still open because a reader holds it;
  LogManager.enforce_retention() and ``await LogManager.clean()`` run one retention /
  compaction pass now; LogManager.flusher.rounds / .fsync_calls count
  group-commit rounds and fsync calls; LogManager.topic_by_id(uuid).
- alter_configs(..., validate_only=False) and create_partitions(..., validate_only=False).
- PartitionLog.max_timestamp_offset() for ListOffsets timestamp -3 (MAX_TIMESTAMP).
- PartitionLog.size_bytes, PartitionLog.log_end_offset (= high_watermark),
  PartitionLog.roll(), PartitionLog.closed.
- Topic metadata lives in ``<data_dir>/topics/<topic id>.json`` (a 249-character topic name
  plus a suffix would exceed the 255-byte file name limit).
- Unknown producer ids are accepted at any sequence (Kafka's rule), so a producer whose state
  expired or was never seen is not refused.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the static view of the lazy names below
    from .config import IGNORED_CONFIGS, ConfigEntry, FlushPolicy, LogConfig
    from .manager import LogManager, Topic, validate_topic_name
    from .partition import AppendResult, PartitionLog, ReadResult
    from .segment import FileSlice

__all__ = [
    "IGNORED_CONFIGS",
    "AppendResult",
    "ConfigEntry",
    "FileSlice",
    "FlushPolicy",
    "LogConfig",
    "LogManager",
    "PartitionLog",
    "ReadResult",
    "Topic",
    "validate_topic_name",
]

_LAZY = {
    "IGNORED_CONFIGS": ".config",
    "ConfigEntry": ".config",
    "FlushPolicy": ".config",
    "LogConfig": ".config",
    "LogManager": ".manager",
    "Topic": ".manager",
    "validate_topic_name": ".manager",
    "AppendResult": ".partition",
    "PartitionLog": ".partition",
    "ReadResult": ".partition",
    "FileSlice": ".segment",
}


def __getattr__(name: str) -> Any:
    """The names above, each imported from its module on first use (so importing
    ``backbone.broker.log.config`` alone stays cheap)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
