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

from backbone.settings import BrokerSettings

__all__ = ["KafkaClients", "stop_consumer"]


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
