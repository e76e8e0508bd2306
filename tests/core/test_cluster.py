"""Three ``backbone run`` processes with one config form one gateway cluster.

Against Backbone's broker in its own process (``python -m backbone.broker``) and
against Tansu: each source runs in exactly one process; SIGKILL of its process
moves it (and the sink partitions that process held) to the others, with every
record delivered at least once and positions never going back; a process frozen
(SIGSTOP) past its session writes nothing when it wakes (SIGCONT) and rejoins.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from backbone.config import load_config
from backbone.positions import POSITIONS_TOPIC, history
from backbone.registry import Registry
from backbone.status import cluster_status
from backbone.testing import Gateway, wait_until
from tests.servers import free_port, wait_for_port

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

RUNTIME = (
    "runtime: {session_timeout: 6s, heartbeat_interval: 300ms, position_interval: 50ms,"
    " grace_period: 5s}\n"
)


@pytest.fixture(params=["backbone", "tansu"])
def cluster_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, ``broker:`` section): a broker process the gateways share."""
    if request.param == "tansu":
        tansu = request.getfixturevalue("tansu")
        yield tansu.bootstrap, f'broker: {{bootstrap: ["{tansu.bootstrap}"], idempotence: false}}\n'
        return
    port = free_port()
    log = (tmp_path / "broker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backbone.broker",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "broker"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield f"127.0.0.1:{port}", f'broker: {{bootstrap: ["127.0.0.1:{port}"]}}\n'
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


class Cluster:
    """N gateway processes running one config file."""

    def __init__(self, config: Path, tmp_path: Path, count: int) -> None:
        self.config = config
        self.gateways = [
            Gateway(config, tmp_path / f"out{i}.jsonl", tmp_path / f"gw{i}.log")
            for i in range(count)
        ]
        self.registry = Registry.from_entry_points()
        self.loaded = load_config(config, self.registry)
        self.tansu = self.loaded.broker.idempotence is False
        self.frozen: set[Gateway] = set()

    def __enter__(self) -> Cluster:
        for gateway in self.gateways:
            gateway.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for gateway in self.gateways:
            if gateway.proc is not None and gateway.proc.poll() is None:
                os.kill(gateway.proc.pid, signal.SIGCONT)
            gateway.stop_quietly()

    def worker(self, gateway: Gateway) -> str:
        assert gateway.proc is not None
        return f"{os.uname().nodename}:{gateway.proc.pid}"

    def by_worker(self, worker: str) -> Gateway:
        [found] = [g for g in self.gateways if self.worker(g) == worker]
        return found

    async def status(self) -> list[dict[str, Any]]:
        return await cluster_status(self.loaded, self.registry)

    async def runs(self, connector: str) -> list[str]:
        """Workers running ``connector``: ``backbone status`` (RUNNING entries), or on
        Tansu, whose DescribeGroups lists no member metadata, the processes' logs."""
        if self.tansu:
            return self._runs_by_logs(connector)
        return [
            e["worker"]
            for e in await self.status()
            if e["connector"] == connector and e["state"] == "RUNNING"
        ]

    def _runs_by_logs(self, connector: str) -> list[str]:
        workers = []
        for gateway in self.gateways:
            if gateway.proc is None or gateway.proc.poll() is not None or gateway in self.frozen:
                continue
            text = gateway.log.read_text() if gateway.log.exists() else ""
            if connector in self.loaded.sinks:
                if f"sink {connector} started" in text:
                    workers.append(self.worker(gateway))
                continue
            plans = re.findall(r"generation \d+: \d+ worker\(s\); sources here: (.*)", text)
            started = f"source {connector} started at" in text
            if plans and started and connector in plans[-1].split(", "):
                workers.append(self.worker(gateway))
        return workers

    def lines(self, gateways: list[Gateway] | None = None) -> list[dict[str, Any]]:
        return [line for g in gateways or self.gateways for line in g.lines()]

    def logs(self) -> str:
        return "\n".join(g.log.read_text() for g in self.gateways if g.log.exists())


def records(lines: list[dict[str, Any]], topic: str) -> dict[tuple[int, int], dict[str, Any]]:
    """The records of ``topic`` the sinks printed, one per (partition, offset)."""
    return {(line["partition"], line["offset"]): line for line in lines if line["topic"] == topic}


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end, in offset order per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.subscribe([topic])
    await consumer.start()
    try:
        await wait_until(consumer.assignment, within=30, what=f"topic {topic}")
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []

        async def done() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            for tp in sorted(batches, key=lambda t: t.partition):
                out.extend(batches[tp])
            positions = [await consumer.position(tp) for tp in tps]
            return all(p >= ends[tp] for p, tp in zip(positions, tps, strict=True))

        await wait_until(done, within=30, what=f"the end of {topic}")
        return out
    finally:
        await consumer.stop()


def insert(db: Path, first: int, count: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO orders (id, customer) VALUES (?, ?)",
            [(i, f"c{i}") for i in range(first, first + count)],
        )


async def test_sources_run_once_and_fail_over_on_sigkill(
    cluster_broker: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, section = cluster_broker
    uid = uuid.uuid4().hex[:8]
    gen, orders, gen_topic, sql_topic = f"gen-{uid}", f"orders-{uid}", f"g.{uid}", f"s.{uid}"
    count = 2500
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)")
    config = tmp_path / "three.yaml"
    config.write_text(
        section
        + RUNTIME
        + f"""
gateway: {{id: three-{uid}}}
topics:
  {gen_topic}: {{partitions: 3}}
  {sql_topic}: {{partitions: 3}}
sources:
  {gen}: {{type: generator, topic: {gen_topic}, rate: 150, count: {count}, keys: 30}}
  {orders}:
    type: sql
    topic: {sql_topic}
    url: sqlite:///{db}
    table: orders
    mode: incrementing
    incrementing_column: id
    poll_interval: 200ms
    lag: 0s
sinks:
  print-{uid}: {{type: stdout, topics: [{gen_topic}, {sql_topic}]}}
"""
    )
    with Cluster(config, tmp_path, 3) as cluster:

        async def settled() -> bool:
            return (
                len(await cluster.runs(gen)) == 1
                and len(await cluster.runs(orders)) == 1
                and len(await cluster.runs(f"print-{uid}")) == 3
            )

        await wait_until(settled, within=90, what="both sources and the sink running")
        insert(db, 1, 100)

        def seqs() -> Counter[int]:
            found = records(cluster.lines(), gen_topic).values()
            return Counter(line["value"]["seq"] for line in found)

        def ids() -> Counter[int]:
            found = records(cluster.lines(), sql_topic).values()
            return Counter(line["value"]["after"]["id"] for line in found)

        await wait_until(lambda: len(seqs()) >= 300 and len(ids()) == 100, within=60, what="data")
        # exactly once while no process fails (a source may have moved while the
        # processes joined: a planned move drains first): no record twice
        assert max(seqs().values()) == 1 and max(ids().values()) == 1

        [owner] = await cluster.runs(gen)
        victim = cluster.by_worker(owner)
        survivors = [g for g in cluster.gateways if g is not victim]
        victim.kill()
        at_kill = max(seqs())
        await wait_until(
            lambda: _runs_elsewhere(cluster, gen, owner), within=60, what="gen on a survivor"
        )
        insert(db, 101, 100)
        await wait_until(
            lambda: len(seqs()) == count and len(ids()) == 200,
            within=90,
            what="every record after the failover",
        )
        await wait_until(
            lambda: _holders(cluster, f"print-{uid}", 2), within=60, what="sink on 2 survivors"
        )
        assert owner not in await cluster.runs(f"print-{uid}")
        starts = sorted(  # log lines start with their time
            line for line in cluster.logs().splitlines() if f"source {gen} started at" in line
        )
        resumed = int(starts[-1].split("started at position ")[1].split()[0])
        for gateway in survivors:
            assert gateway.terminate() == 0

    assert set(seqs()) == set(range(1, count + 1))  # at least once
    assert set(ids()) == set(range(1, 201))
    duplicated = [seq for seq, n in seqs().items() if n > 1]
    assert all(seq > resumed for seq in duplicated)  # only what was in flight
    # the sink partitions the victim held moved: survivors printed every partition's
    # records written after the kill
    after = {
        line["partition"]
        for line in records(cluster.lines(survivors), gen_topic).values()
        if line["value"]["seq"] > at_kill
    }
    assert after == {0, 1, 2}
    saved = await read_topic(bootstrap, POSITIONS_TOPIC)
    mine = history(saved, gen)
    assert mine == sorted(mine) and mine[-1] == count  # positions never went back
    assert resumed in mine  # the survivor resumed from a position the victim had saved


async def _runs_elsewhere(cluster: Cluster, connector: str, old: str) -> bool:
    workers = await cluster.runs(connector)
    return len(workers) == 1 and workers[0] != old


def _rejoined(log: Path) -> bool:
    """A new generation was logged after the source was stopped there."""
    text = log.read_text()
    lost = text.rfind("stopped without writing")
    return lost >= 0 and re.search(r"generation \d+", text[lost:].split("\n", 1)[-1]) is not None


async def _holders(cluster: Cluster, connector: str, count: int) -> bool:
    return len(await cluster.runs(connector)) == count


async def test_a_frozen_gateway_is_fenced_and_rejoins(
    cluster_broker: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, section = cluster_broker
    uid = uuid.uuid4().hex[:8]
    gen, topic, sink = f"gen-{uid}", f"g.{uid}", f"print-{uid}"
    config = tmp_path / "frozen.yaml"
    config.write_text(
        section
        + RUNTIME
        + f"""
gateway: {{id: frozen-{uid}}}
topics:
  {topic}: {{partitions: 3}}
sources:
  {gen}: {{type: generator, topic: {topic}, rate: 100, keys: 30}}
sinks:
  {sink}: {{type: stdout, topics: [{topic}]}}
"""
    )
    with Cluster(config, tmp_path, 3) as cluster:

        def seqs() -> list[dict[str, Any]]:
            return list(records(cluster.lines(), topic).values())

        async def settled() -> bool:
            return len(await cluster.runs(gen)) == 1 and len(await cluster.runs(sink)) == 3

        await wait_until(settled, within=90, what="the source and the sink running")
        await wait_until(lambda: len(seqs()) >= 100, within=60, what="100 records")
        [owner] = await cluster.runs(gen)
        frozen = cluster.by_worker(owner)
        assert frozen.proc is not None
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        cluster.frozen.add(frozen)
        at_stop = max(line["value"]["seq"] for line in seqs())
        await wait_until(
            lambda: _runs_elsewhere(cluster, gen, owner), within=60, what="gen taken over"
        )
        await wait_until(
            lambda: max(line["value"]["seq"] for line in seqs()) > at_stop + 50,
            within=60,
            what="records from the new owner",
        )
        woke = time.time()
        os.kill(frozen.proc.pid, signal.SIGCONT)
        cluster.frozen.discard(frozen)
        await wait_until(
            lambda: "stopped without writing" in frozen.log.read_text(),
            within=60,
            what="the frozen process to notice",
        )
        await wait_until(lambda: _rejoined(frozen.log), within=60, what="rejoined")
        await wait_until(lambda: _holders(cluster, sink, 3), within=60, what="sink on all 3")
        [now] = await cluster.runs(gen)
        assert now != owner
        log = frozen.log.read_text()
        assert f"source {gen} stopped without writing" in log
        for gateway in cluster.gateways:
            assert gateway.terminate() == 0

    # after waking up, the frozen process produced nothing: every record stamped
    # after SIGCONT has a seq of its own (a stale owner would repeat the new owner's)
    late = Counter(line["value"]["seq"] for line in seqs() if line["timestamp"] >= int(woke * 1000))
    assert late and max(late.values()) == 1
    # and saved no position after the new owner's claim
    saved = await read_topic(bootstrap, POSITIONS_TOPIC)
    values = [json.loads(r.value) for r in saved if r.key == gen.encode()]
    claims = [i for i, v in enumerate(values) if v.get("kind") == "claim"]
    last_own = max(i for i in claims if values[i]["worker"] == owner)
    takeover = min(i for i in claims if i > last_own)
    following = [i for i in claims if i > takeover]
    until = following[0] if following else len(values)
    assert all(v["worker"] != owner for v in values[takeover:until])
    mine = history(saved, gen)
    assert mine == sorted(mine)
