"""Pipeline checks: the connector under test inside the real runtime and a real broker.

:func:`running` runs a config in-process (embedded broker or ``bootstrap``),
:func:`consume` reads a topic with aiokafka, :class:`Gateway` runs ``backbone run``
as a subprocess that a test can SIGKILL and restart, :func:`broker_yaml` writes
the ``broker:`` section. ``VALUES`` is a source kind emitting its ``values`` option
(``type: "backbone.testing:VALUES"``), to feed a sink under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from backbone.config import load_config
from backbone.connector import ConnectorKind, ConnectorOptions, Source, SourceRecord
from backbone.registry import Registry
from backbone.runner import Runner
from backbone.testing._support import wait_until

__all__ = [
    "FAST_RUNTIME",
    "VALUES",
    "VALUES_SOURCE",
    "Gateway",
    "broker_yaml",
    "check_sink_dead_letters",
    "check_sink_stops_when_retries_run_out",
    "check_source_dead_letters",
    "check_source_through_crash",
    "consume",
    "running",
]


class ValuesOptions(ConnectorOptions):
    """Options of the ``backbone.testing:VALUES`` source."""

    values: list[Any] = []
    """Values to emit, in order (keys ``k<index>``, position = how many were emitted)."""


class ValuesSource(Source[ValuesOptions]):
    """Emits ``values`` once; position = the number of values emitted."""

    async def open(self, position: Any | None) -> None:
        self.next = int(position or 0)

    async def read(self) -> list[SourceRecord]:
        values = self.options.values
        if self.next >= len(values):
            await asyncio.sleep(0.05)
            return []
        out = [
            SourceRecord(value=values[index], key=f"k{index}", position=index + 1)
            for index in range(self.next, len(values))
        ]
        self.next = len(values)
        return out

    async def close(self) -> None:
        return None


VALUES = ConnectorKind(
    name="backbone.testing:VALUES",
    summary="Test source emitting its `values` option once (keys k<index>).",
    source=ValuesSource,
    source_options=ValuesOptions,
)
VALUES_SOURCE = VALUES.name
"""The YAML ``type`` of :data:`VALUES`."""

FAST_RUNTIME = (
    "runtime: {session_timeout: 6s, heartbeat_interval: 300ms, position_interval: 50ms,"
    " grace_period: 5s}\n"
)
"""A ``runtime:`` section with short timeouts, for tests."""


def broker_yaml(
    broker: str, *, tansu: Any = None, data_dir: Path | None = None, port: int = 0
) -> str:
    """The ``broker:`` section (YAML flow text) for ``"tansu"`` (an object with a
    ``bootstrap`` attribute) or ``"embedded"`` (in ``data_dir``, on ``port``)."""
    if broker == "tansu":
        return f'broker: {{bootstrap: ["{tansu.bootstrap}"], idempotence: false}}\n'
    assert data_dir is not None
    return f'broker: {{embedded: {{listen: "127.0.0.1:{port}", data_dir: "{data_dir}"}}}}\n'


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


async def consume(
    bootstrap: str, topic: str, *, count: int, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records of ``topic`` (all partitions, from the start), no group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.subscribe([topic])  # no group: every partition is assigned here
    await consumer.start()
    try:
        await wait_until(consumer.assignment, within=within, what=f"topic {topic}")
        out: list[ConsumerRecord[bytes, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(out) < count:
            if loop.time() > deadline:
                raise AssertionError(f"only {len(out)} of {count} records on {topic}")
            batches = await consumer.getmany(timeout_ms=200)
            for tp in sorted(batches, key=lambda t: t.partition):
                out += batches[tp]
        return out
    finally:
        await consumer.stop()


def _backbone_command() -> list[str]:
    beside = Path(sys.executable).parent / "backbone"
    found = str(beside) if beside.exists() else shutil.which("backbone")
    return [found] if found else [sys.executable, "-m", "backbone"]


class Gateway:
    """``backbone run CONFIG`` as a subprocess (stdout to ``out``, stderr to ``log``).

    ``pythonpath`` is put in front of ``PYTHONPATH`` (default: the current folder,
    so ``type: "package.module:KIND"`` finds the test's own modules).
    """

    def __init__(
        self,
        config: Path,
        out: Path,
        log: Path,
        *,
        pythonpath: Sequence[str | Path] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.out = out
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        paths = [str(p) for p in (pythonpath if pythonpath is not None else [Path.cwd()])]
        base = dict(os.environ if env is None else env)
        if base.get("PYTHONPATH"):
            paths.append(base["PYTHONPATH"])
        base["PYTHONPATH"] = os.pathsep.join(paths)
        self.env = base

    def start(self) -> None:
        """Start the gateway (appending to ``out`` and ``log``)."""
        with open(self.out, "ab") as out, open(self.log, "ab") as log:
            out.write(b"\n")  # a line torn by a kill must not swallow the next one
            out.flush()
            self.proc = subprocess.Popen(
                [*_backbone_command(), "run", str(self.config)],
                stdout=out,
                stderr=log,
                env=self.env,
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code."""
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
        """Kill it if it still runs (for ``finally`` blocks)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _flow(mapping: str, what: str) -> str:
    text = mapping.strip()
    assert text.startswith("{") and text.endswith("}"), f"give the {what} in flow style {{...}}"
    return text[:-1]


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
) -> list[ConsumerRecord[bytes, bytes]]:
    """Run ``values`` through the sink under test; the ``bad`` indexes must be dead-lettered.

    ``sink`` is the YAML mapping of the sink's own options in flow style, e.g.
    ``'{type: sql, url: "sqlite:///out.db", table: t}'`` (``topics`` and
    ``dead_letter_topic`` are added); ``broker`` the ``broker:`` section
    (:func:`broker_yaml`). Checks the dead-letter records (value, key,
    ``backbone.error.*`` and ``backbone.original.*`` headers) and that ``read_back()``
    returns ``expected`` (what the good records left in the target). Returns the
    dead-letter records.
    """
    suffix = os.urandom(4).hex()
    topic, dlq = f"conf.{suffix}", f"conf.{suffix}.dlq"
    config = tmp_path / f"dlq-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f'sources:\n  src-{suffix}: {{type: "{VALUES_SOURCE}", topic: {topic}, '
        f"values: {json.dumps(values)}}}\n"
        + f"sinks:\n  sink-{suffix}: {_flow(sink, 'sink')}, topics: [{topic}], "
        f"dead_letter_topic: {dlq}}}\n"
    )

    async def equal() -> bool:
        return await read_back() == expected

    async with running(config) as runner:
        assert runner.bootstrap is not None
        dead = await consume(runner.bootstrap, dlq, count=len(bad), within=within)
        await wait_until(equal, within=within, what="the good records")
        status = runner.status[f"sink-{suffix}"]
        assert status.state.value == "RUNNING", status
    assert [json.loads(r.value) for r in dead if r.value is not None] == [values[i] for i in bad]
    for record, index in zip(dead, bad, strict=True):
        headers = dict(record.headers)
        assert record.key == f"k{index}".encode()
        assert headers["backbone.error.connector"] == f"sink-{suffix}".encode()
        assert headers["backbone.error.class"] == b"DataError"
        assert headers["backbone.error.message"]
        assert headers["backbone.original.topic"] == topic.encode()
        assert headers["backbone.original.offset"] == str(index).encode()
    return dead


async def check_sink_stops_when_retries_run_out(
    *,
    broker: str,
    tmp_path: Path,
    sink: str,
    values: list[Any],
    breaks: Callable[[], Awaitable[None]],
    repairs: Callable[[], Awaitable[None]],
    read_back: Callable[[], Awaitable[list[Any]]],
    expected: list[Any],
    within: float = 30.0,
) -> str:
    """A sink with ``retries_exhausted = "fail"`` whose target stays down loses nothing.

    ``breaks()`` makes the target fail with retriable errors (a server answering 500, a
    folder it may not write to); ``values`` go through the sink (``sink`` as for
    :func:`check_sink_dead_letters`, with a dead-letter topic and ``retry:
    {max_attempts: 3}``). The sink must stop FAILED, with nothing sent to the
    dead-letter topic and no offset committed. Then ``repairs()`` mends the target
    and the gateway starts again: ``read_back()`` must come to ``expected`` (every
    record delivered) and the sink run. Returns the FAILED sink's error.
    """
    suffix = os.urandom(4).hex()
    topic, dlq, name = f"conf.{suffix}", f"conf.{suffix}.dlq", f"sink-{suffix}"
    config = tmp_path / f"exhausted-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f'sources:\n  src-{suffix}: {{type: "{VALUES_SOURCE}", topic: {topic}, '
        f"values: {json.dumps(values)}}}\n"
        + f"sinks:\n  {name}: {_flow(sink, 'sink')}, topics: [{topic}], "
        f"dead_letter_topic: {dlq}, "
        "retry: {max_attempts: 3, initial_backoff: 10ms, max_backoff: 20ms}}\n"
    )

    async def equal() -> bool:
        return await read_back() == expected

    await breaks()
    async with running(config) as runner:
        assert runner.bootstrap is not None
        status = runner.status[name]
        await wait_until(lambda: status.state.value == "FAILED", within=within, what="FAILED")
        error = status.error or ""
        consumer = AIOKafkaConsumer(bootstrap_servers=runner.bootstrap, group_id=f"backbone.{name}")
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(dlq, 0)])
            assert ends[TopicPartition(dlq, 0)] == 0, "records went to the dead-letter topic"
            committed = await consumer.committed(TopicPartition(topic, 0))
            assert committed is None, f"offset {committed} committed by a FAILED sink"
        finally:
            await consumer.stop()
    await repairs()
    async with running(config) as runner:
        await wait_until(equal, within=within, what="every record in the target")
        assert runner.status[name].state.value == "RUNNING", runner.status[name]
    return error


async def check_source_dead_letters(
    *,
    broker: str,
    tmp_path: Path,
    source: str,
    inject: Callable[[], Awaitable[None]],
    count: int,
    registry: Registry | None = None,
    within: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Bad input reaches the source's dead-letter topic through the runtime.

    ``source`` is the source's YAML mapping in flow style without ``topic`` and
    ``dead_letter_topic`` (both are added). The pipeline runs in-process; once it
    started, ``inject()`` puts bad input into the system the source reads, and
    ``count`` records must arrive on the dead-letter topic with the raw input as
    value and headers ``backbone.error.connector`` (the source's name),
    ``backbone.error.class`` ``DataError`` and a message; the source stays RUNNING.
    Returns the dead-letter records.
    """
    suffix = os.urandom(4).hex()
    name, topic, dlq = f"src-{suffix}", f"conf.{suffix}", f"conf.{suffix}.dlq"
    config = tmp_path / f"source-dlq-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f"topics: {{{topic}: {{}}, {dlq}: {{}}}}\n"
        + f"sources:\n  {name}: {_flow(source, 'source')}, topic: {topic}, "
        f"dead_letter_topic: {dlq}}}\n"
    )
    async with running(config, registry=registry) as runner:
        assert runner.bootstrap is not None
        await wait_until(
            lambda: runner.status[name].state.value == "RUNNING",
            within=within,
            what=f"source {name} to run",
        )
        await inject()
        dead = await consume(runner.bootstrap, dlq, count=count, within=within)
        status = runner.status[name]
        assert status.state.value == "RUNNING", status
    for record in dead:
        headers = dict(record.headers)
        assert record.value, "a dead-lettered record carries the raw input"
        assert headers["backbone.error.connector"] == name.encode()
        assert headers["backbone.error.class"] == b"DataError"
        assert headers["backbone.error.message"]
    return dead


async def check_source_through_crash(
    *,
    broker: str,
    tmp_path: Path,
    source: str,
    kill_when: Callable[[list[dict[str, Any]]], bool],
    done_when: Callable[[list[dict[str, Any]]], bool],
    within: float = 60.0,
    pythonpath: Sequence[str | Path] | None = None,
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
    config = tmp_path / f"crash-{suffix}.yaml"
    config.write_text(
        broker
        + FAST_RUNTIME
        + f"sources:\n  src-{suffix}: {_flow(source, 'source')}, topic: {topic}}}\n"
        + f"sinks:\n  out-{suffix}: {{type: stdout, topics: [{topic}]}}\n"
    )
    gateway = Gateway(
        config,
        tmp_path / f"out-{suffix}.jsonl",
        tmp_path / f"log-{suffix}.txt",
        pythonpath=pythonpath,
    )

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
