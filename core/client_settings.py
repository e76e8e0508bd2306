"""``broker.producer:`` and ``broker.consumer:``: aiokafka settings the gateway's clients get.

Each key is an aiokafka keyword argument (``AIOKafkaProducer`` /
``AIOKafkaConsumer``), passed as written over Backbone's defaults. Only settings that
tune throughput, latency and timeouts are offered: the ones that carry a delivery
guarantee or that the runtime derives from other settings stay the runtime's
(``acks`` is always ``all``, idempotence is ``broker.idempotence``, commits are
manual, the group, offsets reset, session timeout and poll size come from each
sink's ``start`` and ``runtime:``). An unknown key is an error with a "did you mean".

Backbone's producer defaults differ from aiokafka's for throughput: ``linger_ms: 5``
and ``max_batch_size: 512KiB`` (aiokafka sends one batch per partition per request,
so its 16 KiB default caps a busy source).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from backbone.types import ByteSize

__all__ = ["ConsumerSettings", "ProducerSettings"]

_Ms = Annotated[int, Field(ge=0)]
_PositiveMs = Annotated[int, Field(ge=1)]
_Bytes = Annotated[ByteSize, Field(ge=1)]


class _ClientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    def kafka_args(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka: every setting that is not ``None``."""
        return self.model_dump(exclude_none=True)


_CLIENT = "the runtime sets it for every client"


class ProducerSettings(_ClientSettings):
    """aiokafka ``AIOKafkaProducer`` settings of the gateway's producer (sources,
    processors' outputs, dead letters, positions)."""

    #: keys left out on purpose, and why (config errors say so)
    OWNED_KEYS: ClassVar[dict[str, str]] = {
        "acks": "the gateway always produces with acks=all (nothing is lost once acknowledged)",
        "enable_idempotence": "use broker.idempotence",
        "transactional_id": "the gateway does not use transactions",
        "bootstrap_servers": "use broker.bootstrap",
        "client_id": _CLIENT,
    }

    linger_ms: _Ms = 5
    """How long a record may wait for others to fill its batch (ms). Higher = bigger
    requests, fewer of them; 0 = send as soon as the producer is idle."""
    max_batch_size: _Bytes = 512 * 1024
    """Largest batch per partition, e.g. ``1MiB``; keep it under the broker's
    ``message.max.bytes``."""
    max_request_size: _Bytes | None = None
    """Largest produce request (aiokafka: 1 MiB)."""
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    """Compress batches (aiokafka: none). The embedded broker stores them as sent."""
    request_timeout_ms: _PositiveMs | None = None
    """How long to wait for the broker's answer (aiokafka: 40000)."""
    retry_backoff_ms: _Ms | None = None
    """Wait before retrying a failed request (aiokafka: 100)."""
    metadata_max_age_ms: _PositiveMs | None = None
    """Refresh topic metadata at least this often (aiokafka: 300000)."""
    connections_max_idle_ms: _PositiveMs | None = None
    """Close idle connections after this long (aiokafka: 540000)."""


class ConsumerSettings(_ClientSettings):
    """aiokafka ``AIOKafkaConsumer`` settings of every sink's and processor's consumer."""

    #: keys left out on purpose, and why (config errors say so)
    OWNED_KEYS: ClassVar[dict[str, str]] = {
        "enable_auto_commit": "sinks commit only what they wrote (at-least-once)",
        "group_id": "each sink and processor is the group backbone.<name>",
        "group_instance_id": _CLIENT,
        "auto_offset_reset": "use the sink's or processor's start",
        "session_timeout_ms": "use runtime.session_timeout",
        "rebalance_timeout_ms": "use runtime.session_timeout",
        "heartbeat_interval_ms": "use runtime.heartbeat_interval",
        "max_poll_records": "use runtime.max_batch",
        "bootstrap_servers": "use broker.bootstrap",
        "client_id": _CLIENT,
    }

    fetch_max_wait_ms: _Ms | None = None
    """Longest time the broker holds a fetch waiting for ``fetch_min_bytes``
    (aiokafka: 500)."""
    fetch_min_bytes: _Bytes | None = None
    """Bytes a fetch waits for before it is answered (aiokafka: 1)."""
    fetch_max_bytes: _Bytes | None = None
    """Largest fetch answer (aiokafka: 50 MiB)."""
    max_partition_fetch_bytes: _Bytes | None = None
    """Largest part of a fetch answer per partition (aiokafka: 1 MiB)."""
    request_timeout_ms: _PositiveMs | None = None
    """How long to wait for the broker's answer (aiokafka: 40000)."""
    retry_backoff_ms: _Ms | None = None
    """Wait before retrying a failed request (aiokafka: 100)."""
    check_crcs: bool | None = None
    """Check the CRC of fetched batches (aiokafka: true)."""
    max_poll_interval_ms: _PositiveMs | None = None
    """Longest time between two polls before the consumer leaves its group
    (aiokafka: 300000); raise it for sinks whose writes can take longer."""
    metadata_max_age_ms: _PositiveMs | None = None
    """Refresh topic metadata at least this often (aiokafka: 300000)."""
    connections_max_idle_ms: _PositiveMs | None = None
    """Close idle connections after this long (aiokafka: 540000)."""
    isolation_level: Literal["read_uncommitted", "read_committed"] | None = None
    """``read_committed`` skips records of aborted transactions (aiokafka:
    ``read_uncommitted``)."""
