"""The consuming workers: sinks and processors read a consumer group ``backbone.<name>``.

- :class:`SinkWorker`: consumer group -> ``write(batch)`` -> commit. Retriable
  errors back off; ``DataError`` isolates the bad records (one-at-a-time writes);
  failures that exhaust retries go to the dead-letter topic.
- :class:`ProcessorWorker`: consumer group -> function or transforms -> producer;
  offsets are committed after every output was acknowledged.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from backbone.connector import Sink, SinkRecord
from backbone.errors import DataError, FatalError, RetriableError
from backbone.events import Encoded, Event, encode_event, event_from_record
from backbone.settings import ProcessorSettings
from backbone.transforms import apply_transforms
from backbone.worker import ConnectorState, Stopping, Worker

__all__ = ["ConsumingWorker", "ProcessorWorker", "SinkWorker", "load_function"]


class _StartListener(ConsumerRebalanceListener):  # type: ignore[misc]
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
            size, wait = self.batching()
            while not self.shared.stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=size)
                if not batches:
                    continue
                if wait > 0:
                    await self._fill(batches, size, wait)
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

    def batching(self) -> tuple[int, float]:
        """Most records per ``handle`` call, and how long to wait for that many."""
        return self.shared.runtime.max_batch, 0.0

    async def _fill(self, batches: dict[Any, list[Any]], size: int, wait: float) -> None:
        """Poll more into ``batches`` until ``size`` records or ``wait`` seconds passed."""
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        count = sum(len(messages) for messages in batches.values())
        while count < size and not self.shared.stop.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            more = await self.consumer.getmany(
                timeout_ms=max(int(remaining * 1000), 1), max_records=size - count
            )
            for tp, messages in more.items():
                batches.setdefault(tp, []).extend(messages)
                count += len(messages)

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

    def batching(self) -> tuple[int, float]:
        size = self.sink.batch_size or self.shared.runtime.max_batch
        return size, max(self.sink.batch_wait, 0.0)

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
    loaded: Callable[[Event], Any] = function
    return loaded


class ProcessorWorker(ConsumingWorker):
    """Runs one processor: function or transforms per event, outputs acked, then commit."""

    role = "processor"

    def __init__(self, name: str, *, settings: ProcessorSettings, **common: Any) -> None:
        super().__init__(name, topics=settings.topics, start=settings.start, **common)
        self.settings = settings
        self.function = load_function(settings.function) if settings.function else None

    async def _outputs(self, record: SinkRecord) -> list[Encoded]:
        event = event_from_record(record)
        if self.function is None:
            keep, value, topic = apply_transforms(self.settings.transforms or [], event.value)
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
