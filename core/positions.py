"""Source positions, stored in the compacted topic ``_backbone.positions``.

Key = connector name (UTF-8), value = ``{"position": <JSON>}``. The runner creates
the topic (one partition, ``cleanup.policy=compact``), calls :meth:`PositionStore.load`
once at start (reads the topic to its end; the last value per key wins) and
:meth:`PositionStore.save` from each source worker, only with positions whose
records were all acknowledged. ``save`` returns after the broker acknowledged
the position record (acks=all through the shared idempotent producer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from backbone.clients import KafkaClients
from backbone.errors import BackboneError

__all__ = ["POSITIONS_TOPIC", "PositionStore"]

logger = logging.getLogger(__name__)

POSITIONS_TOPIC = "_backbone.positions"


class PositionStore:
    """Reads and writes source positions (see the module docstring)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        bootstrap: str,
        topic: str = POSITIONS_TOPIC,
        *,
        clients: KafkaClients | None = None,
    ) -> None:
        self.producer = producer
        self.bootstrap = bootstrap
        self.topic = topic
        self.clients = clients or KafkaClients(bootstrap)

    async def load(self) -> dict[str, Any]:
        """Every connector's last saved position, read from the topic's start to its end."""
        consumer = self.clients.consumer(
            client_id="backbone.positions",
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        consumer.subscribe([self.topic])  # no group: every partition is assigned here
        await consumer.start()
        try:
            for _ in range(100):  # a topic created a moment ago may take a while to appear
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            if not tps:
                raise BackboneError(f"the position topic {self.topic} does not exist")
            ends = await consumer.end_offsets(tps)
            positions: dict[str, Any] = {}
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        self._apply(positions, message)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return positions
        finally:
            await consumer.stop()

    def _apply(self, positions: dict[str, Any], message: Any) -> None:
        """Fold one record of the topic into ``positions``: a value sets, a tombstone clears.

        A record that is not ``{"position": ...}`` JSON under a UTF-8 key (written by
        something else, or damaged) is logged with its offset and skipped, like Kafka
        Connect's offset reader does: the connector keeps the position before it (or
        none), so it re-reads from there, which duplicates at worst and loses nothing.
        """
        where = f"{self.topic}[{message.partition}]@{message.offset}"
        if message.key is None:
            logger.error("skipping a record without a key in %s", where)
            return
        try:
            name = message.key.decode()
        except UnicodeDecodeError:
            logger.error("skipping a record whose key is not UTF-8 in %s", where)
            return
        if message.value is None:
            positions.pop(name, None)
            return
        try:
            position = json.loads(message.value)["position"]
        except (ValueError, TypeError, KeyError) as exc:
            logger.error(
                "skipping the unreadable position of %r in %s (%s: %s); the connector "
                "resumes from its previous position",
                name,
                where,
                type(exc).__name__,
                exc,
            )
            return
        positions[name] = position

    async def save(self, connector: str, position: Any) -> None:
        """Store ``position`` for ``connector``; returns once the broker acknowledged it."""
        value = json.dumps({"position": position}, separators=(",", ":")).encode()
        future = await self.producer.send(self.topic, key=connector.encode(), value=value)
        await future
