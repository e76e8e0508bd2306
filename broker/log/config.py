"""Per-topic log configuration (Kafka topic config names and defaults).

``LogConfig.from_configs(overrides, base=broker_defaults)`` parses Kafka-named string
configs (as CreateTopics / AlterConfigs carry them) on top of the broker defaults and raises
InvalidConfig naming the config, the value and what is accepted. ``describe()`` lists every
supported config with its value and whether it is a default (no topic override).

A few configs Kafka clients commonly send are accepted for compatibility but have no effect
on a single-node broker (``min.insync.replicas``, ``unclean.leader.election.enable``, ...);
they are listed in ``IGNORED_CONFIGS`` and still shown by ``describe()`` when set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backbone.broker.errors import InvalidConfig

__all__ = ["IGNORED_CONFIGS", "ConfigEntry", "FlushPolicy", "LogConfig"]

FlushPolicy = Literal["always", "interval", "os"]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


@dataclass(slots=True, frozen=True)
class ConfigEntry:
    """One row of DescribeConfigs for a topic."""

    name: str
    value: str | None
    is_default: bool
    read_only: bool = False
    is_sensitive: bool = False


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidConfig(
                f"Invalid value {value!r} for configuration {name}: expected an integer"
            ) from None
        if not low <= number <= high:
            raise InvalidConfig(
                f"Invalid value {number} for configuration {name}: must be between {low} and {high}"
            )
        return number

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        if value.strip() not in allowed:
            raise InvalidConfig(
                f"Invalid value {value!r} for configuration {name}: "
                f"expected one of {', '.join(allowed)}"
            )
        return value.strip()

    return parse


def _cleanup_policy(name: str, value: str) -> str:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if (
        not parts
        or any(p not in ("delete", "compact") for p in parts)
        or len(set(parts)) != len(parts)
    ):
        raise InvalidConfig(
            f"Invalid value {value!r} for configuration {name}: expected delete, compact or "
            "compact,delete"
        )
    return ",".join(parts)


def _ratio(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidConfig(
            f"Invalid value {value!r} for configuration {name}: expected a number"
        ) from None
    if not 0.0 <= number <= 1.0:
        raise InvalidConfig(
            f"Invalid value {number} for configuration {name}: must be between 0 and 1"
        )
    return number


def _any(name: str, value: str) -> str:
    return value


# Kafka name -> (LogConfig field, parser)
_CONFIGS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "cleanup.policy": ("cleanup_policy", _cleanup_policy),
    "delete.retention.ms": ("delete_retention_ms", _int(0, _INT64_MAX)),
    "index.interval.bytes": ("index_interval_bytes", _int(0, _INT32_MAX)),
    "max.message.bytes": ("max_message_bytes", _int(0, _INT32_MAX)),
    "message.timestamp.after.max.ms": ("message_timestamp_after_max_ms", _int(0, _INT64_MAX)),
    "message.timestamp.before.max.ms": ("message_timestamp_before_max_ms", _int(0, _INT64_MAX)),
    "message.timestamp.type": ("message_timestamp_type", _choice("CreateTime", "LogAppendTime")),
    "min.cleanable.dirty.ratio": ("min_cleanable_dirty_ratio", _ratio),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", _int(0, _INT64_MAX)),
    "retention.bytes": ("retention_bytes", _int(-1, _INT64_MAX)),
    "retention.ms": ("retention_ms", _int(-1, _INT64_MAX)),
    "segment.bytes": ("segment_bytes", _int(14, _INT32_MAX)),
    "segment.ms": ("segment_ms", _int(1, _INT64_MAX)),
}

# Accepted for client compatibility, no effect on a single node (value kept and described).
IGNORED_CONFIGS: dict[str, Callable[[str, str], Any]] = {
    "compression.type": _choice("producer"),
    "file.delete.delay.ms": _int(0, _INT64_MAX),
    "flush.messages": _int(1, _INT64_MAX),
    "flush.ms": _int(0, _INT64_MAX),
    "max.compaction.lag.ms": _int(1, _INT64_MAX),
    "message.timestamp.difference.max.ms": _int(0, _INT64_MAX),
    "min.insync.replicas": _int(1, _INT32_MAX),
    "preallocate": _choice("true", "false"),
    "segment.index.bytes": _int(4, _INT32_MAX),
    "segment.jitter.ms": _int(0, _INT64_MAX),
    "unclean.leader.election.enable": _choice("true", "false"),
    "message.downconversion.enable": _choice("true", "false"),
    "leader.replication.throttled.replicas": _any,
    "follower.replication.throttled.replicas": _any,
}


@dataclass(slots=True, frozen=True)
class LogConfig:
    """Configuration of one topic's logs (defaults = Kafka's)."""

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    cleanup_policy: str = "delete"
    message_timestamp_type: str = "CreateTime"
    # CreateTime records must lie within [now - before, now + after] (Kafka 3.6+ names,
    # Kafka 3.9's defaults: no limit)
    message_timestamp_before_max_ms: int = _INT64_MAX
    message_timestamp_after_max_ms: int = _INT64_MAX
    max_message_bytes: int = 1048588
    delete_retention_ms: int = 24 * 3600 * 1000
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5
    index_interval_bytes: int = 4096
    overrides: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Derived once (read per produced batch): cleanup.policy has compact / delete,
    # message.timestamp.type is LogAppendTime.
    compact: bool = field(init=False, repr=False, compare=False)
    delete: bool = field(init=False, repr=False, compare=False)
    log_append_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policies = self.cleanup_policy.split(",")
        object.__setattr__(self, "compact", "compact" in policies)
        object.__setattr__(self, "delete", "delete" in policies)
        object.__setattr__(self, "log_append_time", self.message_timestamp_type == "LogAppendTime")

    @classmethod
    def from_configs(
        cls, configs: Mapping[str, str | None], base: LogConfig | None = None
    ) -> LogConfig:
        """Parse topic overrides (Kafka names) on top of ``base`` (the broker defaults).

        The result remembers ``configs`` as its overrides. Raises InvalidConfig.
        """
        base = base if base is not None else cls()
        changes: dict[str, Any] = {}
        overrides: dict[str, str] = {}
        for name, value in configs.items():
            if value is None:
                raise InvalidConfig(f"Configuration {name} needs a value (got null)")
            if name in _CONFIGS:
                attr, parse = _CONFIGS[name]
                changes[attr] = parse(name, str(value))
            elif name in IGNORED_CONFIGS:
                IGNORED_CONFIGS[name](name, str(value))
            else:
                raise InvalidConfig(f"Unknown topic configuration {name!r}")
            overrides[name] = str(value).strip()
        return replace(base, **changes, overrides=overrides)

    def value_of(self, name: str) -> str:
        """The string value of a supported Kafka config name."""
        attr, _ = _CONFIGS[name]
        value = getattr(self, attr)
        return str(value)

    def describe(self) -> list[ConfigEntry]:
        """Every supported config (and any ignored-but-set one), sorted by name."""
        entries = [
            ConfigEntry(name, self.value_of(name), name not in self.overrides) for name in _CONFIGS
        ]
        entries += [
            ConfigEntry(name, value, False)
            for name, value in self.overrides.items()
            if name in IGNORED_CONFIGS
        ]
        return sorted(entries, key=lambda e: e.name)

    @staticmethod
    def names() -> list[str]:
        """Kafka names of the configs that have an effect."""
        return sorted(_CONFIGS)
