"""The one place the gateway makes Kafka clients (aiokafka producer, consumer, admin).

Every client the runtime and the CLI create comes from a :class:`KafkaClients`
built from the config's ``broker:`` settings and the bootstrap address in use
(the embedded broker's, or ``broker.bootstrap``). Settings every client needs
(the bootstrap servers and ``broker.security``: protocol, TLS context, SASL
credentials or the OAUTHBEARER token provider, see :mod:`backbone.kafka_security`)
are added here, once, in :meth:`KafkaClients.common`; callers pass only what is
particular to their client (group, offsets reset, batch sizes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from backbone.broker.config import parse_host_port
from backbone.errors import BackboneError
from backbone.kafka_security import ClientSecurity, TokenError
from backbone.settings import BrokerSettings

__all__ = ["KafkaClients", "remove_static_member", "stop_consumer"]

_GROUP_COORDINATOR = 0
_UNKNOWN_MEMBER_ID = 25
_LEAVE_TIMEOUT = 10.0


class KafkaClients:
    """Makes aiokafka clients for one broker (see the module docstring).

    ``settings`` is the config's ``broker:`` section (``BrokerSettings()`` when only a
    ``--bootstrap`` was given); ``bootstrap`` is the ``host:port[,host:port]`` to reach.
    Clients are returned unstarted: the caller owns ``start()`` and ``stop()``/``close()``.
    """

    def __init__(self, bootstrap: str, settings: BrokerSettings | None = None) -> None:
        self.bootstrap = bootstrap
        self.settings = settings or BrokerSettings(bootstrap=bootstrap.split(","))
        self.security = ClientSecurity(self.settings.security)

    def common(self, client_id: str) -> dict[str, Any]:
        """Keyword arguments every client gets (bootstrap servers, client id, security)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": client_id,
            **self.security.options(),
        }

    def producer(self, client_id: str = "backbone.producer", **options: Any) -> AIOKafkaProducer:
        """An :class:`AIOKafkaProducer`; ``options`` as aiokafka names them (``acks``...)."""
        return AIOKafkaProducer(**self.common(client_id), **options)

    def consumer(
        self, *topics: str, client_id: str = "backbone.consumer", **options: Any
    ) -> AIOKafkaConsumer:
        """An :class:`AIOKafkaConsumer` (subscribed to ``topics`` when given)."""
        return AIOKafkaConsumer(*topics, **self.common(client_id), **options)

    def admin(self, client_id: str = "backbone.admin", **options: Any) -> AIOKafkaAdminClient:
        """An :class:`AIOKafkaAdminClient`."""
        return AIOKafkaAdminClient(**self.common(client_id), **options)

    async def check(self, timeout_s: float = 15.0) -> None:
        """Connect (TLS, SASL) to the bootstrap servers until one accepts; else raise
        :class:`BackboneError` with one line saying why (``backbone validate --check``)."""
        from aiokafka.conn import create_conn

        first: str | None = None
        for address in self.bootstrap.split(","):
            host, port = parse_host_port(address.strip())
            try:
                conn = await asyncio.wait_for(
                    create_conn(
                        host,
                        port,
                        client_id="backbone.check",
                        request_timeout_ms=int(timeout_s * 1000),
                        **self.security.options(),
                    ),
                    timeout_s,
                )
            except (OSError, TimeoutError, KafkaError, TokenError) as exc:
                if first is None:
                    mismatch = await self._protocol_mismatch(host, port, exc)
                    first = mismatch or self.explain(f"{host}:{port}", exc)
                continue
            conn.close()
            return
        raise BackboneError(first or f"cannot connect to {self.bootstrap}")

    def explain(self, address: str, exc: BaseException) -> str:
        """One line for a failed connection: authentication, TLS, token or network."""
        sasl = self.settings.security.sasl
        who = ""
        if sasl is not None:
            user = sasl.client_id if sasl.mechanism == "OAUTHBEARER" else sasl.username
            who = f" as {user} ({sasl.mechanism})"
        name = type(exc).__name__
        errno = getattr(exc, "errno", None)
        text = str(exc)
        if text.startswith("[Error "):  # "[Error 58] SaslAuthenticationFailed: why"
            text = text.split(": ", 1)[-1]
        if isinstance(exc, TokenError):
            return str(exc)
        if errno == 58:  # SASL_AUTHENTICATION_FAILED
            return f"authentication failed on {address}{who}: {text or 'invalid credentials'}"
        if errno in (33, 34):  # UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE
            if text.startswith("<"):  # aiokafka gives the connection, not the reason
                text = (
                    "the broker does not offer this mechanism (UNSUPPORTED_SASL_MECHANISM)"
                    if errno == 33
                    else "ILLEGAL_SASL_STATE"
                )
            return f"SASL refused by {address}{who}: {text}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"TLS: the certificate of {address} is not trusted ({exc.verify_message}); "
                "set broker.security.tls.ca (or verify_hostname)"
            )
        if isinstance(exc, ssl.SSLError):
            return f"TLS handshake with {address} failed: {exc.reason or exc}"
        if isinstance(exc, TimeoutError):
            return f"no answer from {address} (is it a {self.security.protocol} listener?)"
        return f"cannot connect to {address}{who}: {exc or name}"

    async def _protocol_mismatch(self, host: str, port: int, exc: BaseException) -> str | None:
        """When a connection was dropped, whether the listener speaks TLS and the client not
        (or the other way round): one line saying which protocol to set, else None."""
        if isinstance(exc, TokenError | TimeoutError | ConnectionRefusedError):
            return None
        if isinstance(exc, ssl.SSLCertVerificationError) or getattr(exc, "errno", None) in (
            33,
            34,
            58,
        ):
            return None
        address, protocol = f"{host}:{port}", self.security.protocol
        if protocol.endswith("SSL"):
            if await _answers_plain_kafka(host, port):
                return (
                    f"{address} does not speak TLS (it answers plain Kafka), but "
                    f"broker.security.protocol is {protocol}: use PLAINTEXT or SASL_PLAINTEXT "
                    "as this listener does, or the address of a TLS listener"
                )
        elif await _answers_tls(host, port):
            return (
                f"{address} is a TLS listener, but broker.security.protocol is {protocol}: "
                "use SSL or SASL_SSL as this listener does (and broker.security.tls.ca)"
            )
        return None

    def client(self, client_id: str, **options: Any) -> AIOKafkaClient:
        """A low-level :class:`AIOKafkaClient`, for requests the others do not make (the
        gateway group's JoinGroup/SyncGroup, CreateTopics v4, DescribeGroups)."""
        return AIOKafkaClient(**self.common(client_id), **options)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, without the stray ``CancelledError`` aiokafka raises when a
    group-less consumer is stopped before its background task first ran (a command
    that fails right after starting one). A real cancellation still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class _LeaveGroupResponseV3(Response):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(("member_id", String()), ("group_instance_id", String()), ("error_code", Int16)),
        ),
    )


class _LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]
    """LeaveGroup v3 (KIP-345): a batch of members, each by member id or instance id."""

    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group_id", String()),
        ("members", Array(("member_id", String()), ("group_instance_id", String()))),
    )


class _RemoveStaticMember(Request[_LeaveGroupRequestV3]):  # type: ignore[misc]
    API_KEY = 13

    def __init__(self, group: str, instance_id: str) -> None:
        self.group = group
        self.instance_id = instance_id

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class(group_id=self.group, members=[("", self.instance_id)])


async def remove_static_member(clients: KafkaClients, group: str, instance_id: str) -> bool:
    """Remove the static member ``instance_id`` from ``group`` now (LeaveGroup v3 by
    instance id, as Kafka's ``Admin.removeMembersFromConsumerGroup``) instead of after its
    session timeout. False if it was not a member; raises a Kafka error otherwise."""
    client = clients.client("backbone.admin")
    try:
        async with asyncio.timeout(_LEAVE_TIMEOUT):
            await client.bootstrap()
            node = await client.coordinator_lookup(_GROUP_COORDINATOR, group)
            response = await client.send(
                node, _RemoveStaticMember(group, instance_id), group=ConnectionGroup.COORDINATION
            )
    finally:
        await client.close()
    codes = [response.error_code] + [member[2] for member in response.members]
    for code in codes:
        if code == _UNKNOWN_MEMBER_ID:
            return False
        if code:
            raise for_code(code)(f"LeaveGroup {group} {instance_id}")
    return True


_PROBE_TIMEOUT_S = 5.0


async def _answers_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificates not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), _PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _answers_plain_kafka(host: str, port: int) -> bool:
    """Whether ``host:port`` answers an ApiVersions v0 request sent without TLS."""
    correlation_id = 0x0BAC
    client_id = b"backbone.check"
    # request header v1: api key 18 (ApiVersions), version 0, correlation id, client id
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), _PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(struct.pack(">i", len(body)) + body)
        head = await asyncio.wait_for(reader.readexactly(8), _PROBE_TIMEOUT_S)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    size, answered = struct.unpack(">ii", head)
    return bool(answered == correlation_id and 0 < size < 1 << 20)
