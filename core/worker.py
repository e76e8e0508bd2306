"""What every runner worker shares: status, backoff waits, dead-letter sends.

The :class:`~backbone.runner.Runner` builds one worker per source
(:mod:`backbone.source_worker`), sink and processor (:mod:`backbone.consumers`)
and awaits each worker's :meth:`Worker.run` in its own task. A worker returns
when the runner's ``stop`` event is set (after draining what it holds) and raises
when its connector must stop in state FAILED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from backbone.clients import KafkaClients
from backbone.retry import backoff_delay, dead_letter_headers
from backbone.settings import RetryPolicy, RuntimeSettings

__all__ = ["ConnectorState", "ConnectorStatus", "Shared", "Stopping", "Worker"]

logger = logging.getLogger("backbone.workers")


class ConnectorState(enum.StrEnum):
    """Where a connector is in its life."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    UNASSIGNED = "UNASSIGNED"
    """A source of the gateway cluster that no process runs at the moment."""


@dataclass
class ConnectorStatus:
    """A connector's state and its last error (``None`` once it recovered).

    ``worker`` is the ``host:pid`` of the gateway process that runs the connector
    (for a source of the gateway cluster, possibly another process).
    """

    name: str
    role: str
    state: ConnectorState = ConnectorState.STARTING
    error: str | None = None
    worker: str | None = None


class Stopping(Exception):
    """Raised inside a worker when the stop event interrupts a wait."""


@dataclass
class Shared:
    """What every worker of one runner uses."""

    producer: AIOKafkaProducer
    bootstrap: str
    runtime: RuntimeSettings
    stop: asyncio.Event
    rng: random.Random
    worker: str = ""
    """``host:pid`` of this gateway process (in consumers' client ids, for ``backbone status``)."""
    instance: str | None = None
    """This process's stable id (:mod:`backbone.instance`): sink and processor consumers
    use ``<instance>.<name>`` as ``group.instance.id`` (static membership)."""
    kafka: KafkaClients | None = None
    """Makes the workers' Kafka clients (with ``broker.security``)."""

    @property
    def clients(self) -> KafkaClients:
        return self.kafka if self.kafka is not None else KafkaClients(self.bootstrap)


class Worker:
    """Common parts: status, backoff waits, dead-letter sends."""

    role = "connector"

    def __init__(
        self,
        name: str,
        *,
        shared: Shared,
        retry: RetryPolicy,
        dead_letter_topic: str | None,
        status: ConnectorStatus,
    ) -> None:
        self.name = name
        self.shared = shared
        self.retry = retry
        self.dead_letter_topic = dead_letter_topic
        self.status = status
        self.log = logging.LoggerAdapter(logger, {"connector": name})

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def backoff(self, attempt: int, error: BaseException) -> None:
        """Wait before the next attempt; raise :class:`Stopping` if the runner stops meanwhile."""
        retry_after = getattr(error, "retry_after", None)
        delay = backoff_delay(self.retry, attempt, retry_after, self.shared.rng)
        self.status.error = f"{type(error).__name__}: {error}"
        self.log.warning(
            "%s %s: attempt %d failed (%s: %s); retrying in %.3fs",
            self.role,
            self.name,
            attempt,
            type(error).__name__,
            error,
            delay,
        )
        try:
            await asyncio.wait_for(self.shared.stop.wait(), delay)
        except TimeoutError:
            return
        raise Stopping

    async def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        error: BaseException,
        attempts: int,
        original: tuple[str, int, int] | None,
    ) -> asyncio.Future[Any]:
        """Send one record to the dead-letter topic (or raise ``error`` if there is none)."""
        if self.dead_letter_topic is None:
            raise error
        extra = dead_letter_headers(
            connector=self.name, error=error, attempts=attempts, original=original
        )
        self.log.warning(
            "%s %s: record sent to dead-letter topic %s after %d attempt(s): %s: %s",
            self.role,
            self.name,
            self.dead_letter_topic,
            attempts,
            type(error).__name__,
            error,
        )
        future: asyncio.Future[Any] = await self.shared.producer.send(
            self.dead_letter_topic, value=value, key=key, headers=[*headers, *extra]
        )
        return future
