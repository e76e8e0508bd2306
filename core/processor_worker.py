"""The processor worker: a consumer group -> a function or transforms -> the producer.

:class:`ProcessorWorker` runs one processor on :class:`~backbone.consumers.ConsumingWorker`
(sessions, commits, pauses). Outputs are produced without waiting: the next batch is
transformed while earlier batches' outputs are on the wire, and a batch's offsets count as
handled (and are committed) once its outputs and those of every batch before it are
acknowledged. :func:`compile_processor` is the transforms' fast path (no ``Event`` per
record); :func:`load_function` imports a processor ``function``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backbone.batcher import ProducerBatcher
from backbone.connector import Header, SinkRecord
from backbone.consumers import ConsumingWorker, partition_order, sink_record, sink_records
from backbone.errors import DataError, FatalError, RetriableError
from backbone.events import (
    Encoded,
    Event,
    decode_value,
    encode_event,
    encode_key,
    encode_value,
    event_from_record,
    event_key,
)
from backbone.settings import ProcessorSettings
from backbone.transforms import DROP, apply_transforms, compile_transforms

__all__ = ["KEY_CACHE", "ProcessorWorker", "compile_processor", "load_function"]

KEY_CACHE = 65536
"""Input keys whose processor output key is remembered (keys repeat); emptied when full."""


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


def compile_processor(
    settings: ProcessorSettings,
) -> Callable[[bytes | None, bytes | None, Sequence[Header], int], Encoded | None]:
    """A processor's transforms as one plain function of a consumed record's key, value,
    headers and timestamp: its output, or ``None`` when filtered out; an error
    (:class:`DataError` when no topic is named) as the general path raises it.

    The output bytes are those of the general path (:func:`event_from_record`, the steps,
    :func:`encode_event`; :meth:`ProcessorWorker._outputs`) without an :class:`Event` per
    record: the steps compiled once, output keys remembered per input key.
    """
    run = compile_transforms(settings.transforms or [])
    to = settings.to
    keys: dict[bytes, bytes | None] = {}
    json_type: Header = ("content-type", b"application/json")
    bytes_type: Header = ("content-type", b"application/octet-stream")

    def transform(
        raw: bytes | None, payload: bytes | None, given: Sequence[Header], stamp: int
    ) -> Encoded | None:
        value = decode_value(payload)
        topic = run(value)
        if topic is DROP:
            return None
        topic = topic or to
        if topic is None:
            raise DataError("the output event names no topic and the processor has no 'to'")
        data = encode_value(value)
        headers = [header for header in given if header[0] != "content-type"]
        if data is not None:
            headers.append(bytes_type if isinstance(value, bytes) else json_type)
        key = None
        if raw is not None:
            key = keys.get(raw, raw)
            if key is raw:
                if len(keys) >= KEY_CACHE:
                    keys.clear()
                key = keys[raw] = encode_key(event_key(raw))
        return Encoded(topic, key, data, headers, stamp if stamp >= 0 else None)

    return transform


class ProcessorWorker(ConsumingWorker):
    """Runs one processor: function or transforms per event, outputs acked, then commit.

    Outputs are produced without waiting: the next batch is transformed while earlier
    batches' outputs are on the wire, and a batch's offsets count as handled (and are
    committed) once its outputs and those of every batch before it are acknowledged.
    """

    role = "processor"

    def __init__(self, name: str, *, settings: ProcessorSettings, **common: Any) -> None:
        common.setdefault("topics", settings.topics)
        common.setdefault("start", settings.start)
        super().__init__(name, **common)
        self.settings = settings
        self.function = load_function(settings.function) if settings.function else None
        self.batcher = ProducerBatcher(self.shared.producer)
        self._transform = compile_processor(settings) if self.function is None else None

    async def _outputs(self, record: SinkRecord) -> list[Encoded]:
        event = event_from_record(record)
        if self.function is None:
            # event.value was just decoded from the record: the transforms may change it
            keep, value, topic = apply_transforms(
                self.settings.transforms or [], event.value, in_place=True
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

    @property
    def _handle_overridden(self) -> bool:
        """A subclass handles batches itself (a redrive picks its own dead letters): it gets
        sink records through :meth:`handle`, not pipelined."""
        return type(self).handle is not ProcessorWorker.handle

    def records(self, batches: Mapping[Any, Sequence[Any]]) -> list[Any]:
        if self._transform is None or self._handle_overridden:
            return sink_records(batches)
        # the transforms read aiokafka's messages as they are (no sink record each)
        return [m for tp in sorted(batches, key=partition_order) for m in batches[tp]]

    async def submit(self, records: list[Any]) -> tuple[Sequence[asyncio.Future[Any]], int]:
        if self._handle_overridden:
            return await super().submit(records)  # the subclass's handle()
        return await self._submit(records, messages=self._transform is not None)

    async def handle(self, records: list[SinkRecord]) -> None:
        """Handle ``records`` and wait for their outputs' acks (not pipelined)."""
        futures, count = await self._submit(records, messages=False)
        if futures:
            await asyncio.gather(*futures)
        self.status.records_out += count

    async def _submit(
        self, records: list[Any], *, messages: bool
    ) -> tuple[list[asyncio.Future[Any]], int]:
        """Transform ``records`` (aiokafka's ``messages``, or sink records) and queue the
        outputs: the futures of their acks (and of dead letters), and the output count."""
        futures: list[asyncio.Future[Any]] = []
        produced: list[Encoded] = []  # every output, in order: one batch per partition
        transform = self._transform
        for record in records:
            if transform is not None:
                try:
                    output = transform(
                        record.key,
                        record.value,
                        record.headers,
                        record.timestamp if messages else record.timestamp_ms,
                    )
                except Exception:
                    pass  # the general path below gives the record its error (dead letter)
                else:
                    if output is not None:
                        produced.append(output)
                    continue
                if messages:
                    record = sink_record(record)
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
                    produced.extend(outputs)
                break
        if produced:
            futures.append(await self._send(produced))
        return futures, len(produced)

    async def _send(self, outputs: list[Encoded]) -> asyncio.Future[Any]:
        """Produce ``outputs``; the future of all their acks.

        The batcher does not wait for earlier requests: what is produced while its batches
        are unacknowledged (aiokafka sends one request at a time per broker) goes out
        together at the ack, so a request carries many consumed batches.
        """
        futures = await self.batcher.produce(outputs)
        # records of one produced batch share its future: each future once
        return asyncio.gather(*dict.fromkeys(futures))
