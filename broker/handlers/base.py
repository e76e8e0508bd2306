"""What every handler module shares: the request context, the ``Handler`` record, error helpers.

A handler is ``async def handle(ctx: RequestContext, request: FooRequest) -> FooResponse``
(or ``None`` when no response is due: Produce with acks=0). Each module lists its
handlers as ``HANDLERS = (Handler(FooRequest, FooResponse, handle_foo, 0, 3), ...)``:
the request and response classes of the generated codec name the API (its key comes
from them) and type the function, and the versions are the range advertised by
ApiVersions. The dispatcher (``handlers.dispatch``) decodes the request with
``Handler.request``, calls the handler and encodes what it returns. Domain errors
(``backbone.broker.errors``) map to error codes through ``exc.code``; handlers catch
them per topic/partition where the response has room for them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..config import BrokerConfig
from ..connection import Connection, WatchableEvent
from ..errors import BrokerError
from ..groups.coordinator import GroupCoordinator
from ..log.manager import LogManager
from ..protocol import API_NAMES, Message, RequestHeader
from ..security import ANONYMOUS, AclOperation, ResourceType, SaslSession, Security
from ..security.acls import CLUSTER_NAME
from ..security.errors import (
    ClusterAuthorizationFailed,
    GroupAuthorizationFailed,
    TopicAuthorizationFailed,
)

__all__ = [
    "BrokerState",
    "Handler",
    "LegacyRefusal",
    "RequestContext",
    "error_code",
    "error_message",
]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

LegacyRefusal = Callable[[memoryview, int, Connection], bytes]
"""Answers a version older than the codec reads: (request body, version, connection) ->
the response body written by hand. Raises CodecError for a malformed body and
CloseConnection when no answer can be given."""


@dataclass(slots=True)
class BrokerState:
    """The broker-wide objects handlers work on; built once by ``Broker``.

    ``registry`` is the merged handler table (ApiVersions is computed from it);
    ``stopping`` is set when the broker shuts down (long polls answer at once);
    ``bound_port`` is the port actually listened on (``config.port`` may be 0);
    ``cluster_id`` the one stored in the data folder (or configured);
    ``listener_ports`` the bound port of each listener; ``security`` the users, ACLs
    and SASL (None in handler tests that build a state by hand: everything allowed).
    """

    config: BrokerConfig
    logs: LogManager
    groups: GroupCoordinator | None
    registry: Mapping[int, Handler[Any, Any]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    stopping: WatchableEvent = field(default_factory=WatchableEvent)
    bound_port: int = 0
    cluster_id: str = ""
    security: Security | None = None
    listener_ports: dict[str, int] = field(default_factory=dict)

    def advertised_address(self, listener_name: str) -> tuple[str, int]:
        """(host, port) told to the clients of a listener (the first one when unknown)."""
        for listener in self.config.listeners:
            if listener.name == listener_name:
                host = listener.advertised_host or listener.host
                port = listener.advertised_port or self.listener_ports.get(listener.name)
                return host, port or listener.port
        return self.advertised_host, self.advertised_port

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
        return "/" + self.connection.host

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

    @property
    def advertised_address(self) -> tuple[str, int]:
        """(host, port) of this broker on the listener the request came through."""
        return self.state.advertised_address(self.connection.listener)

    @property
    def session(self) -> SaslSession | None:
        """The connection's SASL session (None while security is off)."""
        session: SaslSession | None = self.connection.attributes.get("sasl")
        return session

    @property
    def principal(self) -> str:
        """``User:<name>`` of the connection (``User:ANONYMOUS`` when it did not
        authenticate)."""
        session = self.session
        return session.principal if session is not None else ANONYMOUS

    def authorized(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        """Whether the ACLs let this connection do ``operation`` on the resource (always
        True when the broker enforces no ACLs)."""
        security = self.state.security
        if security is None or security.authorizer is None:
            return True
        return security.authorizer.authorize(
            self.principal, self.connection.host, operation, resource_type, name
        )

    def require(self, operation: AclOperation, resource_type: ResourceType, name: str) -> None:
        """Raise TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED unless :meth:`authorized`."""
        if self.authorized(operation, resource_type, name):
            return
        error = _DENIED.get(resource_type, ClusterAuthorizationFailed)
        kind = resource_type.name.lower()
        raise error(f"{self.principal} may not {operation.name} {kind} {name!r}")

    def operations(
        self, resource_type: ResourceType, name: str, candidates: Iterable[AclOperation]
    ) -> int:
        """The ``authorized_operations`` bit field of a resource for this connection."""
        bits = 0
        for operation in candidates:
            if self.authorized(operation, resource_type, name):
                bits |= 1 << operation
        return bits

    def require_create_topic(self, name: str) -> None:
        """CREATE on the cluster, or else on the topic (TOPIC_AUTHORIZATION_FAILED)."""
        if not self.authorized(AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME):
            self.require(AclOperation.CREATE, ResourceType.TOPIC, name)


_DENIED: dict[ResourceType, type[BrokerError]] = {
    ResourceType.TOPIC: TopicAuthorizationFailed,
    ResourceType.GROUP: GroupAuthorizationFailed,
    ResourceType.CLUSTER: ClusterAuthorizationFailed,
}


@dataclass(frozen=True)
class Handler(Generic[Req, Resp]):
    """One API served by the broker: its request and response classes (which carry the
    API key), the handler function, and the versions ``min_version..max_version``
    advertised by ApiVersions.

    ``legacy`` answers versions below what the codec reads (Produce v0-v2, whose message
    formats are refused). Raises ValueError when the classes do not belong to one API or
    the versions cannot all be decoded and encoded.
    """

    request: type[Req]
    response: type[Resp]
    func: Callable[[RequestContext, Req], Awaitable[Resp | None]]
    min_version: int
    max_version: int
    legacy: LegacyRefusal | None = None

    def __post_init__(self) -> None:
        key = self.request.api_key
        if key is None or key != self.response.api_key:
            raise ValueError(
                f"{self.request.__name__} and {self.response.__name__} are not the request "
                "and response of one API"
            )
        floor = self.request.min_version if self.legacy is None else 0
        ceiling = min(self.request.max_version, self.response.max_version)
        if not floor <= self.min_version <= self.max_version <= ceiling:
            raise ValueError(
                f"{self.name} v{self.min_version}-v{self.max_version} cannot be served: "
                f"the codec handles v{self.request.min_version}-v{ceiling}"
            )

    @property
    def api_key(self) -> int:
        key = self.request.api_key
        assert key is not None  # checked in __post_init__
        return key

    @property
    def name(self) -> str:
        """The API's name (``Fetch``)."""
        return API_NAMES.get(self.api_key, self.request.__name__)


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
