"""The consuming workers: sinks and processors read a consumer group ``backbone.<name>``.

- :class:`SinkWorker`: consumer group -> ``write(batch)`` -> ``precommit`` ->
  commit. Retriable errors back off; ``DataError`` isolates the bad records
  (one-at-a-time writes); failures that exhaust retries go to the dead-letter topic,
  or stop the sink without committing (``Sink.retries_exhausted = "fail"``).
- :class:`~backbone.processor_worker.ProcessorWorker` (its own module) runs on
  :class:`ConsumingWorker`: consumer group -> function or transforms -> producer;
  offsets are committed after every output was acknowledged.

Committing (:class:`ConsumingWorker`): at most every ``runtime.position_interval``
(after a handled batch, or while idle with handled offsets not all committed), as
Kafka Connect's ``offset.flush.interval.ms``, the worker asks
:meth:`ConsumingWorker.committable` which of the handled offsets may be committed
(a sink's ``precommit``: only what it made durable) and commits those. Before a
rebalance takes partitions away (``on_partitions_revoked``) and when it stops, it
calls :meth:`ConsumingWorker.release` (a sink's ``flush``) and commits what that
made durable. A lock keeps a batch, a commit and a revocation from interleaving; a
batch fetched before a revocation is dropped (the partitions' owner reads it
again from the committed offsets).

Sessions: ``open()`` runs once, then consumer sessions follow one another; a pause
ends the session (handled offsets released and committed, the consumer stopped,
the group left: see :meth:`ConsumingWorker.leave`) so the worker holds no
partitions and its offsets can be moved, and the next session starts on resume.
A bounded run (``stop_at``, a replay or a redrive) ends once every listed
partition committed up to its offset.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from backbone.clients import remove_static_member
from backbone.connector import Sink, SinkRecord, TopicPartition
from backbone.errors import DataError, FatalError, RetriableError
from backbone.worker import ConnectorState, Stopping, Worker

__all__ = ["ConsumingWorker", "SinkWorker"]

IN_FLIGHT = 10_000
"""Most records of submitted batches (:meth:`ConsumingWorker.submit`) whose outputs are not
all acknowledged yet: the next batch is transformed while earlier ones are on the wire."""


class _StartListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment: applies ``start: <timestamp>`` to partitions the group has no
    committed offset for, and pauses partitions already at their ``stop_at`` offset."""

    def __init__(self, worker: ConsumingWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.revoked([TopicPartition(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        worker = self.worker
        consumer = worker.consumer
        if consumer is None:
            return
        start = worker.start
        stop_at = worker.stop_at
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is not None:
                worker.committed[TopicPartition(tp.topic, tp.partition)] = committed
            if stop_at is not None and tp in stop_at:
                if committed is not None and committed >= stop_at[tp]:
                    consumer.pause(tp)  # nothing (left) to deliver on it
                continue
            if committed is not None or isinstance(start, str):
                continue
            found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000)})
            if found.get(tp) is not None:
                consumer.seek(tp, found[tp].offset)
            else:  # nothing at or after the timestamp yet: start at today's end
                # (an explicit offset: aiokafka's lazy seek_to_end may be reset to earliest)
                ends = await consumer.end_offsets([tp])
                consumer.seek(tp, ends[tp])


def partition_order(tp: Any) -> tuple[str, int]:
    return tp.topic, tp.partition


def sink_record(m: Any) -> SinkRecord:
    """One consumed aiokafka message as a sink record."""
    return SinkRecord(
        m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or ()), m.timestamp
    )


def sink_records(batches: Mapping[Any, Sequence[Any]]) -> list[SinkRecord]:
    """The consumed messages as sink records, partition by partition (headers are aiokafka's
    ``(str, bytes)`` pairs already: copied as a list, not value by value)."""
    records: list[SinkRecord] = []
    append = records.append
    for tp in sorted(batches, key=partition_order):
        topic, partition = tp.topic, tp.partition
        for m in batches[tp]:
            headers = m.headers
            append(
                SinkRecord(
                    topic,
                    partition,
                    m.offset,
                    m.key,
                    m.value,
                    list(headers) if headers else [],
                    m.timestamp,
                )
            )
    return records


class ConsumingWorker(Worker):
    """A worker reading a consumer group ``backbone.<name>`` with manual commits.

    ``open()`` runs once, then consumer sessions follow one another: each starts a
    consumer (joining the group), hands batches to ``handle()`` and commits what
    :meth:`committable` allows, until a stop or a pause is requested; a pause ends the
    session (released, committed, the group left) and waits for resume. ``close()``
    runs once at the end.

    ``stop_at`` (``{TopicPartition: offset}``, for a bounded run such as a replay)
    delivers only records below each partition's offset and makes :meth:`run`
    return once every listed partition committed up to it. Checked per batch
    (its last offset), never per record.
    """

    def __init__(
        self,
        name: str,
        *,
        topics: Sequence[str],
        start: Any,
        stop_at: Mapping[TopicPartition, int] | None = None,
        group: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name, **common)
        self.topics = list(topics)
        self.start = start
        self.stop_at = (
            {TopicPartition(tp[0], tp[1]): end for tp, end in stop_at.items()}
            if stop_at is not None
            else None
        )
        self.group = group or f"backbone.{name}"
        self.consumer: AIOKafkaConsumer | None = None
        self.committed: dict[TopicPartition, int] = {}
        """Offsets this worker committed (or found committed at assignment), this session."""
        self._lock = asyncio.Lock()
        self._epoch = 0  # revocations so far: a batch fetched before one is dropped
        self._handled: dict[TopicPartition, int] = {}  # offset after the last handled record
        self._last_precommit = 0.0
        # batches submitted, oldest first: (outputs' futures, offsets handled once they are
        # all acknowledged, records_out to count then, records consumed)
        self._inflight: deque[
            tuple[Sequence[asyncio.Future[Any]], dict[TopicPartition, int], int, int]
        ] = deque()
        self._inflight_records = 0
        self._to_commit: dict[TopicPartition, int] = {}  # for the background commit
        self._committing: asyncio.Task[None] | None = None
        self._commit_error: BaseException | None = None

    @property
    def instance_id(self) -> str | None:
        """The consumer's ``group.instance.id`` (static membership), if this process has one."""
        instance = self.shared.instance
        return f"{instance}.{self.name}" if instance else None

    def _consumer(self) -> AIOKafkaConsumer:
        runtime = self.shared.runtime
        worker = self.shared.worker
        return self.shared.clients.consumer(
            client_id=f"backbone.{self.name}@{worker}" if worker else f"backbone.{self.name}",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="latest" if self.start == "latest" else "earliest",
            session_timeout_ms=int(runtime.session_timeout * 1000),
            heartbeat_interval_ms=int(runtime.heartbeat_interval * 1000),
            rebalance_timeout_ms=int(runtime.session_timeout * 1000),
            max_poll_records=runtime.max_batch,
            # static membership: a restarted gateway takes its partitions back at once
            group_instance_id=self.instance_id,
            **self.shared.consumer_options,
        )

    def lag(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """Per assigned partition: (committed offset, high watermark last seen); empty while
        the worker holds no partitions (paused, stopped, rebalancing)."""
        consumer = self.consumer
        if consumer is None:
            return {}
        return {
            TopicPartition(tp.topic, tp.partition): (
                self.committed.get(TopicPartition(tp.topic, tp.partition)),
                consumer.highwater(tp),
            )
            for tp in consumer.assignment()
        }

    @property
    def finished(self) -> bool:
        """With ``stop_at``: every listed partition committed up to its offset."""
        if self.stop_at is None:
            return False
        return all(self.committed.get(tp, -1) >= end for tp, end in self.stop_at.items())

    async def run(self) -> None:
        try:
            await self._open()
        except Stopping:  # stopped while open() was still retrying: a clean stop
            await self.close()
            return
        try:
            self.log.info(
                "%s %s started: group %s on %s",
                self.role,
                self.name,
                self.group,
                ", ".join(self.topics),
            )
            while not self.control.stopping and not self.finished:
                await self._session()
                if self.control.pausing and not self.control.stopping:
                    await self.paused()
        finally:
            try:
                await self.close()
            finally:
                self.log.info("%s %s stopped", self.role, self.name)

    async def _open(self) -> None:
        """``open()``; a pause requested meanwhile is waited out before it is retried."""
        while True:
            try:
                await self.open()
                return
            except Stopping:
                if self.control.stopping or not await self.paused():
                    raise
                self.status.state = ConnectorState.STARTING

    async def _session(self) -> None:
        """One consumer: join, deliver and commit until stopped, paused or finished; then
        release and commit what was handled (a clean end) and, for a pause, leave."""
        self.committed = {}
        self._handled = {}
        self._inflight.clear()
        self._inflight_records = 0
        self._to_commit = {}
        self._commit_error = None
        consumer = self.consumer = self._consumer()
        consumer.subscribe(self.topics, listener=_StartListener(self))
        try:
            await consumer.start()
        except BaseException:
            self.consumer = None
            await consumer.stop()
            raise
        try:
            self.status.state = ConnectorState.RUNNING
            await self._loop(consumer)
            async with self._lock:  # a clean end: make everything durable, commit it
                await self._settle(everything=True)
                await self._release(list(self._handled))
        finally:
            await self._stop_committing()
            await self.abandon()
            self._inflight.clear()
            self.consumer = None
            await consumer.stop()
        if self.control.pausing and not self.control.stopping:
            await self.leave()

    async def leave(self) -> None:
        """Leave the group after a pause, so it is empty and its offsets can be moved.

        A dynamic member left when its consumer stopped. A static member
        (``group.instance.id``) does not leave on stop, as in Kafka (a restarted
        gateway takes its partitions back at once), so it is removed by its instance id
        (LeaveGroup v3, as Kafka's ``removeMembersFromConsumerGroup``): a paused sink
        holds no partitions either way. On resume it joins again with the same id.
        """
        instance_id = self.instance_id
        if instance_id is None:
            return
        try:
            await remove_static_member(self.shared.clients, self.group, instance_id)
        except Exception as exc:  # the member then expires after runtime.session_timeout
            self.log.warning(
                "%s %s: could not leave group %s (%s: %s); it stays a member for up to %ss",
                self.role,
                self.name,
                self.group,
                type(exc).__name__,
                exc,
                self.shared.runtime.session_timeout,
            )

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        size, wait = self.batching()
        inflight = self._inflight
        while not self.control.interrupted:
            epoch = self._epoch
            # while outputs are on the wire, take only what is fetched already (else settle)
            batches = await consumer.getmany(timeout_ms=0 if inflight else 200, max_records=size)
            if batches and wait > 0:
                await self._fill(batches, size, wait)
            async with self._lock:
                if epoch != self._epoch:  # fetched across a revocation: read it again
                    self._rewind(consumer, batches)
                    continue
                reached = self._bound(batches) if self.stop_at is not None else {}
                if not batches:
                    if inflight:  # nothing new to work on: wait for the oldest batch's acks
                        await self._settle(wait=True)
                        if self._commit_due():
                            await self._commit_soon()
                        continue
                    if self.stop_at is not None:
                        reached.update(await self._caught_up())
                        self._handled.update(reached)
                        if self._at_stop():
                            await self._release(list(self._handled))
                            if self.finished:
                                return
                    if self._commit_due() and self._uncommitted():
                        await self._commit()
                    continue
                records = self.records(batches)
                status = self.status
                status.records_in += len(records)
                status.last_record_ms = max(m[-1].timestamp for m in batches.values())
                try:
                    futures, count = await self.submit(records)
                except Stopping:  # paused or stopped mid-batch: nothing committed
                    return
                offsets = {
                    TopicPartition(tp.topic, tp.partition): messages[-1].offset + 1
                    for tp, messages in batches.items()
                }
                offsets.update(reached)
                inflight.append((futures, offsets, count, len(records)))
                self._inflight_records += len(records)
                await self._settle(wait=self._inflight_records > IN_FLIGHT)
                if self._commit_due():
                    await self._commit_soon()

    async def _settle(self, *, wait: bool = False, everything: bool = False) -> None:
        """Count the submitted batches whose outputs are all acknowledged as handled, oldest
        first, so a handled offset never passes a record whose outputs are still on the wire
        (at-least-once); ``wait`` for the oldest batch, or for ``everything``.

        A failed output raises its error, and its batch stays first: nothing after it is
        handled (or committed) and the worker stops; its records are delivered again.
        """
        inflight = self._inflight
        while inflight:
            futures, offsets, count, consumed = inflight[0]
            pending = [future for future in futures if not future.done()]
            if pending:
                if not (wait or everything):
                    return
                await asyncio.wait(pending)
                wait = False
            for future in futures:
                future.result()  # raises the output's error
            inflight.popleft()
            self._inflight_records -= consumed
            self._handled.update(offsets)
            self.status.records_out += count

    def _rewind(self, consumer: AIOKafkaConsumer, batches: dict[Any, list[Any]]) -> None:
        """A batch fetched across a rebalance is dropped; the partitions of it this worker
        holds again are sought back to their committed offset (read at assignment), as
        aiokafka's position already moved past the dropped records."""
        assigned = consumer.assignment()
        for kafka_tp, messages in batches.items():
            if kafka_tp in assigned and messages:
                tp = TopicPartition(kafka_tp.topic, kafka_tp.partition)
                consumer.seek(kafka_tp, self.committed.get(tp, messages[0].offset))

    def _uncommitted(self) -> bool:
        """Some handled offset is not committed yet."""
        committed = self.committed
        return any(committed.get(tp) != offset for tp, offset in self._handled.items())

    def _at_stop(self) -> bool:
        """With ``stop_at``: every listed partition handled up to its offset."""
        assert self.stop_at is not None
        return all(self._handled.get(tp, -1) >= end for tp, end in self.stop_at.items())

    def _bound(self, batches: dict[Any, list[Any]]) -> dict[TopicPartition, int]:
        """Cut each partition's batch at its ``stop_at`` offset and pause the partitions
        that got there; their ``stop_at`` offsets (handled once the batch is)."""
        assert self.stop_at is not None and self.consumer is not None
        reached: dict[TopicPartition, int] = {}
        for kafka_tp in list(batches):
            tp = TopicPartition(kafka_tp.topic, kafka_tp.partition)
            end = self.stop_at.get(tp)
            messages = batches[kafka_tp]
            if end is None or messages[-1].offset < end - 1:
                continue
            self.consumer.pause(kafka_tp)
            reached[tp] = end
            kept = messages[: bisect.bisect_left(messages, end, key=lambda m: m.offset)]
            if kept:
                batches[kafka_tp] = kept
            else:
                del batches[kafka_tp]
        return reached

    async def _caught_up(self) -> dict[TopicPartition, int]:
        """Partitions whose position passed their ``stop_at`` offset without a record at
        it (a compacted topic's gap, or already there at assignment): paused, with the
        offset that counts as handled."""
        assert self.stop_at is not None and self.consumer is not None
        reached: dict[TopicPartition, int] = {}
        for kafka_tp in self.consumer.assignment():
            tp = TopicPartition(kafka_tp.topic, kafka_tp.partition)
            end = self.stop_at.get(tp)
            if end is None or self._handled.get(tp, -1) >= end:
                continue
            if self.committed.get(tp, -1) >= end or await self.consumer.position(kafka_tp) >= end:
                self.consumer.pause(kafka_tp)
                reached[tp] = end
        return reached

    async def _committable(
        self, partitions: Collection[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """What :meth:`committable` allows of the handled offsets (of ``partitions``) that is
        not committed yet."""
        self._last_precommit = time.monotonic()
        allowed = await self.committable(dict(self._handled))
        offsets = {}
        for tp, offset in allowed.items():
            tp = TopicPartition(*tp)
            if partitions is not None and tp not in partitions:
                continue
            if offset > self.committed.get(tp, -1) and offset <= self._handled.get(tp, -1):
                offsets[tp] = offset
        return offsets

    async def _commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit what :meth:`committable` allows of the handled offsets (of ``partitions``),
        after the background commit (if one runs), and wait for the broker's answer."""
        await self._commits_done()
        offsets = await self._committable(partitions)
        if offsets:
            await self._send_commit(offsets)

    def _commit_due(self) -> bool:
        """``runtime.position_interval`` passed since :meth:`committable` was last asked (a
        commit per batch would cost a request and an fsync on the broker for every fetch)."""
        interval = self.shared.runtime.position_interval
        return time.monotonic() - self._last_precommit >= interval

    async def _commit_soon(self) -> None:
        """Ask :meth:`committable` now and commit what it allows in the background, one
        commit at a time and in order, while the next batch is handled."""
        if self._commit_error is not None:
            raise self._commit_error
        offsets = await self._committable()
        if not offsets:
            return
        self._to_commit.update(offsets)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._committer())

    async def _committer(self) -> None:
        """The background commit: sends what :meth:`_commit_soon` gathered until nothing
        is left; an error (other than a failed commit) is raised by the next batch."""
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            try:
                await self._send_commit(offsets)
            except Exception as exc:
                self._commit_error = exc
                return

    async def _commits_done(self) -> None:
        """Wait for the background commit; raise its error."""
        if self._committing is not None:
            await self._committing
            self._committing = None
        if self._commit_error is not None:
            raise self._commit_error

    async def _stop_committing(self) -> None:
        """Cancel the background commit (the session ends on an error)."""
        task, self._committing = self._committing, None
        self._to_commit = {}
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send_commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets``; a commit refused after a rebalance is logged, not raised."""
        assert self.consumer is not None
        try:
            await self.consumer.commit({KafkaPartition(*tp): off for tp, off in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:  # revoked meanwhile
            self.log.warning(
                "%s %s: commit failed (%s); records will be delivered again",
                self.role,
                self.name,
                exc,
            )
            return
        self.committed.update(offsets)

    async def _release(self, partitions: list[TopicPartition]) -> None:
        """:meth:`release` ``partitions`` and commit what that made durable."""
        if not partitions:
            return
        try:
            await self.release(partitions)
            await self._commit(partitions)
        except Exception as exc:
            self.log.warning(
                "%s %s: could not finish %s (%s: %s); their records will be delivered again",
                self.role,
                self.name,
                ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions),
                type(exc).__name__,
                exc,
            )

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        """A rebalance takes ``partitions`` away: wait for the outputs on the wire, release
        them and commit, first."""
        async with self._lock:
            self._epoch += 1
            try:
                await self._settle(everything=True)
                await self._commits_done()
            except Exception as exc:  # the worker's loop raises it and stops
                self.log.warning(
                    "%s %s: %s: %s; not committed",
                    self.role,
                    self.name,
                    type(exc).__name__,
                    exc,
                )
            await self._release([tp for tp in partitions if tp in self._handled])
            for tp in partitions:
                self._handled.pop(tp, None)
                self.committed.pop(tp, None)

    async def committable(
        self, offsets: Mapping[TopicPartition, int]
    ) -> Mapping[TopicPartition, int]:
        """Which handled ``offsets`` may be committed now (default: all of them)."""
        return offsets

    async def release(self, partitions: Collection[TopicPartition]) -> None:
        """Make what was handled for ``partitions`` durable (they are revoked, or we stop)."""

    def batching(self) -> tuple[int, float]:
        """Most records per ``handle`` call, and how long to wait for that many."""
        return self.shared.runtime.max_batch, 0.0

    async def _fill(self, batches: dict[Any, list[Any]], size: int, wait: float) -> None:
        """Poll more into ``batches`` until ``size`` records or ``wait`` seconds passed."""
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        count = sum(len(messages) for messages in batches.values())
        while count < size and not self.control.interrupted:
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
        """Called once, before the first consumer starts."""

    async def close(self) -> None:
        """Called once when the worker ends."""

    async def handle(self, records: list[SinkRecord]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def records(self, batches: Mapping[Any, Sequence[Any]]) -> list[Any]:
        """A fetched batch as :meth:`submit` takes it: sink records, partition by partition."""
        return sink_records(batches)

    async def submit(self, records: list[Any]) -> tuple[Sequence[asyncio.Future[Any]], int]:
        """Start handling a batch: the futures of its outputs still on the wire (the batch's
        offsets are handled once they are all acknowledged, while later batches go on) and
        the count to add to ``records_out`` then. By default :meth:`handle`, nothing left."""
        await self.handle(records)
        return (), 0

    async def abandon(self) -> None:
        """The session ends on an error: drop what :meth:`submit` still has under way."""

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

    async def committable(
        self, offsets: Mapping[TopicPartition, int]
    ) -> Mapping[TopicPartition, int]:
        return await self.sink.precommit(offsets)

    async def release(self, partitions: Collection[TopicPartition]) -> None:
        await self.sink.flush(partitions)

    def batching(self) -> tuple[int, float]:
        size = self.sink.batch_size or self.shared.runtime.max_batch
        return size, max(self.sink.batch_wait, 0.0)

    async def handle(self, records: list[SinkRecord]) -> None:
        futures: list[asyncio.Future[Any]] = []
        await self._deliver(records, futures)
        if futures:
            await asyncio.gather(*futures)
        self.status.records_out += len(records) - len(futures)  # the rest was dead-lettered

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
                if self.sink.retries_exhausted == "fail":
                    raise FatalError(
                        f"{exc} (still failing after {attempt} attempts); stopped without "
                        "committing: the records are delivered again after a restart"
                    ) from exc
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
