"""The one place the gateway makes Kafka clients (aiokafka producer, consumer, admin).

Every client the runtime and the CLI create comes from a :class:`KafkaClients`
built from the config's ``broker:`` settings and the bootstrap address in use
(the embedded broker's, or ``broker.bootstrap``). Settings every client needs
(today the bootstrap servers; next security: TLS, SASL) are added here, once, in
:meth:`KafkaClients.common`; callers pass only what is particular to their client
(group, offsets reset, batch sizes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import ConnectionGroup
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

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

    def common(self, client_id: str) -> dict[str, Any]:
        """Keyword arguments every client gets (bootstrap servers, client id)."""
        return {"bootstrap_servers": self.bootstrap, "client_id": client_id}

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
