"""The broker's settings: :class:`BrokerConfig`, the flush policy and ``host:port`` parsing.

A leaf of the broker: it imports only the topic config defaults
(``backbone.broker.log.config``, itself a leaf), the connection limits
(``backbone.broker.limits``, plain counters) and the standard library, so
the gateway (``backbone.config``) can validate listener addresses with
:func:`parse_host_port` without loading the server, the codec or the log.

``host:port`` is parsed once, here, for every address the project reads:
``--listen``/``--advertised-listener`` of ``python -m backbone.broker`` and
``backbone broker``, and ``broker.embedded.listen``, ``broker.bootstrap`` and
``http.listen`` of a gateway config file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from .limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_QUEUED_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_READ_TIMEOUT_S,
    ConnectionLimits,
    frame_limit_for,
)
from .log.config import FlushPolicy, LogConfig

__all__ = [
    "FLUSH_POLICIES",
    "BrokerConfig",
    "FlushPolicy",
    "format_host_port",
    "parse_host_port",
]

FLUSH_POLICIES: tuple[FlushPolicy, ...] = get_args(FlushPolicy)
"""The values of :data:`FlushPolicy`, in the order the CLI lists them."""

_HOST = re.compile(r"^[A-Za-z0-9._:%-]+$")


def parse_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; raises ValueError naming the value.

    The port is the part after the last colon (0-65535; 0 = any free port when
    listening). An IPv6 host is written in brackets, ``[::1]:9092``, and comes
    back without them. The host may not be empty: listen on ``0.0.0.0`` (or
    ``[::]``) to accept connections on every interface.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9092 (got {value!r})")
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not _HOST.match(host) or not port.isdecimal():
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9092 (got {value!r})")
    number = int(port)
    if number > 65535:
        raise ValueError(f"port {number} of {value!r} is outside 0-65535")
    return host, number


def format_host_port(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port` (brackets around an IPv6 host)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class BrokerConfig:
    """Settings of one broker; every field has a default except ``data_dir``.

    ``port=0`` binds any free port (read it back from ``Broker.port``).
    ``advertised_host``/``advertised_port`` are what Metadata tells clients
    (None = the listen address; set them when clients reach the broker through
    another address, e.g. a container port mapping). ``log_defaults`` are the
    topic config defaults (``LogConfig``), overridable per topic. ``flush``:
    ``always`` answers acks=all after fsync (group commit), ``interval`` fsyncs
    every ``flush_interval_ms``, ``os`` leaves it to the page cache.
    ``offsets_topic_num_partitions`` (Kafka's ``offsets.topic.num.partitions``) is used
    when ``__consumer_offsets`` is created; an existing topic keeps its count.

    Connection limits (see ``limits.ConnectionLimits``; Kafka's names in brackets):
    ``max_frame_bytes`` is the largest request (``socket.request.max.bytes``; None =
    16 x the broker's ``message.max.bytes`` + 64 KiB, see :attr:`frame_limit`);
    ``idle_timeout_s`` (``connections.max.idle.ms``); ``request_read_timeout_s``, the time
    a request may take to arrive whole; ``max_connections``, ``max_connections_per_ip``;
    ``queued_max_request_bytes``, the request bytes read or queued across connections.
    Raises ValueError for a value out of range.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None
    node_id: int = 0
    cluster_id: str | None = None
    max_frame_bytes: int | None = None
    idle_timeout_s: float = 600.0
    request_read_timeout_s: float = DEFAULT_REQUEST_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    queued_max_request_bytes: int = DEFAULT_QUEUED_MAX_REQUEST_BYTES
    shutdown_grace_s: float = 5.0
    auto_create_topics: bool = True
    default_partitions: int = 1
    flush: FlushPolicy = "always"
    flush_interval_ms: int = 1000
    log_defaults: LogConfig | None = None
    group_initial_rebalance_delay_ms: int = 100
    group_min_session_timeout_ms: int = 1000
    group_max_session_timeout_ms: int = 1_800_000
    offsets_topic_num_partitions: int = 1

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.flush not in FLUSH_POLICIES:
            raise ValueError(f"flush must be 'always', 'interval' or 'os' (got {self.flush!r})")
        if self.max_frame_bytes is not None and self.max_frame_bytes < 1024:
            raise ValueError(f"max_frame_bytes must be at least 1024 (got {self.max_frame_bytes})")
        if self.default_partitions < 1:
            raise ValueError(
                f"default_partitions must be at least 1 (got {self.default_partitions})"
            )
        if self.flush_interval_ms < 1:
            raise ValueError(f"flush_interval_ms must be at least 1 (got {self.flush_interval_ms})")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive (got {self.idle_timeout_s})")
        if self.node_id < 0:
            raise ValueError(f"node_id must be 0 or more (got {self.node_id})")
        if self.offsets_topic_num_partitions < 1:
            raise ValueError(
                "offsets_topic_num_partitions must be at least 1 "
                f"(got {self.offsets_topic_num_partitions})"
            )
        _ = self.limits  # checks the connection limits together

    @property
    def frame_limit(self) -> int:
        """The largest request accepted: ``max_frame_bytes``, or by default 16 x the
        broker's ``message.max.bytes`` (``log_defaults``) + 64 KiB."""
        if self.max_frame_bytes is not None:
            return self.max_frame_bytes
        defaults = self.log_defaults if self.log_defaults is not None else LogConfig()
        return frame_limit_for(defaults.max_message_bytes)

    @property
    def limits(self) -> ConnectionLimits:
        """The server's connection limits; raises ValueError naming a value out of range."""
        return ConnectionLimits(
            max_frame_bytes=self.frame_limit,
            idle_timeout_s=self.idle_timeout_s,
            request_read_timeout_s=self.request_read_timeout_s,
            max_connections=self.max_connections,
            max_connections_per_ip=self.max_connections_per_ip,
            queued_max_request_bytes=self.queued_max_request_bytes,
        )

    @classmethod
    def from_listeners(
        cls,
        listen: str,
        data_dir: Path | str,
        advertised_listener: str | None = None,
        **options: Any,
    ) -> BrokerConfig:
        """A config from ``host:port`` strings (the CLI's and the gateway's form).

        ``options`` are further fields (``flush="interval"``...). Raises ValueError.
        """
        host, port = parse_host_port(listen)
        if advertised_listener is not None:
            options["advertised_host"], options["advertised_port"] = parse_host_port(
                advertised_listener
            )
        return cls(data_dir=Path(data_dir), host=host, port=port, **options)
