"""Gateway cluster failover time: SIGKILL the process running a source, time the takeover.

``python -m benchmarks.failover [--quick] [--rounds N]``: for each broker (Backbone's
broker in its own process, then Tansu), start three ``backbone run`` processes with
one config (a generator source at 200 events/s and no sink), wait until one runs
the source, SIGKILL it and measure

- *restart*: kill -> the source logged "started" in a surviving process,
- *first record*: kill -> the timestamp of the first record the new owner
  produced (records stamped after the kill),

next to the configured session timeout (the yardstick: the coordinator cannot
drop the dead process sooner). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from benchmarks.common import RunningBroker, format_table, start_backbone, start_tansu

SESSION_S = 6.0


def _config(path: Path, broker: RunningBroker, topic: str, source: str) -> None:
    idempotence = "false" if broker.name == "tansu" else "true"
    path.write_text(
        f'broker: {{bootstrap: ["{broker.bootstrap}"], idempotence: {idempotence}}}\n'
        f"gateway: {{id: bench-{uuid.uuid4().hex[:8]}}}\n"
        f"runtime: {{session_timeout: {SESSION_S}s, heartbeat_interval: 500ms,"
        " position_interval: 100ms}\n"
        f"topics:\n  {topic}: {{partitions: 3}}\n"
        f"sources:\n  {source}: {{type: generator, topic: {topic}, rate: 200, keys: 30}}\n"
    )


@contextlib.contextmanager
def _gateways(config: Path, workdir: Path, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    backbone = Path(sys.executable).parent / "backbone"
    procs = []
    for i in range(count):
        with (workdir / f"gw{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(backbone), "run", str(config)], stdout=subprocess.DEVNULL, stderr=log
                )
            )
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def _owner(workdir: Path, procs: list[subprocess.Popen[bytes]], source: str) -> int | None:
    """Index of the living process whose log says it runs ``source`` (last start wins)."""
    best: tuple[str, int] | None = None
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            continue
        for line in (workdir / f"gw{i}.log").read_text().splitlines():
            if f"source {source} started at" in line and (best is None or line > best[0]):
                best = (line, i)
    return best[1] if best else None


async def _one_round(broker: RunningBroker, workdir: Path) -> tuple[float, float]:
    topic, source = f"fo.{uuid.uuid4().hex[:8]}", f"gen-{uuid.uuid4().hex[:8]}"
    config = workdir / "failover.yaml"
    _config(config, broker, topic, source)
    with _gateways(config, workdir, 3) as procs:
        deadline = time.monotonic() + 90
        while (owner := _owner(workdir, procs, source)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no gateway started the source within 90 s")
            await asyncio.sleep(0.05)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            last = 0
            while last < 400:  # two seconds of events
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    last = max([last, *(json.loads(m.value)["seq"] for m in messages)])
            os.kill(procs[owner].pid, signal.SIGKILL)
            killed, killed_ms = time.monotonic(), time.time() * 1000
            procs[owner].wait(10)
            restart = first = None
            while restart is None or first is None:
                if time.monotonic() - killed > 90:
                    raise RuntimeError("the source did not come back within 90 s")
                batches = await consumer.getmany(timeout_ms=50)
                # records stamped after the kill come from the new owner
                late = [
                    m.timestamp for ms in batches.values() for m in ms if m.timestamp > killed_ms
                ]
                if first is None and late:
                    first = (min(late) - killed_ms) / 1000
                moved = _owner(workdir, procs, source)
                if restart is None and moved is not None and moved != owner:
                    restart = time.monotonic() - killed
            return restart, first
        finally:
            await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover")
    parser.add_argument("--quick", action="store_true", help="one round per broker")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per broker (median)")
    args = parser.parse_args(list(argv or []))
    rounds = 1 if args.quick else args.rounds
    rows = []
    with tempfile.TemporaryDirectory(prefix="backbone-failover-") as tmp:
        for name, start in (("backbone", start_backbone), ("tansu", start_tansu)):
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                with start(workdir) as broker:
                    results = [asyncio.run(_one_round(broker, workdir)) for _ in range(rounds)]
            except Exception as exc:  # a broker that cannot run the workload: say why
                rows.append([name, "-", "-", f"{SESSION_S:.1f}", f"failed: {exc}"[:60]])
                continue
            restart = statistics.median(r[0] for r in results)
            first = statistics.median(r[1] for r in results)
            ratio = f"{first / SESSION_S:.2f}"
            rows.append([name, f"{restart:.2f}", f"{first:.2f}", f"{SESSION_S:.1f}", ratio])
    print(f"gateway failover: 3 processes, SIGKILL the source's process (median of {rounds})")
    print(
        format_table(
            ["broker", "restart s", "first record s", "session s", "first / session"], rows
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
