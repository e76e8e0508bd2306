"""What every handler module shares: the request context, the ``Handler`` record, error helpers.

A handler is ``async def handle(ctx: RequestContext, request) -> response | None``:
the dispatcher (``handlers.dispatch``) decodes the request, calls the handler
and encodes what it returns (None = no response, Produce with acks=0). Domain
errors (``backbone.broker.errors``) map to error codes through ``exc.code``;
handlers catch them per topic/partition where the response has room for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import BrokerConfig
from ..connection import Connection
from ..errors import BrokerError
from ..groups.coordinator import GroupCoordinator
from ..log.manager import LogManager
from ..protocol import RequestHeader

__all__ = [
    "BrokerState",
    "Handler",
    "HandlerFunc",
    "RequestContext",
    "error_code",
    "error_message",
    "handlers",
]


@dataclass(slots=True)
class BrokerState:
    """The broker-wide objects handlers work on; built once by ``Broker``.

    ``registry`` is the merged handler table (ApiVersions is computed from it);
    ``stopping`` is set when the broker shuts down (long polls answer at once);
    ``bound_port`` is the port actually listened on (``config.port`` may be 0).
    """

    config: BrokerConfig
    logs: LogManager
    groups: GroupCoordinator | None
    registry: Mapping[int, Handler] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    bound_port: int = 0

    @property
    def advertised_host(self) -> str:
        """The host Metadata and DescribeCluster tell clients to connect to."""
        return self.config.advertised_host or self.config.host

    @property
    def advertised_port(self) -> int:
        """The port told to clients: the advertised one, else the bound one."""
        return self.config.advertised_port or self.bound_port or self.config.port


@dataclass(slots=True)
class RequestContext:
    """One request as a handler sees it: the header, the connection and the broker state."""

    state: BrokerState
    header: RequestHeader
    connection: Connection

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def client_id(self) -> str:
        return self.header.client_id or ""

    @property
    def peer(self) -> str:
        """``host:port`` of the client."""
        return self.connection.peer

    @property
    def client_host(self) -> str:
        """The client's address without the port (Kafka's ``client.host``)."""
        return "/" + self.connection.peer.rsplit(":", 1)[0]

    @property
    def logs(self) -> LogManager:
        return self.state.logs

    @property
    def groups(self) -> GroupCoordinator:
        if self.state.groups is None:
            raise RuntimeError("this broker runs without a group coordinator")
        return self.state.groups

    @property
    def config(self) -> BrokerConfig:
        return self.state.config

    def now_ms(self) -> int:
        return int(self.state.clock() * 1000)


HandlerFunc = Callable[[RequestContext, Any], Awaitable[Any | None]]


@dataclass(frozen=True, slots=True)
class Handler:
    """One API served by the broker: versions ``min_version..max_version`` are advertised."""

    api_key: int
    min_version: int
    max_version: int
    func: HandlerFunc


def handlers(*entries: Handler) -> dict[int, Handler]:
    """A module's ``HANDLERS`` table from its entries (one per api key)."""
    table: dict[int, Handler] = {}
    for entry in entries:
        if entry.api_key in table:
            raise ValueError(f"api key {entry.api_key} registered twice")
        table[entry.api_key] = entry
    return table


def error_code(exc: BaseException) -> int:
    """The Kafka error code for an exception (UNKNOWN_SERVER_ERROR for non-domain errors)."""
    return exc.code if isinstance(exc, BrokerError) else -1


def error_message(exc: BaseException) -> str:
    """The message sent in ``error_message`` fields: the exception's text or its doc line."""
    text = str(exc)
    if text:
        return text
    doc = type(exc).__doc__ or type(exc).__name__
    return doc.strip().splitlines()[0]
