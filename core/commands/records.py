"""``backbone produce`` (lines of stdin -> records), ``backbone consume`` (records -> lines)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import typer
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from backbone.clients import stop_consumer
from backbone.commands.common import (
    BOOTSTRAP_OPTION,
    CONFIG_OPTION,
    DEBUG_OPTION,
    LOG_FORMAT_OPTION,
    QUIET_LOG_LEVEL_OPTION,
    LogFormat,
    LogLevel,
    UsageError,
    load,
    parse_datetime,
    run,
)

__all__ = ["consume", "produce"]


async def _stdin_lines(separator: bytes = b"\n") -> AsyncIterator[bytes]:
    """Lines of standard input (without the separator), read in a thread in 64 KiB chunks."""
    fd = sys.stdin.fileno()
    rest = b""
    while True:
        chunk = await asyncio.to_thread(os.read, fd, 65536)
        if not chunk:
            break
        lines = (rest + chunk).split(separator)
        rest = lines.pop()
        for line in lines:
            yield line
    if rest:
        yield rest


def _headers(pairs: list[str]) -> list[tuple[str, bytes]]:
    headers = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--header expects NAME=VALUE (got {pair!r})")
        headers.append((name, value.encode()))
    return headers


def produce(
    topic: str = typer.Argument(..., help="The topic to write to (it must exist)."),
    key: str | None = typer.Option(None, "--key", "-k", help="The key of every record."),
    key_separator: str | None = typer.Option(
        None,
        "--key-separator",
        help="Split each line at the first SEP into key and value (e.g. ':').",
    ),
    headers: list[str] = typer.Option(
        [], "--header", "-H", help="A header NAME=VALUE on every record (repeatable)."
    ),
    partition: int | None = typer.Option(
        None, "--partition", "-p", min=0, help="Write to this partition (default: by key)."
    ),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Write one record per line of standard input to TOPIC (blank lines are skipped).

    Records are acknowledged by every replica (acks=all) before the command exits 0
    and prints how many it wrote.
    """

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        if key is not None and key_separator is not None:
            raise UsageError("give either --key or --key-separator, not both")
        extra = _headers(headers)
        loaded = load(config, bootstrap)
        idempotence = loaded.broker.idempotence if loaded is not None else True
        async with connect(loaded, bootstrap) as target:
            async with KafkaAdmin(target.clients, target.data_dir) as cluster:
                partitions = await cluster.partitions(topic)
            if partition is not None and partition >= len(partitions):
                raise UsageError(
                    f"--partition {partition}: topic {topic!r} has {len(partitions)} partition(s)"
                )
            producer = target.clients.producer(
                client_id="backbone.cli", acks="all", enable_idempotence=idempotence, linger_ms=5
            )
            await producer.start()
            count = 0
            try:
                sent: list[asyncio.Future[Any]] = []
                fixed_key = key.encode() if key is not None else None
                separator = key_separator.encode() if key_separator is not None else None
                async for line in _stdin_lines():
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if not line.strip():
                        continue
                    record_key = fixed_key
                    if separator is not None:
                        head, found, tail = line.partition(separator)
                        record_key, line = (head, tail) if found else (None, line)
                    sent.append(
                        await producer.send(
                            topic,
                            value=line,
                            key=record_key,
                            partition=partition,
                            headers=list(extra) or None,
                        )
                    )
                    if len(sent) >= 10_000:
                        await asyncio.gather(*sent)
                        count += len(sent)
                        sent = []
                await asyncio.gather(*sent)
                count += len(sent)
            finally:
                await producer.stop()
        typer.echo(f"produced {count} record(s) to {topic}")

    run(body, debug=debug, log_level=log_level, log_format=log_format)


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    """Moves newly assigned partitions of a group consumer to the requested start."""

    def __init__(self, start: Any) -> None:
        self.start = start
        self.done: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        todo = [tp for tp in assigned if tp not in self.done]
        if todo and self.start.consumer is not None:
            await self.start.apply(todo)
            self.done.update(todo)


class _Start:
    """Where each partition starts: beginning, an offset (negative: from the end), a time."""

    def __init__(self, *, beginning: bool, offset: int | None, when: dt.datetime | None) -> None:
        self.beginning = beginning
        self.offset = offset
        self.when = when
        self.consumer: AIOKafkaConsumer | None = None

    @property
    def explicit(self) -> bool:
        return self.beginning or self.offset is not None or self.when is not None

    async def apply(self, tps: list[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        if self.offset is not None:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                wanted = self.offset if self.offset >= 0 else ends[tp] + self.offset
                consumer.seek(tp, min(max(wanted, starts[tp]), ends[tp]))
        elif self.when is not None:
            millis = int(self.when.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: millis for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        else:
            await consumer.seek_to_beginning(*tps)


def consume(
    topic: str = typer.Argument(..., help="The topic to read."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the first record (the default without --group)."
    ),
    from_time: str | None = typer.Option(
        None, "--from", help="Start at the first record at or after this ISO-8601 date-time."
    ),
    offset: int | None = typer.Option(
        None, "--offset", help="Start at this offset of each partition (negative: N from the end)."
    ),
    partition: int | None = typer.Option(
        None, "--partition", "-p", min=0, help="Read only this partition."
    ),
    count: int | None = typer.Option(None, "-n", "--count", min=1, help="Stop after N records."),
    group: str | None = typer.Option(
        None,
        "--group",
        "-g",
        help="Read as this consumer group (committing what was printed; default start: its "
        "committed offsets).",
    ),
    output: str = typer.Option(
        "json", "--format", "-f", help="json: one JSON object per line; raw: the value only."
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Keep waiting for new records (default: stop at the end)."
    ),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Print the records of TOPIC, one JSON line each (topic, partition, offset,
    timestamp, key, value, headers), up to its end (or on with --follow)."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        if sum([from_beginning, from_time is not None, offset is not None]) > 1:
            raise UsageError("give at most one of --from-beginning, --from and --offset")
        if output not in ("json", "raw"):
            raise UsageError(f"--format must be json or raw (got {output!r})")
        if group is not None and partition is not None:
            raise UsageError("--partition cannot be combined with --group (the group assigns)")
        when = parse_datetime(from_time, "--from") if from_time is not None else None
        start = _Start(beginning=from_beginning, offset=offset, when=when)
        async with connect(load(config, bootstrap), bootstrap) as target:
            async with KafkaAdmin(target.clients, target.data_dir) as cluster:
                tps = await cluster.partitions(topic)
            if partition is not None:
                if partition >= len(tps):
                    raise UsageError(
                        f"--partition {partition}: topic {topic!r} has {len(tps)} partition(s)"
                    )
                tps = [TopicPartition(topic, partition)]
            consumer = target.clients.consumer(
                client_id="backbone.cli",
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            start.consumer = consumer
            if group is None:
                await consumer.start()
            try:
                if group is None:
                    consumer.assign(tps)
                    await start.apply(tps)
                else:
                    listener = _Seek(start) if start.explicit else None
                    consumer.subscribe([topic], listener=listener)
                    await consumer.start()
                await _print(consumer, group is not None, count, follow, output)
            finally:
                await stop_consumer(consumer)

    run(body, debug=debug, log_level=log_level, log_format=log_format)


async def _print(
    consumer: AIOKafkaConsumer, commit: bool, count: int | None, follow: bool, output: str
) -> None:
    from backbone.views import RecordView

    printed = 0
    ends: dict[TopicPartition, int] = {}
    stdout = sys.stdout.buffer
    while count is None or printed < count:
        if not follow:
            assigned = consumer.assignment()
            new = [tp for tp in assigned if tp not in ends]
            if new:
                ends.update(await consumer.end_offsets(new))
            if assigned:
                positions = {tp: await consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= ends[tp] for tp in assigned):
                    break
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        lines: list[bytes] = []
        done: dict[TopicPartition, int] = {}
        for tp in sorted(batches, key=lambda t: t.partition):
            for m in batches[tp]:
                if not follow and m.offset >= ends.get(tp, m.offset + 1):
                    break
                if count is not None and printed + len(lines) >= count:
                    break
                done[tp] = m.offset + 1
                if output == "raw":
                    lines.append((m.value or b"") + b"\n")
                else:
                    view = RecordView.of(
                        m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, m.headers
                    )
                    text = json.dumps(view.model_dump(), ensure_ascii=False)
                    lines.append(text.encode() + b"\n")
        if lines:
            stdout.write(b"".join(lines))
            stdout.flush()
            printed += len(lines)
        if commit and done:
            await consumer.commit(done)
