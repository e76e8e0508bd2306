"""The runtime's Kafka clients, made in one place from the config's broker settings.

Every producer, consumer, admin client and low-level client the runtime opens
comes from :class:`KafkaClients`, so a broker setting (today the bootstrap
address and producer idempotence; security settings later) reaches all of them.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from backbone.settings import BrokerSettings

__all__ = ["KafkaClients"]


class KafkaClients:
    """Makes aiokafka clients for ``bootstrap`` with the options of ``settings``."""

    def __init__(self, bootstrap: str, settings: BrokerSettings | None = None) -> None:
        self.bootstrap = bootstrap
        self.settings = settings or BrokerSettings(bootstrap=[bootstrap])

    def options(self, client_id: str) -> dict[str, Any]:
        """Options every client gets."""
        return {"bootstrap_servers": self.bootstrap, "client_id": client_id}

    def producer(self, client_id: str = "backbone.producer", **options: Any) -> AIOKafkaProducer:
        """A producer (idempotent unless ``broker.idempotence: false``, acks=all)."""
        merged: dict[str, Any] = {
            "enable_idempotence": self.settings.idempotence,
            "acks": "all",
            **options,
        }
        return AIOKafkaProducer(**self.options(client_id), **merged)

    def consumer(self, *topics: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
        """A consumer (``group_id=None`` unless given)."""
        return AIOKafkaConsumer(*topics, **self.options(client_id), **options)

    def admin(self, client_id: str = "backbone.admin") -> AIOKafkaAdminClient:
        """An admin client (call ``start()``/``close()``)."""
        return AIOKafkaAdminClient(**self.options(client_id))

    def client(self, client_id: str, **options: Any) -> AIOKafkaClient:
        """A low-level client for requests the others do not offer (call ``bootstrap()``)."""
        return AIOKafkaClient(**self.options(client_id), **options)
