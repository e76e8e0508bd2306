"""Dead letters: list them, and send them back through their connector once the cause is fixed.

A connector's dead letters are the records on its ``dead_letter_topic`` whose
``backbone.error.connector`` header names it (several connectors may share one
topic). Progress of redrives is the consumer group ``backbone.<name>.redrive`` on
that topic: a record below its committed offset was redriven; one above is pending.

How a redrive delivers (:func:`redrive`), and why:

- **a sink's** dead letters are written **through the sink** (the configured
  connector, its options, retries and batching), as the records they were
  (original topic, partition, offset, key, value and headers, without the
  ``backbone.error.*``/``backbone.original.*`` headers). Only that sink sees them
  again: re-publishing to the original topic would hand them a second time to
  every other consumer of the topic, which already processed them.
- **a processor's** are run through the processor again (its outputs produced).
- **a source's** never reached any topic (the source could not parse or encode
  them): they are **re-published to the source's topic** as they are (raw value,
  key and headers), so every consumer gets them for the first time. There is no
  way to run raw input through a source again.

**One record** (``only=(partition, offset)``, the console's "Redrive" on one dead
letter) is delivered the same way, read through the group
``backbone.<name>.redrive.one`` (moved to that record first) so the other pending
ones stay pending. It counts as redriven (the redrive group moves past it) when it
was the first pending one of its partition; otherwise it stays listed as pending,
and a later redrive of all delivers it once more (at-least-once).

A record that fails again goes back to the dead-letter topic (a new record, with
the new error) and is counted in ``failed_again``; the group moves past the old
copy either way, so each redrive handles what is pending once and ends: it stops
at the topic's end offsets taken when it began.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Literal

from aiokafka import TopicPartition

from backbone.assembly import processor_path, processor_worker, sink_worker
from backbone.clients import KafkaClients
from backbone.connector import SinkRecord
from backbone.consumers import ConsumingWorker, SinkWorker
from backbone.errors import BackboneError
from backbone.kafka_admin import KafkaAdmin, commit_offsets, read_ranges
from backbone.processor_worker import ProcessorWorker
from backbone.registry import Registry
from backbone.settings import Config
from backbone.views import DeadLetterView, RecordView, RedriveResult
from backbone.worker import ConnectorStatus, Control, Shared

__all__ = ["dead_letter_topic", "dead_letters", "redrive", "redrive_group", "restore"]

_ERROR = "backbone.error."
_ORIGINAL = "backbone.original."


def redrive_group(name: str) -> str:
    """The consumer group that remembers how far ``name``'s dead letters were redriven."""
    return f"backbone.{name}.redrive"


def dead_letter_topic(config: Config, name: str) -> tuple[str, str]:
    """``(role, topic)`` of connector ``name``; :class:`BackboneError` if it has none."""
    for section, role in (("sources", "source"), ("sinks", "sink"), ("processors", "processor")):
        entry = getattr(config, section).get(name)
        if entry is None:
            continue
        if entry.dead_letter_topic is None:
            raise BackboneError(f"{role} {name} has no dead_letter_topic in {config.file}")
        return role, entry.dead_letter_topic
    raise BackboneError(f"{config.file} has no connector {name!r}")


def _headers(record: Any) -> dict[str, str]:
    return {k: bytes(v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def restore(record: SinkRecord) -> SinkRecord:
    """The record as it was before it was dead-lettered (see the module docstring)."""
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    topic = headers.get("backbone.original.topic")
    partition = _int(headers.get("backbone.original.partition"))
    offset = _int(headers.get("backbone.original.offset"))
    return SinkRecord(
        topic=topic or record.topic,
        partition=partition if partition is not None else record.partition,
        offset=offset if offset is not None else record.offset,
        key=record.key,
        value=record.value,
        headers=[(k, v) for k, v in record.headers if not k.startswith((_ERROR, _ORIGINAL))],
        timestamp_ms=record.timestamp_ms,
    )


def _mine(name: str, records: list[SinkRecord]) -> list[SinkRecord]:
    wanted = name.encode()
    return [
        restore(r)
        for r in records
        if any(k == "backbone.error.connector" and v == wanted for k, v in r.headers)
    ]


async def dead_letters(
    cluster: KafkaAdmin, config: Config, name: str, *, pending: bool = True, limit: int = 100
) -> list[DeadLetterView]:
    """Dead letters of ``name``, oldest first: the pending ones (or all), at most ``limit``."""
    _, topic = dead_letter_topic(config, name)
    tps = await cluster.partitions(topic)
    starts, ends = await cluster.offsets(tps)
    done = await cluster.committed(redrive_group(name))
    firsts = {tp: max(done.get(tp, 0), starts[tp]) if pending else starts[tp] for tp in tps}
    records = await read_ranges(
        cluster.clients, {tp: (firsts[tp], ends[tp]) for tp in tps}, within=15.0
    )
    views = []
    for m in sorted(records, key=lambda m: (m.timestamp, m.partition, m.offset)):
        headers = _headers(m)
        if headers.get("backbone.error.connector") != name:
            continue
        views.append(
            DeadLetterView(
                record=RecordView.of(
                    m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, m.headers
                ),
                connector=name,
                error_class=headers.get("backbone.error.class"),
                error_message=headers.get("backbone.error.message"),
                attempts=_int(headers.get("backbone.error.attempts")),
                original_topic=headers.get("backbone.original.topic"),
                original_partition=_int(headers.get("backbone.original.partition")),
                original_offset=_int(headers.get("backbone.original.offset")),
                redriven=m.offset < done.get(TopicPartition(m.topic, m.partition), -1),
            )
        )
        if len(views) >= limit:
            break
    return views


class _Tally:
    """Counts what a redrive worker handled and the errors of what failed again."""

    def __init__(self) -> None:
        self.records = 0
        self.errors: list[str] = []

    def failed(self, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        if text not in self.errors:
            self.errors.append(text)


class _SinkRedrive(SinkWorker):
    def __init__(self, name: str, *, tally: _Tally, **common: Any) -> None:
        super().__init__(name, **common)
        self.tally = tally

    async def handle(self, records: list[SinkRecord]) -> None:
        mine = _mine(self.name, records)
        self.tally.records += len(mine)
        if mine:
            await super().handle(mine)

    async def dead_letter(self, *args: Any, error: BaseException, **kw: Any) -> Any:
        self.tally.failed(error)
        return await super().dead_letter(*args, error=error, **kw)


class _ProcessorRedrive(ProcessorWorker):
    def __init__(self, name: str, *, tally: _Tally, **common: Any) -> None:
        super().__init__(name, **common)
        self.tally = tally

    async def handle(self, records: list[SinkRecord]) -> None:
        mine = _mine(self.name, records)
        self.tally.records += len(mine)
        if mine:
            await super().handle(mine)

    async def dead_letter(self, *args: Any, error: BaseException, **kw: Any) -> Any:
        self.tally.failed(error)
        return await super().dead_letter(*args, error=error, **kw)


class _Republish(ConsumingWorker):
    """A source's dead letters, produced again to the source's topic."""

    role = "source"

    def __init__(self, name: str, *, topic: str, tally: _Tally, **common: Any) -> None:
        super().__init__(name, **common)
        self.topic = topic
        self.tally = tally

    async def handle(self, records: list[SinkRecord]) -> None:
        mine = _mine(self.name, records)
        self.tally.records += len(mine)
        send = self.shared.producer.send
        futures = [
            await send(self.topic, value=r.value, key=r.key, headers=r.headers) for r in mine
        ]
        await asyncio.gather(*futures)
        self.status.records_out += len(mine)


async def redrive(
    clients: KafkaClients,
    config: Config,
    registry: Registry,
    name: str,
    *,
    control: Control | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    only: tuple[int, int] | None = None,
) -> RedriveResult:
    """Send ``name``'s pending dead letters back (see the module docstring); with
    ``only=(partition, offset)`` just that one record of the dead-letter topic.

    ``progress(done, total)`` is called as dead-letter records are read (``total``:
    records on the topic to go through, all connectors' included).
    """
    role, topic = dead_letter_topic(config, name)
    group = redrive_group(name)
    async with KafkaAdmin(clients) as cluster:
        tps = await cluster.partitions(topic)
        starts, ends = await cluster.offsets(tps)
        done = await cluster.committed(group)
    total = sum(max(ends[tp] - max(done.get(tp, 0), starts[tp]), 0) for tp in tps)
    stop_at = dict(ends)
    chosen = None
    if only is not None:
        partition, offset = only
        chosen = TopicPartition(topic, partition)
        if chosen not in ends or not starts[chosen] <= offset < ends[chosen]:
            raise BackboneError(
                f"{topic} has no record at partition {partition} offset {offset} "
                f"(dead letters of {name})"
            )
        main, group, total = group, f"{group}.one", 1
        stop_at = {tp: offset + 1 if tp == chosen else ends[tp] for tp in tps}
        await commit_offsets(
            clients, group, {tp: offset if tp == chosen else ends[tp] for tp in tps}
        )
    producer = clients.producer(acks="all", enable_idempotence=config.broker.idempotence)
    await producer.start()
    status = ConnectorStatus(name, role)
    tally = _Tally()
    control = control or Control()
    try:
        shared = Shared(
            producer,
            clients.bootstrap,
            config.runtime,
            asyncio.Event(),
            random.Random(),
            kafka=clients,
        )
        common: dict[str, Any] = {
            "shared": shared,
            "status": status,
            "control": control,
            "topics": [topic],
            "start": "earliest",
            "group": group,
            "stop_at": stop_at,
            "tally": tally,
        }
        worker: ConsumingWorker
        mode: Literal["sink", "processor", "republish"]
        if role == "sink":
            mode = "sink"
            worker = sink_worker(config, registry, name, worker=_SinkRedrive, **common)
        elif role == "processor":
            mode = "processor"
            processor_path(config)
            worker = processor_worker(config, name, worker=_ProcessorRedrive, **common)
        else:
            mode = "republish"
            source = config.sources[name]
            worker = _Republish(
                name,
                topic=source.topic,
                retry=source.retry,
                dead_letter_topic=None,
                **common,
            )
        task = asyncio.create_task(worker.run())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.25)
                progress(status.records_in, total)
        finally:
            if not task.done():
                control.stop()
                await asyncio.gather(task, return_exceptions=True)
        task.result()
    finally:
        await producer.stop()
    failed = status.dead_lettered
    if chosen is not None and only is not None and tally.records == 1:
        first_pending = max(done.get(chosen, 0), starts[chosen])
        if only[1] == first_pending:
            await commit_offsets(clients, main, {chosen: only[1] + 1})  # now it is redriven
    return RedriveResult(
        connector=name,
        mode=mode,
        records=tally.records,
        delivered=tally.records - failed,
        failed_again=failed,
        errors=tally.errors,
    )
