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
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from backbone.clients import KafkaClients
from backbone.retry import backoff_delay, dead_letter_headers
from backbone.settings import RetryPolicy, RuntimeSettings

__all__ = ["ConnectorState", "ConnectorStatus", "Control", "Shared", "Stopping", "Worker"]

logger = logging.getLogger("backbone.workers")


class ConnectorState(enum.StrEnum):
    """Where a connector is in its life.

    STARTING (opening), RUNNING, BACKOFF (waiting before retrying a failed call),
    PAUSED (asked to: holds no partitions, reads nothing), FAILED (stopped by an
    error; a restart tries again), STOPPED (the gateway is stopping, or a bounded
    run such as a replay reached its end), UNASSIGNED (a source of the gateway
    cluster that no process runs right now).
    """

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    UNASSIGNED = "UNASSIGNED"
    """A source of the gateway cluster that no process runs at the moment."""


@dataclass
class ConnectorStatus:
    """A connector's state, its errors and what flowed through it.

    ``error`` is the error it is in now (``None`` once it recovered);
    ``last_error``/``last_error_at`` (epoch seconds) keep the most recent one.
    Counters are updated once per batch, never per record: ``records_in`` (a
    source's records read or pushed, a sink's or processor's records consumed),
    ``records_out`` (a source's records acknowledged by the broker, a sink's
    records written, a processor's output records acknowledged), ``dead_lettered``,
    ``retries`` (waits before another attempt), ``errors`` (failed attempts plus
    records that failed for good). ``last_record_ms``: timestamp of the newest
    record (a source: when it was read). ``position``: a source's last saved
    position. ``restarts``: how often it was restarted through the admin API.
    ``worker`` is the ``host:pid`` of the gateway process that runs the connector
    (for a source of the gateway cluster, possibly another process).
    """

    name: str
    role: str
    state: ConnectorState = ConnectorState.STARTING
    error: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    records_in: int = 0
    records_out: int = 0
    dead_lettered: int = 0
    retries: int = 0
    errors: int = 0
    last_record_ms: int | None = None
    position: Any = None
    restarts: int = 0
    worker: str | None = None

    def failed(self, error: BaseException, *, current: bool = True) -> str:
        """Count ``error`` and keep it as the last error (and, if ``current``, as the error
        the connector is in now); its ``Class: message`` text."""
        text = f"{type(error).__name__}: {error}"
        if current:
            self.error = text
        self.last_error = text
        self.last_error_at = time.time()
        self.errors += 1
        return text


class Stopping(Exception):
    """Raised inside a worker when a stop (or pause) request interrupts a wait."""


class Control:
    """Requests to one worker from outside: stop (drain and return), pause, resume.

    The admin API pauses, resumes and (through the runner) restarts a worker; the
    worker also stops when its ``stop`` event (``Shared.stop``: the runner's, or the
    gateway cluster's event for one source) is set, which :meth:`link` ties in.
    Workers check :attr:`stopping`/:attr:`pausing` between batches, and
    :meth:`Worker.backoff` waits are cut short by either.
    """

    def __init__(self) -> None:
        self._stopping = False
        self.pausing = False
        self._woken = asyncio.Event()  # set while a stop or pause is requested
        self._resumed = asyncio.Event()
        self._stop_event: asyncio.Event | None = None

    def link(self, stop: asyncio.Event) -> None:
        """Also stop when ``stop`` is set."""
        self._stop_event = stop

    @property
    def stopping(self) -> bool:
        """A stop was requested (here or through the linked event)."""
        return self._stopping or (self._stop_event is not None and self._stop_event.is_set())

    @property
    def interrupted(self) -> bool:
        """A stop or a pause was requested."""
        return self.stopping or self.pausing

    def stop(self) -> None:
        self._stopping = True
        self._woken.set()
        self._resumed.set()

    def pause(self) -> None:
        self.pausing = True
        self._resumed.clear()
        self._woken.set()

    def resume(self) -> None:
        self.pausing = False
        if not self._stopping:
            self._woken.clear()
        self._resumed.set()

    async def _either(self, event: asyncio.Event, within: float | None) -> bool:
        """Wait for ``event`` or the linked stop event; whether one came in time."""
        waits = {asyncio.ensure_future(event.wait())}
        if self._stop_event is not None:
            waits.add(asyncio.ensure_future(self._stop_event.wait()))
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return bool(done)

    async def interrupt(self, within: float) -> bool:
        """Sleep up to ``within`` s; ``True`` as soon as a stop or pause is requested."""
        if self.interrupted:
            return True
        return await self._either(self._woken, within)

    async def wait_resumed(self) -> bool:
        """Wait while paused; ``True`` once resumed, ``False`` if stopped meanwhile."""
        if not self.pausing or self.stopping:
            return not self.stopping
        await self._either(self._resumed, None)
        return not self.stopping


@dataclass
class Shared:
    """What every worker of one runner uses (``kafka`` makes their Kafka clients)."""

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
    """Makes the workers' Kafka clients (``None``: a plain :class:`KafkaClients` on
    ``bootstrap``); see :attr:`clients`."""

    @property
    def clients(self) -> KafkaClients:
        """The client factory of the workers."""
        if self.kafka is None:
            self.kafka = KafkaClients(self.bootstrap)
        return self.kafka


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
        control: Control | None = None,
    ) -> None:
        self.name = name
        self.shared = shared
        self.retry = retry
        self.dead_letter_topic = dead_letter_topic
        self.status = status
        self.control = control or Control()
        self.control.link(shared.stop)
        self.log = logging.LoggerAdapter(logger, {"connector": name})

    async def paused(self) -> bool:
        """State PAUSED until resumed (``True``, back to RUNNING) or stopped (``False``)."""
        self.status.state = ConnectorState.PAUSED
        self.log.info("%s %s paused", self.role, self.name)
        resumed = await self.control.wait_resumed()
        if resumed:
            self.status.state = ConnectorState.RUNNING
            self.log.info("%s %s resumed", self.role, self.name)
        return resumed

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def backoff(self, attempt: int, error: BaseException) -> None:
        """Wait before the next attempt (state BACKOFF); :class:`Stopping` if a stop or a
        pause is requested meanwhile."""
        retry_after = getattr(error, "retry_after", None)
        delay = backoff_delay(self.retry, attempt, retry_after, self.shared.rng)
        self.status.failed(error)
        self.status.retries += 1
        self.log.warning(
            "%s %s: attempt %d failed (%s: %s); retrying in %.3fs",
            self.role,
            self.name,
            attempt,
            type(error).__name__,
            error,
            delay,
        )
        previous, self.status.state = self.status.state, ConnectorState.BACKOFF
        try:
            interrupted = await self.control.interrupt(delay)
        finally:
            if self.status.state is ConnectorState.BACKOFF:
                self.status.state = previous
        if interrupted:
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
        self.status.failed(error, current=False)
        self.status.dead_lettered += 1
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
