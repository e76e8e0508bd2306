"""File connector benchmark: ``python -m benchmarks.files [--quick] [--size 1GB] [--profile DIR]``.

Two figures, each beside a hand-written yardstick measured in the same run, same
process layout (the runtime and an embedded broker in this process; the yardstick
and its own embedded broker in this process too), one partition, acks=all with
fsync:

1. **file -> topic**: a JSON-lines file of ``--size`` bytes (default 1 GB, ~100-byte
   lines) read by the ``file`` source (``mode: spool``, ``format: jsonl``) through
   the runner into a topic, timed from the runner's start until the topic holds
   every line. Yardstick: a plain loop reading the file in 1 MiB chunks, splitting
   lines and producing them with aiokafka ``create_batch``/``send_batch``.
2. **topic -> files**: the ``file`` sink (``jsonl``, 64 MiB files) reading that topic
   through the runner until every byte is in its files (then stopped: the last file
   is published), against a plain aiokafka ``getmany`` loop appending values to a
   file (fsync at the end).

Printed per row: records/s, MB/s (of the file), CPU per record (process CPU time,
both sides include their broker) and the ratio to the yardstick. The process uses the
garbage collector thresholds of ``backbone run`` (``backbone.runner.tune_gc``). ``--profile DIR``
samples this process with py-spy during the two Backbone rows and prints the hot
spots. ``--json PATH`` writes the figures. Called by ``python -m benchmarks``
through :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from backbone.broker import Broker, BrokerConfig
from backbone.config import load_config
from backbone.registry import Registry
from backbone.runner import ConnectorState, Runner, tune_gc
from backbone.sdk import parse_size
from benchmarks.common import format_table, free_port
from benchmarks.profiling import hot_spots, py_spy, record, render_hot_spots

logger = logging.getLogger("benchmarks.files")

TOPIC = "bench.lines"
CHUNK = 1 << 20
PER_FILE = 500_000
"""Lines per file of the sink (about 55 MB; ``--lines-per-file``); the input holds a
multiple of it, so the last file is complete (published, committed) as soon as its last
line is written."""


def make_file(path: Path, size: int, per_file: int) -> int:
    """A JSON-lines file of at least ``size`` bytes and a multiple of ``per_file`` lines;
    returns its number of lines."""
    lines = 0
    written = 0
    with open(path, "wb", buffering=1 << 22) as out:
        while written < size or lines % per_file:
            count = min(10_000, per_file - lines % per_file)
            block = b"".join(
                b'{"id":%d,"customer":"customer-%03d","amount":%d.%02d,"country":"DE",'
                b'"note":"delivered to the warehouse"}\n' % (n, n % 1000, n % 997, n % 100)
                for n in range(lines, lines + count)
            )
            out.write(block)
            written += len(block)
            lines += count
    return lines


class Phase:
    """Wall and process CPU time of a block."""

    def __enter__(self) -> Phase:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def figures(phase: Phase, records: int, size: int) -> dict[str, float]:
    return {
        "records": records,
        "seconds": round(phase.wall, 3),
        "records_per_s": records / phase.wall,
        "mb_per_s": size / phase.wall / 1e6,
        "cpu_us_per_record": phase.cpu / records * 1e6,
    }


@contextlib.contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[Path | None]:
    if directory is None:
        yield None
        return
    output = directory / f"{name}.txt"
    with record(os.getpid(), output):
        yield output


async def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        ends = await consumer.end_offsets([tp])
        return int(ends[tp])
    except Exception:  # the topic does not exist yet
        return 0
    finally:
        await consumer.stop()


def _config(folder: Path, body: str) -> Path:
    path = folder / "bench.yaml"
    path.write_text(
        f'broker:\n  embedded: {{listen: "127.0.0.1:{free_port()}", data_dir: broker}}\n'
        "runtime: {state_dir: state, position_interval: 200ms}\n"
        f"topics:\n  {TOPIC}: {{partitions: 1}}\n" + body
    )
    return path


@contextlib.asynccontextmanager
async def running(config: Path) -> Any:
    registry = Registry.from_entry_points()
    runner = Runner(load_config(config, registry), registry)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 120)
        yield runner, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 600)


async def backbone_source(folder: Path, data: Path, lines: int) -> Phase:
    """The file source into a topic through the runner."""
    inbox = folder / "inbox"
    inbox.mkdir()
    os.link(data, inbox / data.name)
    config = _config(
        folder,
        "sources:\n  drop: {type: file, topic: " + TOPIC + ", path: inbox, format: jsonl}\n",
    )
    phase = Phase()
    async with running(config) as (runner, task):
        with phase:
            while await _end_offset(runner.bootstrap, TOPIC) < lines:
                if task.done():
                    raise RuntimeError(f"the runner stopped: {runner.status}")
                await asyncio.sleep(0.25)
    return phase


async def backbone_sink(folder: Path, lines: int, per_file: int) -> Phase:
    """The file sink from the topic (written by :func:`backbone_source`) into files of
    ``per_file`` lines, until the last one is published."""
    out = folder / "out"
    out.mkdir()
    config = _config(
        folder,
        "sinks:\n  archive: {type: file, topics: [" + TOPIC + "], path: out, start: earliest,"
        f" rotate: {{records: {per_file}, size: null, interval: null}}}}\n",
    )
    files = lines // per_file
    phase = Phase()
    async with running(config) as (runner, task):
        with phase:
            while len([p for p in out.iterdir() if not p.name.startswith(".")]) < files:
                if task.done() or runner.status["archive"].state is ConnectorState.FAILED:
                    raise RuntimeError(f"the sink stopped: {runner.status['archive']}")
                await asyncio.sleep(0.05)
    return phase


async def yardstick_produce(bootstrap: str, data: Path) -> tuple[Phase, int]:
    """Read the file, split lines, ``send_batch`` them (acks=all, idempotent)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    count = 0
    try:
        await producer.partitions_for(TOPIC)
        with Phase() as phase:
            futures = []
            batch = producer.create_batch()
            rest = b""
            with open(data, "rb") as file:  # noqa: ASYNC230 - a plain blocking loop
                while chunk := file.read(CHUNK):
                    parts = (rest + chunk).split(b"\n")
                    rest = parts.pop()
                    for line in parts:
                        if batch.append(timestamp=None, key=None, value=line, headers=[]) is None:
                            futures.append(await producer.send_batch(batch, TOPIC, partition=0))
                            batch = producer.create_batch()
                            batch.append(timestamp=None, key=None, value=line, headers=[])
                        count += 1
            futures.append(await producer.send_batch(batch, TOPIC, partition=0))
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return phase, count


async def yardstick_consume(bootstrap: str, folder: Path, lines: int) -> Phase:
    """``getmany`` the topic and append each value and a newline to a file; fsync."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=16 << 20,
    )
    consumer.assign([TopicPartition(TOPIC, 0)])
    await consumer.start()
    try:
        target = folder / "yardstick.jsonl"
        with Phase() as phase, open(target, "wb", buffering=1 << 20) as out:  # noqa: ASYNC230
            got = 0
            while got < lines:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for messages in batches.values():
                    out.write(b"".join(m.value + b"\n" for m in messages))
                    got += len(messages)
            out.flush()
            os.fsync(out.fileno())
    finally:
        await consumer.stop()
    return phase


async def run(size: int, profile: Path | None, per_file: int = PER_FILE) -> dict[str, Any]:
    results: dict[str, Any] = {"size_bytes": size, "lines_per_file": per_file}
    with tempfile.TemporaryDirectory(prefix="backbone-bench-files-") as tmp:
        folder = Path(tmp)
        data = folder / "lines.jsonl"
        print(f"writing a {size / 1e6:,.0f} MB JSON-lines file ...", file=sys.stderr, flush=True)
        lines = make_file(data, size, per_file)
        size = data.stat().st_size
        results.update(lines=lines, size_bytes=size)
        config = BrokerConfig(data_dir=folder / "yardstick-broker", port=0)
        async with Broker(config) as broker:
            print("yardstick: read + send_batch ...", file=sys.stderr, flush=True)
            phase, count = await yardstick_produce(broker.bootstrap, data)
            assert count == lines, (count, lines)
            results["yardstick_produce"] = figures(phase, lines, size)
            print("yardstick: getmany + write ...", file=sys.stderr, flush=True)
            phase = await yardstick_consume(broker.bootstrap, folder, lines)
            results["yardstick_consume"] = figures(phase, lines, size)
        gateway = folder / "gateway"
        gateway.mkdir()
        print("file source -> topic (runner) ...", file=sys.stderr, flush=True)
        with profiled(profile, "files-source") as spots:
            phase = await backbone_source(gateway, data, lines)
        results["source"] = figures(phase, lines, size)
        if spots is not None:
            results["source_profile"] = hot_spots(spots, seconds=phase.wall)
        print("topic -> file sink (runner) ...", file=sys.stderr, flush=True)
        with profiled(profile, "files-sink") as spots:
            phase = await backbone_sink(gateway, lines, per_file)
        results["sink"] = figures(phase, lines, size)
        if spots is not None:
            results["sink_profile"] = hot_spots(spots, seconds=phase.wall)
        written = sum(p.stat().st_size for p in (gateway / "out").iterdir())
        results["sink_bytes"] = written
        results["sink_files"] = len(list((gateway / "out").iterdir()))
    return results


def render(results: dict[str, Any]) -> str:
    """The results as a table, plus hot spots when profiled."""

    def row(label: str, key: str, against: str | None) -> list[str]:
        got = results[key]
        ratio = ""
        if against is not None:
            ratio = f"{got['records_per_s'] / results[against]['records_per_s']:.2f}x"
        return [
            label,
            f"{got['records_per_s']:,.0f}",
            f"{got['mb_per_s']:,.1f}",
            f"{got['cpu_us_per_record']:.2f}",
            ratio,
        ]

    mb = results["size_bytes"] / 1e6
    header = ["measure", "records/s", "MB/s", "CPU us/record", "vs yardstick"]
    source_label = f"file source -> topic, {results['lines']:,} lines / {mb:,.0f} MB"
    rows = [
        row(source_label, "source", "yardstick_produce"),
        row("  yardstick: read + aiokafka send_batch", "yardstick_produce", None),
        row("topic -> file sink (jsonl files)", "sink", "yardstick_consume"),
        row("  yardstick: aiokafka getmany + write", "yardstick_consume", None),
    ]
    text = format_table(header, rows)
    for key, label in (("source_profile", "file source"), ("sink_profile", "file sink")):
        if key in results:
            text += "\n\n" + render_hot_spots(label, results[key])
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (also called by ``python -m benchmarks``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.files", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a 30 MB file")
    parser.add_argument("--size", help="file size, e.g. 1GB (default), 200MB")
    parser.add_argument("--profile", type=Path, help="py-spy hot spots of the Backbone rows")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--lines-per-file", type=int, default=PER_FILE, help="lines per sink file (500000)"
    )
    args = parser.parse_args(argv)
    size = parse_size(args.size) if args.size else (30_000_000 if args.quick else 10**9)
    if args.profile is not None and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    logging.basicConfig(level=logging.WARNING)
    if args.lines_per_file < 1:
        parser.error(f"--lines-per-file must be positive (got {args.lines_per_file})")
    tune_gc()  # as `backbone run` does (the yardsticks run with it too)
    results = asyncio.run(run(size, args.profile, args.lines_per_file))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
