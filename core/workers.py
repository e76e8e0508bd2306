"""One worker per configured connector: the loops the runner supervises.

The :class:`~backbone.runner.Runner` builds a worker per source, sink and
processor and awaits each worker's :meth:`run` in its own task. A worker returns
when the runner's ``stop`` event is set (after draining what it holds) and raises
when its connector must stop in state FAILED.

- :class:`SourceWorker`: ``read()`` -> serialize (+ CloudEvents headers) -> shared
  idempotent producer, one batch per partition per read. Positions are saved
  (``_backbone.positions``) only up to the highest position whose record and every
  record before it were acknowledged.
- :class:`SinkWorker`: consumer group ``backbone.<name>`` -> ``write(batch)`` ->
  commit. Retriable errors back off; ``DataError`` isolates the bad records
  (one-at-a-time writes); failures that exhaust retries go to the dead-letter topic.
- :class:`ProcessorWorker`: consumer group -> function or transforms -> producer;
  offsets are committed after every output was acknowledged.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.partitioner import DefaultPartitioner

from backbone.config import ProcessorSettings, RetryPolicy, RuntimeSettings
from backbone.connector import ConnectorKind, Sink, SinkRecord, Source
from backbone.errors import ContractError, DataError, FatalError, RetriableError
from backbone.events import (
    Encoded,
    Event,
    SourceEncoder,
    encode_event,
    event_from_record,
    shared_position_message,
)
from backbone.positions import PositionStore
from backbone.retry import backoff_delay, dead_letter_headers
from backbone.transforms import apply_transforms, compile_filter

__all__ = [
    "ConnectorState",
    "ConnectorStatus",
    "ProcessorWorker",
    "Shared",
    "SinkWorker",
    "SourceWorker",
    "load_function",
]

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 10_000
"""Most unacknowledged records a source may have before the worker waits for acks."""

BIG_RECORD = 8192
"""Records whose key + value exceed this many bytes go through ``producer.send`` alone."""


class ConnectorState(enum.StrEnum):
    """Where a connector is in its life."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


@dataclass
class ConnectorStatus:
    """A connector's state and its last error (``None`` once it recovered)."""

    name: str
    role: str
    state: ConnectorState = ConnectorState.STARTING
    error: str | None = None


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
        return await self.shared.producer.send(
            self.dead_letter_topic, value=value, key=key, headers=[*headers, *extra]
        )


class SourceWorker(Worker):
    """Runs one source: read, produce, save positions (see the module docstring)."""

    role = "source"

    def __init__(
        self,
        name: str,
        *,
        kind: ConnectorKind,
        source: Source[Any],
        topic: str,
        positions: PositionStore,
        start_position: Any,
        **common: Any,
    ) -> None:
        super().__init__(name, **common)
        self.kind = kind
        self.source = source
        self.topic = topic
        self.positions = positions
        self.start_position = start_position
        self.encoder = SourceEncoder(connector=name, kind=kind.name, topic=topic)
        self._partitioner = DefaultPartitioner()
        self._pending: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self._acked = start_position
        self._saved = start_position
        self._previous = start_position  # position of the last record read (rule 3)
        self._last_save = 0.0

    async def run(self) -> None:
        try:
            await self._open()
            self.status.state = ConnectorState.RUNNING
            self.log.info(
                "source %s started at position %r -> topic %s",
                self.name,
                self.start_position,
                self.topic,
            )
            attempt = 0
            while not self.shared.stop.is_set():
                try:
                    records = await self.source.read()
                except RetriableError as exc:
                    attempt += 1
                    await self.backoff(attempt, exc)
                    continue
                except DataError as exc:
                    raise ContractError(
                        f"source {self.name} broke the connector contract: read() raised "
                        f"DataError ({exc}); a source reports bad input as a record, "
                        "SourceRecord(value=<the raw input>, error=<why>, position=<the "
                        "position after it>), which goes to the dead-letter topic"
                    ) from exc
                if attempt:
                    attempt = 0
                    self.status.error = None
                if records:
                    await self._produce(records, int(time.time() * 1000))
                await self._advance(force=False)
            await self._drain()
        except Stopping:
            await self._drain()
        finally:
            await self.source.close()
            self.log.info("source %s stopped at position %r", self.name, self._saved)

    async def _open(self) -> None:
        attempt = 0
        while True:
            try:
                await self.source.open(self.start_position)
                return
            except RetriableError as exc:
                attempt += 1
                await self.backoff(attempt, exc)

    async def _produce(self, records: list[Any], now: int) -> None:
        """Encode one ``read()`` result and hand it to the producer, a batch per partition.

        Records are appended to one open ``BatchBuilder`` per topic-partition
        (partition chosen like ``producer.send`` does: murmur2 of the key), so a
        record costs no coroutine and no future of its own; every record of a
        batch waits on that batch's future. Records of one partition keep their
        order (a partition's batches are submitted in order), records the source
        could not parse go to the dead-letter topic, and ``_pending`` keeps one
        ``(position, future)`` per record in read order, so positions advance
        exactly as with one send per record.
        """
        producer = self.shared.producer
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        open_batches: dict[tuple[str, int], tuple[Any, list[Any]]] = {}
        order: list[tuple[Any, list[Any]]] = []  # (position, cell holding the future)
        previous = self._previous
        for record in records:
            failure: DataError | None = None
            if record.error is not None:
                failure = DataError(record.error)
            else:
                position = record.position
                if record.identity is None and (position is None or position == previous):
                    raise ContractError(shared_position_message(self.name, record, previous))
                previous = position
                try:
                    encoded = self.encoder.encode(record, now)
                except DataError as exc:
                    failure = exc
            if failure is not None:
                raw = record.value
                if not isinstance(raw, bytes | None):
                    raw = str(raw).encode() if isinstance(raw, str) else repr(raw).encode()
                future = await self.dead_letter(
                    None, raw, list(record.headers), error=failure, attempts=1, original=None
                )
                order.append((record.position, [future]))
                continue
            topic, key, value = encoded.topic, encoded.key, encoded.value
            known = partitions.get(topic)
            if known is None:
                await producer.partitions_for(topic)  # waits for the topic's metadata
                cluster = producer.client.cluster
                known = (
                    list(cluster.partitions_for_topic(topic)),
                    list(cluster.available_partitions_for_topic(topic)),
                )
                partitions[topic] = known
            partition = self._partitioner(key, known[0], known[1])
            tp = (topic, partition)
            size = (len(key) if key else 0) + (len(value) if value else 0)
            if size > BIG_RECORD:
                await self._submit(open_batches, tp)
                future = await producer.send(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    headers=encoded.headers,
                    timestamp_ms=encoded.timestamp_ms,
                )
                order.append((record.position, [future]))
                continue
            current = open_batches.get(tp)
            if current is None:
                current = open_batches[tp] = (producer.create_batch(), [None])
            stamp = encoded.timestamp_ms
            headers = encoded.headers
            if current[0].append(timestamp=stamp, key=key, value=value, headers=headers) is None:
                await self._submit(open_batches, tp)
                current = open_batches[tp] = (producer.create_batch(), [None])
                current[0].append(timestamp=stamp, key=key, value=value, headers=headers)
            order.append((record.position, current[1]))
        self._previous = previous
        for tp in list(open_batches):
            await self._submit(open_batches, tp)
        self._pending.extend((position, cell[0]) for position, cell in order)
        while len(self._pending) >= MAX_IN_FLIGHT:
            await asyncio.wait([self._pending[0][1]])
            await self._advance(force=False)

    async def _submit(
        self, open_batches: dict[tuple[str, int], tuple[Any, list[Any]]], tp: tuple[str, int]
    ) -> None:
        """Hand the open batch of ``tp`` (if any) to the producer; its cell gets the future."""
        current = open_batches.pop(tp, None)
        if current is not None:
            current[1][0] = await self.shared.producer.send_batch(
                current[0], tp[0], partition=tp[1]
            )

    async def _advance(self, *, force: bool) -> None:
        """Move the acknowledged position over every leading acknowledged record; save it."""
        while self._pending and self._pending[0][1].done():
            position, future = self._pending.popleft()
            future.result()  # a failed send raises here: the position never passes it
            if position is not None:
                self._acked = position
        due = time.monotonic() - self._last_save >= self.shared.runtime.position_interval
        if self._acked != self._saved and (force or due):
            await self.positions.save(self.name, self._acked)
            self._saved = self._acked
            self._last_save = time.monotonic()
            await self.source.ack(self._acked)

    async def _drain(self) -> None:
        if self._pending:
            await asyncio.wait({future for _, future in self._pending})
        await self._advance(force=True)


class _StartListener(ConsumerRebalanceListener):
    """Applies ``start: <timestamp>`` to partitions the group has no committed offset for."""

    def __init__(self, worker: ConsumingWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        start = self.worker.start
        consumer = self.worker.consumer
        if isinstance(start, str) or consumer is None:
            return
        millis = int(start.timestamp() * 1000)
        for tp in assigned:
            if await consumer.committed(tp) is not None:
                continue
            found = await consumer.offsets_for_times({tp: millis})
            if found.get(tp) is not None:
                consumer.seek(tp, found[tp].offset)
            else:
                await consumer.seek_to_end(tp)


class ConsumingWorker(Worker):
    """A worker reading a consumer group ``backbone.<name>`` with manual commits."""

    def __init__(self, name: str, *, topics: Sequence[str], start: Any, **common: Any) -> None:
        super().__init__(name, **common)
        self.topics = list(topics)
        self.start = start
        self.consumer: AIOKafkaConsumer | None = None

    def _consumer(self) -> AIOKafkaConsumer:
        runtime = self.shared.runtime
        return AIOKafkaConsumer(
            bootstrap_servers=self.shared.bootstrap,
            group_id=f"backbone.{self.name}",
            client_id=f"backbone.{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="latest" if self.start == "latest" else "earliest",
            session_timeout_ms=int(runtime.session_timeout * 1000),
            heartbeat_interval_ms=int(runtime.heartbeat_interval * 1000),
            rebalance_timeout_ms=int(runtime.session_timeout * 1000),
            max_poll_records=runtime.max_batch,
        )

    async def run(self) -> None:
        self.consumer = self._consumer()
        self.consumer.subscribe(self.topics, listener=_StartListener(self))
        try:
            await self.consumer.start()
        except BaseException:
            await self.consumer.stop()
            raise
        try:
            try:
                await self.open()
            except Stopping:  # stopped while open() was still retrying: a clean stop
                return
            self.status.state = ConnectorState.RUNNING
            self.log.info(
                "%s %s started: group backbone.%s on %s",
                self.role,
                self.name,
                self.name,
                ", ".join(self.topics),
            )
            while not self.shared.stop.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=200, max_records=self.shared.runtime.max_batch
                )
                if not batches:
                    continue
                records = [
                    SinkRecord(
                        topic=m.topic,
                        partition=m.partition,
                        offset=m.offset,
                        key=m.key,
                        value=m.value,
                        headers=[(k, bytes(v)) for k, v in (m.headers or ())],
                        timestamp_ms=m.timestamp,
                    )
                    for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
                    for m in batches[tp]
                ]
                try:
                    await self.handle(records)
                except Stopping:
                    break
                offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
                try:
                    await self.consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:  # revoked meanwhile
                    self.log.warning(
                        "%s %s: commit failed (%s); records will be delivered again",
                        self.role,
                        self.name,
                        exc,
                    )
        finally:
            try:
                await self.close()
            finally:
                await self.consumer.stop()
                self.log.info("%s %s stopped", self.role, self.name)

    async def open(self) -> None:
        """Called once the consumer started."""

    async def close(self) -> None:
        """Called once when the worker ends."""

    async def handle(self, records: list[SinkRecord]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _dead_letter(
        self, record: SinkRecord, error: BaseException, attempts: int
    ) -> asyncio.Future[Any]:
        return await self.dead_letter(
            record.key,
            record.value,
            list(record.headers),
            error=error,
            attempts=attempts,
            original=(record.topic, record.partition, record.offset),
        )


class SinkWorker(ConsumingWorker):
    """Runs one sink: each batch is written (retried, isolated, dead-lettered), then committed."""

    role = "sink"

    def __init__(self, name: str, *, sink: Sink[Any], **common: Any) -> None:
        super().__init__(name, **common)
        self.sink = sink

    async def open(self) -> None:
        attempt = 0
        while True:
            try:
                await self.sink.open()
                return
            except RetriableError as exc:
                attempt += 1
                await self.backoff(attempt, exc)

    async def close(self) -> None:
        await self.sink.close()

    async def handle(self, records: list[SinkRecord]) -> None:
        futures: list[asyncio.Future[Any]] = []
        await self._deliver(records, futures)
        if futures:
            await asyncio.gather(*futures)

    async def _deliver(self, batch: list[SinkRecord], futures: list[asyncio.Future[Any]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.sink.write(batch)
            except RetriableError as exc:
                if attempt < self.retry.max_attempts:
                    await self.backoff(attempt, exc)
                    continue
                for record in batch:
                    futures.append(await self._dead_letter(record, exc, attempt))
            except DataError as exc:
                if len(batch) > 1:
                    for record in batch:
                        await self._deliver([record], futures)
                    return
                futures.append(await self._dead_letter(batch[0], exc, attempt))
            else:
                self.status.error = None
            return


def load_function(spec: str) -> Callable[[Event], Any]:
    """Import ``package.module:function``; :class:`FatalError` if it cannot be."""
    module_name, _, attr = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise FatalError(f"cannot load processor function {spec!r}: {exc}") from exc
    if not callable(function):
        raise FatalError(f"processor function {spec!r} is not callable")
    return function


class ProcessorWorker(ConsumingWorker):
    """Runs one processor: function or transforms per event, outputs acked, then commit."""

    role = "processor"

    def __init__(self, name: str, *, settings: ProcessorSettings, **common: Any) -> None:
        super().__init__(name, topics=settings.topics, start=settings.start, **common)
        self.settings = settings
        self.function = load_function(settings.function) if settings.function else None
        steps = settings.transforms or []
        self.filters = [
            compile_filter(step.filter) if hasattr(step, "filter") else None for step in steps
        ]

    async def _outputs(self, record: SinkRecord) -> list[Encoded]:
        event = event_from_record(record)
        if self.function is None:
            keep, value, topic = apply_transforms(
                self.settings.transforms or [], self.filters, event.value
            )
            if not keep:
                return []
            event.value = value
            event.topic = topic
            results: list[Any] = [event]
        else:
            result = self.function(event)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                return []
            results = list(result) if isinstance(result, list | tuple) else [result]
        encoded = []
        for item in results:
            if not isinstance(item, Event):
                item = Event(value=item, key=event.key, headers=list(event.headers))
            out = encode_event(item, default_topic=self.settings.to)
            if out.timestamp_ms is None:
                out.timestamp_ms = record.timestamp_ms if record.timestamp_ms >= 0 else None
            encoded.append(out)
        return encoded

    async def handle(self, records: list[SinkRecord]) -> None:
        futures: list[asyncio.Future[Any]] = []
        for record in records:
            attempt = 0
            while True:
                attempt += 1
                try:
                    outputs = await self._outputs(record)
                except asyncio.CancelledError:
                    raise
                except FatalError:
                    raise
                except RetriableError as exc:
                    if attempt < self.retry.max_attempts:
                        await self.backoff(attempt, exc)
                        continue
                    futures.append(await self._dead_letter(record, exc, attempt))
                except Exception as exc:  # the record (or the function) is bad
                    futures.append(await self._dead_letter(record, exc, attempt))
                else:
                    for out in outputs:
                        futures.append(
                            await self.shared.producer.send(
                                out.topic,
                                value=out.value,
                                key=out.key,
                                headers=out.headers,
                                timestamp_ms=out.timestamp_ms,
                            )
                        )
                break
        if futures:
            await asyncio.gather(*futures)
