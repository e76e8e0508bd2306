"""The connector conformance suite: checks every connector kind must pass.

Connector test modules call these helpers with a *factory* (a zero-argument
callable returning a fresh, unopened connector instance) — e.g.::

    from tests import conformance

    async def test_sql_source_conformance(tmp_path):
        def make():
            return SqlSource(SqlSourceOptions(url=..., table="t"), conformance.context(tmp_path))

        await conformance.check_source(make, minimum=10)

Source checks (:func:`check_source` runs them all):

- resume from position: a new instance opened with the position of record k
  returns exactly the records after k (:func:`check_source_resumes`);
- no position advance on failure: a run that read records but never acked is
  replayed exactly by a new instance opened from the same position (the runtime
  reopens from the last *acked* position after a failed produce or a crash)
  (:func:`check_source_replays`);
- cancellation mid-read: once the source is drained, a ``read()`` that is
  suspended is cancelled; ``CancelledError`` propagates, the instance still reads
  and ``close()`` works, twice (:func:`check_source_cancellation`);
- ``read()`` returns within a bound when idle, positions are JSON round-trippable.

Sink checks: :func:`check_sink_writes` (write, read back, close twice) and
:func:`check_sink_data_error_is_all_or_nothing`. Retrying a ``RetriableError`` is
the runtime's job, not the connector's (the sink worker calls ``write`` again with
the same batch): it is tested once, in ``tests/core/test_runtime_behaviour.py``.
What a sink must guarantee for retries and dead-lettering to be exact is that a
``write`` that raised left nothing of its batch behind — the all-or-nothing check.

Pipeline helpers (the runtime with a real broker): :func:`running` runs a config
in-process, :func:`consume` reads a topic with aiokafka, :class:`Gateway` runs
``backbone run`` as a subprocess that a test can SIGKILL and restart (the
at-least-once-through-a-crash check), :func:`broker_yaml` writes the ``broker:``
section for Tansu or the embedded broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from backbone import ConnectorContext, DataError, Sink, SinkRecord, Source, SourceRecord
from backbone.config import load_config
from backbone.registry import Registry
from backbone.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = Path(sys.executable).parent / "backbone"

SourceFactory = Callable[[], Source[Any]]
SinkFactory = Callable[[], Sink[Any]]


def context(tmp_path: Path, name: str = "conformance") -> ConnectorContext:
    """A connector context rooted in ``tmp_path``."""
    return ConnectorContext(
        name=name,
        base_dir=tmp_path,
        state_dir=tmp_path / "state" / name,
        logger=logging.getLogger(f"tests.conformance.{name}"),
    )


def identity(record: SourceRecord) -> str:
    """What makes two source records "the same" for these checks: key, value, topic."""
    value = record.value
    if isinstance(value, bytes):
        value = {"bytes": value.hex()}
    key = record.key.hex() if isinstance(record.key, bytes) else record.key
    return json.dumps([key, value, record.topic], sort_keys=True, default=str)


async def read_at_least(
    source: Source[Any], minimum: int, *, within: float = 20.0
) -> list[SourceRecord]:
    """Call ``read()`` until at least ``minimum`` records came (or fail after ``within`` s)."""
    records: list[SourceRecord] = []
    deadline = time.monotonic() + within
    while len(records) < minimum:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(records)} of {minimum} records within {within}s")
        # one read may take up to 5 s however short ``within`` is (a loaded machine):
        # running out of time is then reported by the check above, not as a timeout
        records += await asyncio.wait_for(source.read(), max(within, 5.0))
    return records


Identity = Callable[[SourceRecord], Any]


async def check_source_resumes(
    make: SourceFactory, *, minimum: int, same: Identity = identity
) -> None:
    """Resume from position: records after position k are exactly records[k+1:].

    ``same`` maps a record to what must be equal on replay (default :func:`identity`;
    pass one that leaves out volatile fields such as read times).
    """
    first = make()
    await first.open(None)
    try:
        records = await read_at_least(first, minimum)
    finally:
        await first.close()
    for record in records:
        assert json.loads(json.dumps(record.position)) == record.position, record.position
    cut = minimum // 2
    position = records[cut].position
    assert position is not None, "source records must carry a position"
    second = make()
    await second.open(position)
    try:
        again = await read_at_least(second, minimum - cut - 1)
    finally:
        await second.close()
    expected = [same(r) for r in records[cut + 1 : minimum]]
    assert [same(r) for r in again[: len(expected)]] == expected


async def check_source_replays(
    make: SourceFactory, *, minimum: int, same: Identity = identity
) -> None:
    """No position advance on failure: a read that was never acknowledged is read again.

    The runtime acks a position only after the broker stored every record up to it;
    when producing fails (or the process dies) it reopens the source from the last
    *acked* position. This check injects that failure: an instance opened from
    position P reads records and is closed without any ``ack`` (the failed run);
    a second instance opened from the same P must return the same records. The
    same is checked for the very first start (``open(None)`` twice, no ack). A
    source that moved a cursor of its own on ``read`` (in ``state_dir``, in the
    database...) instead of on ``ack`` fails here.
    """
    seen = []
    for _ in range(2):
        source = make()
        await source.open(None)
        try:
            seen.append([same(r) for r in await read_at_least(source, minimum)][:minimum])
        finally:
            await source.close()  # no ack: this run "failed"
    assert seen[0] == seen[1], "open(None) twice without an ack gave different records"
    source = make()
    await source.open(None)
    try:
        records = await read_at_least(source, minimum)
    finally:
        await source.close()
    cut = minimum // 2
    position = records[cut].position
    assert position is not None, "source records must carry a position"
    again = []
    for _ in range(2):
        source = make()
        await source.open(position)
        try:
            got = await read_at_least(source, minimum - cut - 1)
            again.append([same(r) for r in got][: minimum - cut - 1])
        finally:
            await source.close()  # no ack again
    assert again[0] == again[1], (
        f"reopening from {position!r} after a run that never acked gave different records"
    )


async def check_source_cancellation(
    make: SourceFactory,
    *,
    bound: float = 5.0,
    drain_within: float = 20.0,
    tries: int = 200,
    more: Callable[[], Awaitable[None]] | None = None,
    more_within: float = 20.0,
) -> None:
    """Cancelling a pending ``read()`` propagates ``CancelledError``; the source still works.

    1. Drain: ``read()`` until one returns ``[]`` (the source is idle) or
       ``drain_within`` seconds passed.
    2. Start a ``read()`` and let the loop run it to its first suspension (one
       ``sleep(0)``); if it already returned, start another — up to ``tries``
       times. A read that never suspends fails the check: there is nothing to
       cancel and such a read blocks the event loop.
    3. Cancel the pending read: it must end with ``CancelledError`` within
       ``bound`` seconds (not swallow it, not return a batch).
    4. The same instance still works: a later ``read()`` returns a list within
       ``bound``; with ``more`` (a coroutine function adding new data to the
       system the source reads), the source must return at least one new record
       within ``more_within`` seconds.
       Then ``close()`` works, twice.
    """
    source = make()
    await source.open(None)
    try:
        deadline = time.monotonic() + drain_within
        while await asyncio.wait_for(source.read(), bound) and time.monotonic() < deadline:
            pass
        task: asyncio.Task[list[SourceRecord]] | None = None
        for _ in range(tries):
            task = asyncio.create_task(source.read())
            await asyncio.sleep(0)  # the read runs up to its first real await
            if not task.done():
                break
            assert isinstance(task.result(), list)
            task = None
        assert task is not None, f"read() never stayed pending in {tries} tries: nothing to cancel"
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=bound)
        assert done, f"read() did not end within {bound}s of being cancelled"
        if not task.cancelled():
            raise AssertionError(
                f"read() swallowed the cancellation and returned {task.result()!r}"
            )
        if more is not None:
            await more()
            assert await read_at_least(source, 1, within=more_within)
        else:
            assert isinstance(await asyncio.wait_for(source.read(), bound), list)
    finally:
        await source.close()
    await source.close()


async def check_source_idle_read(make: SourceFactory, *, drain: int, bound: float = 5.0) -> None:
    """After ``drain`` records, ``read()`` returns within ``bound`` seconds (maybe empty)."""
    source = make()
    await source.open(None)
    try:
        if drain:
            await read_at_least(source, drain)
        records = await asyncio.wait_for(source.read(), bound)  # TimeoutError past the bound
        assert isinstance(records, list)
    finally:
        await source.close()


async def check_source(make: SourceFactory, *, minimum: int, same: Identity = identity) -> None:
    """Every source check, in order."""
    await check_source_resumes(make, minimum=minimum, same=same)
    await check_source_replays(make, minimum=minimum, same=same)
    await check_source_cancellation(make)


def sink_record(value: Any, offset: int, *, topic: str = "t", key: Any = None) -> SinkRecord:
    """A sink record holding ``value`` as JSON."""
    return SinkRecord(
        topic=topic,
        partition=0,
        offset=offset,
        key=None if key is None else json.dumps(key).encode(),
        value=None if value is None else json.dumps(value).encode(),
        headers=[("ce_id", str(offset).encode())],
        timestamp_ms=1_700_000_000_000 + offset,
    )


async def check_sink_writes(
    make: SinkFactory,
    records: Sequence[SinkRecord],
    read_back: Callable[[], Awaitable[list[Any]]],
    expected: list[Any],
) -> None:
    """write() returns after the batch is readable in the target; close() twice works."""
    sink = make()
    await sink.open()
    try:
        await sink.write(list(records))
        assert await read_back() == expected
    finally:
        await sink.close()
        await sink.close()


async def check_sink_data_error_is_all_or_nothing(
    make: SinkFactory,
    good_then_bad: Sequence[SinkRecord],
    read_back: Callable[[], Awaitable[list[Any]]],
) -> None:
    """A batch with a bad record raises DataError and writes nothing of the batch."""
    sink = make()
    await sink.open()
    try:
        before = await read_back()
        try:
            await sink.write(list(good_then_bad))
        except DataError:
            pass
        else:
            raise AssertionError("write() of a batch with a bad record did not raise DataError")
        assert await read_back() == before
    finally:
        await sink.close()


# ----------------------------------------------------------------- pipeline helpers


def broker_yaml(
    broker: str, *, tansu: Any = None, data_dir: Path | None = None, port: int = 0
) -> str:
    """The ``broker:`` section (YAML flow text) for ``"tansu"`` or ``"embedded"``."""
    if broker == "tansu":
        return f'broker: {{bootstrap: ["{tansu.bootstrap}"], idempotence: false}}\n'
    assert data_dir is not None
    return f'broker: {{embedded: {{listen: "127.0.0.1:{port}", data_dir: "{data_dir}"}}}}\n'


FAST_RUNTIME = (
    "runtime: {session_timeout: 6s, heartbeat_interval: 300ms, position_interval: 50ms,"
    " grace_period: 5s}\n"
)


async def wait_until(
    predicate: Callable[[], Any], *, within: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` (sync or async) every 50 ms until truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(
    config_path: Path, *, registry: Registry | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Runner]:
    """Run ``config_path`` in-process; stop it (and check it stopped cleanly) on exit."""
    registry = registry or Registry.from_entry_points()
    config = load_config(config_path, registry, env=env)
    runner = Runner(config, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    started = asyncio.create_task(runner.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
        raise AssertionError("the runner returned before it started")
    if started not in done:
        started.cancel()
        task.cancel()
        raise AssertionError("the runner did not start within 60s")
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def consume(bootstrap: str, topic: str, *, count: int, within: float = 30.0) -> list[Any]:
    """Read ``count`` records of ``topic`` (all partitions, from the start), no group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.subscribe([topic])  # no group: every partition is assigned here
    await consumer.start()
    try:
        await wait_until(consumer.assignment, within=within, what=f"topic {topic}")
        out: list[Any] = []
        deadline = time.monotonic() + within
        while len(out) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(out)} of {count} records on {topic}")
            batches = await consumer.getmany(timeout_ms=200)
            for tp in sorted(batches, key=lambda t: t.partition):
                out += batches[tp]
        return out
    finally:
        await consumer.stop()


class Gateway:
    """``backbone run CONFIG`` as a subprocess (stdout to ``out``, stderr to ``log``)."""

    def __init__(self, config: Path, out: Path, log: Path) -> None:
        self.config = config
        self.out = out
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.out, "ab") as out, open(self.log, "ab") as log:
            out.write(b"\n")  # a line torn by a kill must not swallow the next one
            out.flush()
            self.proc = subprocess.Popen(
                [str(BACKBONE), "run", str(self.config)], stdout=out, stderr=log, env=env
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def lines(self) -> list[dict[str, Any]]:
        """Complete JSON lines printed so far."""
        text = self.out.read_text() if self.out.exists() else ""
        lines = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def starts(self) -> int:
        """How many times the gateway logged that it runs (one per successful start)."""
        text = self.log.read_text() if self.log.exists() else ""
        return text.count("backbone running:")

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


# ------------------------------------------------- pipeline checks for connector tests

LIST_SOURCE = "tests.core.plugins:LIST"
"""A test source kind emitting its ``values`` option (keys ``k<index>``)."""


async def check_sink_dead_letters(
    *,
    broker: str,
    tmp_path: Path,
    sink: str,
    values: list[Any],
    bad: list[int],
    read_back: Callable[[], Awaitable[list[Any]]],
    expected: list[Any],
    within: float = 30.0,
) -> list[Any]:
    """Run ``values`` through the sink under test; the ``bad`` indexes must be dead-lettered.

    ``sink`` is the YAML mapping of the sink's own options in flow style, e.g.
    ``'{type: sql, url: "sqlite:///out.db", table: t}'`` (``topics`` and
    ``dead_letter_topic`` are added). Checks the dead-letter records (value, key,
    ``backbone.error.*`` and ``backbone.original.*`` headers) and that ``read_back()``
    returns ``expected`` (what the good records left in the target). Returns the
    dead-letter records.
    """
    suffix = os.urandom(4).hex()
    topic, dlq = f"conf.{suffix}", f"conf.{suffix}.dlq"
    options = sink.strip()
    assert options.startswith("{") and options.endswith("}"), "give the sink in flow style"
    config = tmp_path / f"dlq-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f'sources:\n  src-{suffix}: {{type: "{LIST_SOURCE}", topic: {topic}, '
        f"values: {json.dumps(values)}}}\n"
        + f"sinks:\n  sink-{suffix}: {options[:-1]}, topics: [{topic}], "
        f"dead_letter_topic: {dlq}}}\n"
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        dead = await consume(runner.bootstrap, dlq, count=len(bad), within=within)
        await wait_until(
            lambda: _equal(read_back, expected), within=within, what="the good records"
        )
        status = runner.status[f"sink-{suffix}"]
        assert status.state.value == "RUNNING", status
    assert [json.loads(r.value) for r in dead] == [values[i] for i in bad]
    for record, index in zip(dead, bad, strict=True):
        headers = dict(record.headers)
        assert record.key == f"k{index}".encode()
        assert headers["backbone.error.connector"] == f"sink-{suffix}".encode()
        assert headers["backbone.error.class"] == b"DataError"
        assert headers["backbone.error.message"]
        assert headers["backbone.original.topic"] == topic.encode()
        assert headers["backbone.original.offset"] == str(index).encode()
    return dead


async def _equal(read_back: Callable[[], Awaitable[list[Any]]], expected: list[Any]) -> bool:
    return await read_back() == expected


async def check_source_through_crash(
    *,
    broker: str,
    tmp_path: Path,
    source: str,
    kill_when: Callable[[list[dict[str, Any]]], bool],
    done_when: Callable[[list[dict[str, Any]]], bool],
    within: float = 60.0,
) -> list[dict[str, Any]]:
    """At-least-once through a crash: ``backbone run`` with the source under test -> stdout.

    ``source`` is the source's YAML mapping in flow style without ``topic``. The
    gateway runs as a subprocess; once ``kill_when(lines)`` holds it is SIGKILLed,
    restarted, and must reach ``done_when(lines)`` (then SIGTERM -> exit 0).
    ``lines`` are the stdout sink's JSON lines (``value``, ``key``, ``headers``...),
    duplicates included. Returns them.
    """
    suffix = os.urandom(4).hex()
    topic = f"crash.{suffix}"
    options = source.strip()
    config = tmp_path / f"crash-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f"sources:\n  src-{suffix}: {options[:-1]}, topic: {topic}}}\n"
        + f"sinks:\n  out-{suffix}: {{type: stdout, topics: [{topic}]}}\n"
    )
    gateway = Gateway(config, tmp_path / f"out-{suffix}.jsonl", tmp_path / f"log-{suffix}.txt")

    def lines() -> list[dict[str, Any]]:
        return [line for line in gateway.lines() if line.get("topic") == topic]

    try:
        gateway.start()
        await wait_until(lambda: kill_when(lines()), within=within, what="the kill condition")
        gateway.kill()
        assert not done_when(lines()), "everything arrived before the kill: nothing was tested"
        gateway.start()
        await wait_until(lambda: gateway.starts() == 2, within=within, what="the restart")
        await wait_until(lambda: done_when(lines()), within=within, what="every record")
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    return lines()
