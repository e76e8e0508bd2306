"""The source worker: ``read()`` -> encode -> produce -> save positions.

Each record a source returns is checked against the contract's rules (see
:mod:`backbone.connector`), encoded (:class:`~backbone.events.SourceEncoder`: JSON,
CloudEvents headers) and handed to the shared producer through a
:class:`~backbone.batcher.ProducerBatcher`, one batch per partition per read;
records with ``error`` go to the dead-letter topic. Positions are saved
(``_backbone.positions``) only up to the highest position whose record and every
record before it were acknowledged; a record with ``position=None`` leaves the
position where it was (rules 1 and 2); a position-only record
(``SourceRecord.position_only``, rule 6) is not produced, its position counts as
acknowledged once everything before it is. In a gateway cluster the worker gets a
``fence`` (the membership lease, :mod:`backbone.membership`) that it awaits before
producing, and saves positions through its :class:`~backbone.positions.Claim`.

While the source runs, its ``context.push`` (a :class:`~backbone.push.PushChannel`)
is bound to a :class:`~backbone.push.Pusher` on the same producer and encoder, so
records a source pushes (a webhook) are encoded exactly as those it reads; the
channel is unbound before ``close()``, after the pushes in flight settled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from backbone.batcher import ProducerBatcher
from backbone.connector import ConnectorKind, Source, SourceRecord
from backbone.errors import ContractError, DataError, RetriableError
from backbone.events import Encoded, SourceEncoder, shared_position_message
from backbone.positions import PositionWriter
from backbone.push import PushChannel, Pusher
from backbone.worker import ConnectorState, Stopping, Worker

__all__ = ["MAX_IN_FLIGHT", "SourceWorker"]

MAX_IN_FLIGHT = 10_000
"""Most unacknowledged records a source may have before the worker waits for acks."""


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
        positions: PositionWriter,
        start_position: Any,
        fence: Callable[[], Awaitable[None]] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name, **common)
        self.fence = fence
        self.kind = kind
        self.source = source
        self.topic = topic
        self.positions = positions
        self.start_position = start_position
        self.encoder = SourceEncoder(connector=name, kind=kind.name, topic=topic)
        self.batcher = ProducerBatcher(self.shared.producer)
        self._pending: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self._acked = start_position
        self._saved = start_position
        self._previous = start_position  # position of the last record read (rule 3)
        self._last_save = 0.0
        self._dead: set[asyncio.Future[Any]] = set()  # dead-letter sends not yet passed
        self.status.position = start_position
        self._done: asyncio.Future[Any] | None = None  # the "future" of position-only records

    async def run(self) -> None:
        channel = self.source.context.push
        pusher = Pusher(self.name, send=self.shared.producer.send, encoder=self.encoder)
        if isinstance(channel, PushChannel):
            channel.bind(_CountedPush(pusher, self))
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
            while not self.control.stopping:
                if self.control.pausing:
                    await self._drain()  # everything read so far is acknowledged and saved
                    await self.paused()
                    continue
                try:
                    records = await self.source.read()
                except RetriableError as exc:
                    attempt += 1
                    try:
                        await self.backoff(attempt, exc)
                    except Stopping:
                        pass  # the loop's head stops or pauses
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
                    now = int(time.time() * 1000)
                    self.status.last_record_ms = now
                    await self._produce(records, now)
                await self._advance(force=False)
            await self._drain()
        except Stopping:
            await self._drain()
        finally:
            if isinstance(channel, PushChannel):
                channel.unbind()
            await pusher.drain(self.shared.runtime.grace_period)
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
                try:
                    await self.backoff(attempt, exc)
                except Stopping:
                    if self.control.stopping or not await self.paused():
                        raise
                    self.status.state = ConnectorState.STARTING

    async def _produce(self, records: list[SourceRecord], now: int) -> None:
        """Check, encode and send one ``read()`` result; queue ``(position, future)`` per record.

        Records the source could not parse (``error``) or that cannot be serialized go
        to the dead-letter topic; the others go through the batcher. ``_pending`` keeps
        one ``(position, future)`` per record in read order, so positions advance only
        over acknowledged records. A record breaking rule 3 raises :class:`ContractError`
        before anything of this read is sent.
        """
        encode = self.encoder.encode
        encoded: list[Encoded] = []
        positions: list[Any] = []
        failed: list[tuple[int, SourceRecord, DataError]] = []  # (index in read, record, why)
        only: list[int] = []  # indexes of position-only records
        previous = self._previous
        for record in records:
            position = record.position
            if not record.produce:
                if position is None:
                    raise ContractError(
                        f"source {self.name} broke the connector contract: a position-only "
                        "record (SourceRecord.position_only) carries no position"
                    )
                only.append(len(positions))
                positions.append(position)
                previous = position
                continue
            if record.error is not None:
                failed.append((len(positions), record, DataError(record.error)))
                positions.append(position)
                continue
            if record.identity is None and (position is None or position == previous):
                raise ContractError(shared_position_message(self.name, record, previous))
            previous = position
            try:
                encoded.append(encode(record, now))
            except DataError as exc:
                failed.append((len(positions), record, exc))
            positions.append(position)
        self._previous = previous
        self.status.records_in += len(records) - len(only)
        if self.fence is not None:
            await self.fence()  # the gateway cluster's lease: no write from a stale owner
        futures = await self.batcher.produce(encoded)
        if failed or only:
            futures = await self._with_dead_letters(futures, failed, only, len(positions))
        self._pending.extend(zip(positions, futures, strict=True))
        while len(self._pending) >= MAX_IN_FLIGHT:
            await asyncio.wait([self._pending[0][1]])
            await self._advance(force=False)

    async def _with_dead_letters(
        self,
        futures: list[asyncio.Future[Any]],
        failed: list[tuple[int, SourceRecord, DataError]],
        only: list[int],
        total: int,
    ) -> list[asyncio.Future[Any]]:
        """Send the failed records to the dead-letter topic; all futures in read order
        (a done one for each position-only record)."""
        merged: list[Any] = [None] * total
        if only:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
                self._done.set_result(None)
            for index in only:
                merged[index] = self._done
        for index, record, error in failed:
            raw = record.value
            if not isinstance(raw, bytes | None):
                raw = raw.encode() if isinstance(raw, str) else repr(raw).encode()
            merged[index] = await self.dead_letter(
                None, raw, list(record.headers), error=error, attempts=1, original=None
            )
            self._dead.add(merged[index])
        produced = iter(futures)
        return [next(produced) if future is None else future for future in merged]

    async def _advance(self, *, force: bool) -> None:
        """Move the acknowledged position over every leading acknowledged record; save it."""
        pending, dead, only = self._pending, self._dead, self._done
        before, dead_passed = len(pending), 0
        if dead or only is not None:  # dead letters and position-only records are not "out"
            while pending and pending[0][1].done():
                position, future = pending.popleft()
                future.result()  # a failed send raises here: the position never passes it
                if position is not None:
                    self._acked = position
                if future is only:
                    dead_passed += 1
                elif future in dead:
                    dead.discard(future)
                    dead_passed += 1
        else:
            while pending and pending[0][1].done():
                position, future = pending.popleft()
                future.result()  # a failed send raises here: the position never passes it
                if position is not None:
                    self._acked = position
        if before != len(pending):
            self.status.records_out += before - len(pending) - dead_passed
        due = time.monotonic() - self._last_save >= self.shared.runtime.position_interval
        if self._acked != self._saved and (force or due):
            await self.positions.save(self.name, self._acked)
            self._saved = self.status.position = self._acked
            self._last_save = time.monotonic()
            await self.source.ack(self._acked)

    async def _drain(self) -> None:
        if self._pending:
            await asyncio.wait({future for _, future in self._pending})
        await self._advance(force=True)


class _CountedPush:
    """The push target bound to a source's ``context.push``: counts each pushed batch in
    the source's status, and refuses pushes while the source is paused (retriable: an
    HTTP source answers 503, so senders try again)."""

    def __init__(self, pusher: Pusher, worker: SourceWorker) -> None:
        self.pusher = pusher
        self.worker = worker

    async def __call__(self, records: Sequence[SourceRecord], ack_timeout: float) -> Any:
        status = self.worker.status
        if self.worker.control.pausing:
            raise RetriableError(f"source {self.worker.name} is paused", retry_after=1.0)
        status.records_in += len(records)
        deliveries = await self.pusher(records, ack_timeout)
        status.records_out += len(deliveries)
        status.last_record_ms = int(time.time() * 1000)
        return deliveries
