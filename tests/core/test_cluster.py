"""``backbone run`` processes with one config form one gateway cluster.

Against Backbone's broker in its own process (``python -m backbone.broker``) and
against Tansu: each source runs in exactly one process; SIGKILL of the processes
running them moves them (and the sink partitions those processes held) to the
others, with every record delivered at least once and positions never going back;
a process frozen (SIGSTOP) past its session writes nothing when it wakes (SIGCONT)
and rejoins; gateways ride out a restart of their broker.

Sessions are 4 s here (the default is 10 s): long enough for a busy 2-core machine
not to drop a live process, short enough to keep each failover cheap.
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
from backbone.positions import POSITIONS_TOPIC, Entry, fold, history
from backbone.registry import Registry
from backbone.status import cluster_status
from backbone.testing import Gateway, wait_until
from tests.servers import broker_process, free_port, wait_for_port

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

RUNTIME = (
    "runtime: {session_timeout: 4s, heartbeat_interval: 200ms, position_interval: 50ms,"
    " grace_period: 5s}\n"
)
# Tansu 0.6 fences a survivor's static members' commits (UnknownMemberId, rejoin loops)
# after other members were killed: on it the gateways run without static membership
TANSU_RUNTIME = RUNTIME.replace("}", ", static_membership: false}")


@pytest.fixture(params=["backbone", "tansu"])
def cluster_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, ``broker:`` and ``runtime:`` sections): a broker process the gateways share."""
    if request.param == "tansu":
        tansu = request.getfixturevalue("tansu")
        yield (
            tansu.bootstrap,
            f'broker: {{bootstrap: ["{tansu.bootstrap}"], idempotence: false}}\n' + TANSU_RUNTIME,
        )
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
        yield f"127.0.0.1:{port}", f'broker: {{bootstrap: ["127.0.0.1:{port}"]}}\n' + RUNTIME
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
        self.gateways = [  # GW: the index, for configs that stamp it (${GW:-test})
            Gateway(
                config,
                tmp_path / f"out{i}.jsonl",
                tmp_path / f"gw{i}.log",
                env={**os.environ, "GW": str(i)},
            )
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

    def terminate(self, gateways: list[Gateway] | None = None) -> list[int]:
        """SIGTERM the given gateways (default: all) at once; their exit codes."""
        chosen = gateways if gateways is not None else self.gateways
        for gateway in chosen:
            assert gateway.proc is not None
            gateway.proc.send_signal(signal.SIGTERM)
        return [g.proc.wait(60) for g in chosen if g.proc is not None]


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


def seqs_of(records: list[Any]) -> Counter[int]:
    """How many times each generator ``seq`` is in ``records`` (read from the topic)."""
    return Counter(json.loads(r.value)["seq"] for r in records)


async def test_sources_run_once_and_fail_over_on_sigkill(
    cluster_broker: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, section = cluster_broker
    uid = uuid.uuid4().hex[:8]
    gen, orders, gen_topic, sql_topic = f"gen-{uid}", f"orders-{uid}", f"g.{uid}", f"s.{uid}"
    sink = f"print-{uid}"
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)")
    config = tmp_path / "three.yaml"
    config.write_text(
        section
        + f"""
gateway: {{id: three-{uid}}}
topics:
  {gen_topic}: {{partitions: 3}}
  {sql_topic}: {{partitions: 3}}
sources:
  {gen}: {{type: generator, topic: {gen_topic}, rate: 200, keys: 30}}
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
  {sink}: {{type: stdout, topics: [{gen_topic}, {sql_topic}]}}
"""
    )
    with Cluster(config, tmp_path, 3) as cluster:

        async def settled() -> bool:
            return (
                len(await cluster.runs(gen)) == 1
                and len(await cluster.runs(orders)) == 1
                and len(await cluster.runs(sink)) == 3
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

        # SIGKILL every process that runs a source: both sources must move
        owners = {*(await cluster.runs(gen)), *(await cluster.runs(orders))}
        victims = [cluster.by_worker(owner) for owner in owners]
        survivors = [g for g in cluster.gateways if g not in victims]
        for victim in victims:
            victim.kill()
        at_kill = max(seqs())

        async def moved() -> bool:
            runs = [*(await cluster.runs(gen)), *(await cluster.runs(orders))]
            return len(runs) == 2 and not owners & set(runs)

        await wait_until(moved, within=60, what="both sources on survivors")
        insert(db, 101, 100)
        starts = sorted(  # log lines start with their time
            line for line in cluster.logs().splitlines() if f"source {gen} started at" in line
        )
        resumed = int(starts[-1].split("started at position ")[1].split()[0])
        await wait_until(
            lambda: len(ids()) == 200 and max(seqs()) > max(resumed, at_kill) + 200,
            within=60,
            what="records after the failover",
        )
        await wait_until(
            lambda: _holders(cluster, sink, len(survivors)), within=60, what="sink on survivors"
        )
        assert not owners & set(await cluster.runs(sink))
        # the sink partitions the victims held moved: survivors printed every
        # partition's records written after the kill
        after = {
            line["partition"]
            for line in records(cluster.lines(survivors), gen_topic).values()
            if line["value"]["seq"] > at_kill
        }
        assert after == {0, 1, 2}
        assert cluster.terminate(survivors) == [0] * len(survivors)

    produced = seqs_of(await read_topic(bootstrap, gen_topic))
    assert set(produced) == set(range(1, max(produced) + 1))  # at least once, no gap
    assert all(seq > resumed for seq, n in produced.items() if n > 1)  # only what was in flight
    rows = Counter(
        json.loads(r.value)["after"]["id"] for r in await read_topic(bootstrap, sql_topic)
    )
    assert set(rows) == set(range(1, 201))
    saved = await read_topic(bootstrap, POSITIONS_TOPIC)
    mine = history(saved, gen)
    assert mine == sorted(mine)  # positions never went back
    assert mine[-1] == max(produced)  # the last owner drained and saved its last record
    assert resumed in mine  # the survivor resumed from a position a victim had saved


async def _runs_elsewhere(cluster: Cluster, connector: str, old: str) -> bool:
    workers = await cluster.runs(connector)
    return len(workers) == 1 and workers[0] != old


def _rejoined(log: Path) -> bool:
    """A new generation was logged after the source was stopped there."""
    text = log.read_text()
    lost = text.rfind("stopped without writing")
    return lost >= 0 and re.search(r"generation \d+", text[lost:].split("\n", 1)[-1]) is not None


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


async def _holders(cluster: Cluster, connector: str, count: int) -> bool:
    return len(await cluster.runs(connector)) == count


async def test_a_frozen_gateway_is_fenced_and_rejoins(
    cluster_broker: tuple[str, str], tmp_path: Path
) -> None:
    bootstrap, section = cluster_broker
    uid = uuid.uuid4().hex[:8]
    gen, topic, sink = f"gen-{uid}", f"g.{uid}", f"print-{uid}"
    config = tmp_path / "frozen.yaml"
    config.write_text(  # each record carries the index of the gateway that read it
        section
        + f"""
gateway: {{id: frozen-{uid}}}
topics:
  {topic}: {{partitions: 3}}
sources:
  {gen}: {{type: generator, topic: {topic}, rate: 100, keys: 30, fields: {{gw: "${{GW:-test}}"}}}}
sinks:
  {sink}: {{type: stdout, topics: [{topic}]}}
"""
    )
    with Cluster(config, tmp_path, 2) as cluster:

        def lines() -> list[dict[str, Any]]:
            return list(records(cluster.lines(), topic).values())

        async def settled() -> bool:
            return len(await cluster.runs(gen)) == 1 and len(await cluster.runs(sink)) == 2

        await wait_until(settled, within=90, what="the source and the sink running")
        await wait_until(lambda: len(lines()) >= 100, within=60, what="100 records")
        [owner] = await cluster.runs(gen)
        frozen = cluster.by_worker(owner)
        [other] = [g for g in cluster.gateways if g is not frozen]
        assert frozen.proc is not None
        index, pid = str(cluster.gateways.index(frozen)), frozen.proc.pid
        os.kill(pid, signal.SIGSTOP)
        await wait_until(lambda: _stopped(pid), within=10, what="the process stopped")
        stopped = time.time()
        cluster.frozen.add(frozen)
        await wait_until(
            lambda: _runs_elsewhere(cluster, gen, owner), within=60, what="gen taken over"
        )

        def from_other() -> int:
            mark = int(stopped * 1000)
            return sum(1 for x in lines() if x["value"]["gw"] != index and x["timestamp"] > mark)

        await wait_until(lambda: from_other() >= 50, within=60, what="the new owner's records")
        os.kill(pid, signal.SIGCONT)
        cluster.frozen.discard(frozen)
        await wait_until(
            lambda: "stopped without writing" in frozen.log.read_text(),
            within=60,
            what="the frozen process to notice",
        )
        await wait_until(lambda: _rejoined(frozen.log), within=60, what="rejoined")
        await wait_until(lambda: _holders(cluster, sink, 2), within=60, what="sink on both")
        assert await cluster.runs(gen) == [cluster.worker(other)]
        ended = time.time()
        log = frozen.log.read_text()
        assert f"source {gen} stopped without writing" in log
        assert log.count(f"source {gen} started at") == 1  # it never ran the source again
        assert cluster.terminate() == [0, 0]

    # the frozen process produced nothing after it was stopped: a record's timestamp
    # is its read time, taken before the lease is checked; what it had handed to its
    # producer before SIGSTOP may have landed later (the in-flight duplicates)
    window = range(int(stopped * 1000), int(ended * 1000))
    late = sorted(
        x["value"]["seq"] for x in lines() if x["value"]["gw"] == index and x["timestamp"] in window
    )
    assert late == [], f"the frozen process produced after SIGSTOP: seqs {late[:20]}"
    # nor saved a position after it: no save (nor claim) of the frozen owner lands after
    # the new owner's claim, not even one it was about to send when it was stopped (a
    # fenced write checks the lease as it writes to the socket); a save's timestamp is
    # the time of that check
    saved = [r for r in await read_topic(bootstrap, POSITIONS_TOPIC) if r.key == gen.encode()]
    entries: dict[str, Entry] = {}
    takeover = None
    for record in saved:
        value = json.loads(record.value)
        counted = fold(entries, gen, value, record.offset)
        if value["worker"] == owner:
            assert takeover is None, f"the fenced owner wrote after the takeover: {value}"
            assert record.timestamp < stopped * 1000, f"saved after SIGSTOP: {value}"
            assert counted, f"a save of the owner before the takeover was fenced: {value}"
        elif (
            value.get("kind") == "claim" and takeover is None and record.timestamp >= stopped * 1000
        ):
            takeover = record.offset
    assert takeover is not None
    mine = history(saved, gen)
    assert mine == sorted(mine)


async def test_gateways_ride_out_a_broker_restart(tmp_path: Path) -> None:
    """The broker process stops and starts again under two gateways: they keep running,
    the source resumes where it was, nothing is lost and positions never go back."""
    port, data = free_port(), tmp_path / "broker"
    bootstrap = f"127.0.0.1:{port}"
    uid = uuid.uuid4().hex[:8]
    gen, topic, sink = f"gen-{uid}", f"g.{uid}", f"print-{uid}"
    config = tmp_path / "restart.yaml"
    config.write_text(
        f'broker: {{bootstrap: ["{bootstrap}"]}}\n'
        + f"""
gateway: {{id: restart-{uid}}}
topics:
  {topic}: {{partitions: 3}}
sources:
  {gen}: {{type: generator, topic: {topic}, rate: 100, keys: 30}}
sinks:
  {sink}: {{type: stdout, topics: [{topic}]}}
"""
    )

    def seqs(cluster: Cluster) -> set[int]:
        return {line["value"]["seq"] for line in records(cluster.lines(), topic).values()}

    with (
        broker_process(data, port, tmp_path / "broker.log") as broker,
        Cluster(config, tmp_path, 2) as cluster,
    ):

        async def settled() -> bool:
            return len(await cluster.runs(gen)) == 1 and len(await cluster.runs(sink)) == 2

        await wait_until(settled, within=90, what="the source and the sink running")
        await wait_until(lambda: len(seqs(cluster)) >= 100, within=60, what="100 records")
        broker.terminate()
        assert broker.wait(30) == 0
        before = max(seqs(cluster))
        await wait_until(
            lambda: all("retrying" in g.log.read_text() for g in cluster.gateways),
            within=60,
            what="both gateways noticing",
        )
        with broker_process(data, port, tmp_path / "broker.log"):
            await wait_until(
                lambda: max(seqs(cluster)) > before + 100, within=90, what="records after"
            )
            assert all(g.proc is not None and g.proc.poll() is None for g in cluster.gateways)
            await wait_until(lambda: _holders(cluster, gen, 1), within=60, what="one owner")
            assert cluster.terminate() == [0, 0]
            produced = seqs_of(await read_topic(bootstrap, topic))
            saved = await read_topic(bootstrap, POSITIONS_TOPIC)
    assert set(produced) == set(range(1, max(produced) + 1))  # nothing lost
    mine = history(saved, gen)
    assert mine == sorted(mine) and mine[-1] == max(produced)
