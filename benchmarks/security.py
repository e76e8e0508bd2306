"""What TLS and SASL cost: one broker, the same workload through each listener.

Run: ``python -m benchmarks.security [--records N] [--size BYTES] [--quick]``
(``make bench`` runs it as the ``security`` suite).

One Backbone broker (its own process, default durability: fsync before acks=all) with
three listeners: ``PLAINTEXT``, ``SSL`` (TLS 1.2+, a ``backbone.certs`` certificate) and
``SASL_SSL`` (SCRAM-SHA-512 over TLS). A confluent-kafka (librdkafka) producer writes N
records (acks=all) through one listener, then a consumer reads them back through the
same listener; each listener gets a topic of its own, and the rounds (best counts) turn
the listeners' order so that none always runs first. The yardstick is the PLAINTEXT
listener of the same broker in the same run: the table shows records/s, MB/s, the
broker's CPU per record and each secured listener's throughput as a ratio of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import format_table, free_port, machine_facts, wait_for_port

LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL")
USER, PASSWORD = "bench", "bench-secret"


def _serve(workdir: Path, ports: dict[str, int]) -> None:
    """The broker process: three listeners, a SCRAM user, until SIGTERM."""
    from backbone.broker import BrokerConfig
    from backbone.broker.broker import run_until_signalled
    from backbone.broker.config import parse_listener
    from backbone.broker.listeners import TlsSettings
    from backbone.broker.security import ScramCredential, UserStore

    data = workdir / "data"
    UserStore.in_data_dir(data).apply(
        [(USER, ScramCredential.from_password("SCRAM-SHA-512", PASSWORD))]
    )
    config = BrokerConfig(
        data_dir=data,
        listeners=tuple(
            parse_listener(name.replace("_", "-").lower(), f"127.0.0.1:{port}", name)
            for name, port in ports.items()
        ),
        tls=TlsSettings(workdir / "server.pem", workdir / "server.key"),
        sasl_mechanisms=("SCRAM-SHA-512",),
        authorization=False,  # measure the transport, not the ACL checks
    )
    asyncio.run(run_until_signalled(config))


def _client_config(protocol: str, port: int, workdir: Path) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{port}"}
    if protocol != "PLAINTEXT":
        conf |= {"security.protocol": protocol, "ssl.ca.location": str(workdir / "ca.pem")}
    if protocol == "SASL_SSL":
        conf |= {"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER}
        conf["sasl.password"] = PASSWORD
    return conf


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _produce(conf: dict[str, Any], topic: str, records: int, size: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({**conf, "acks": "all", "linger.ms": 5, "compression.type": "none"})
    value = os.urandom(size)
    failed: list[Any] = []
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, key=str(i % 64).encode(), on_delivery=_check(failed))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0 or failed:
        raise RuntimeError(f"produce through {topic} failed: {failed[:3]}")


def _check(failed: list[Any]) -> Any:
    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    return on_delivery


def _consume(conf: dict[str, Any], topic: str, records: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {**conf, "group.id": f"bench-{topic}", "enable.auto.commit": False, "fetch.wait.max.ms": 50}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        deadline = time.monotonic() + 180
        while seen < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumed {seen} of {records} records of {topic}")
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
                seen += 1
    finally:
        consumer.close()


def run(records: int, size: int, rounds: int = 3) -> list[dict[str, Any]]:
    from backbone.certs import create_ca, issue

    workdir = Path(tempfile.mkdtemp(prefix="backbone-bench-security-"))
    ca = create_ca("bench CA")
    ca.write(workdir / "ca.pem", workdir / "ca.key")
    issue(ca, "localhost", hosts=["127.0.0.1", "localhost"], client=False).write(
        workdir / "server.pem", workdir / "server.key"
    )
    ports = {name: free_port() for name in LISTENERS}
    argv = [sys.executable, "-m", "benchmarks.security", "--serve", str(workdir)]
    argv += [f"{name}={port}" for name, port in ports.items()]
    log = (workdir / "broker.log").open("wb")
    broker = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    rows: list[dict[str, Any]] = []
    try:
        for port in ports.values():
            wait_for_port(port, timeout=30, proc=broker)
        best: dict[str, dict[str, Any]] = {name: {"listener": name} for name in LISTENERS}
        order = list(LISTENERS)
        for round_ in range(rounds):  # the order turns each round; the best round counts
            for protocol in order:
                conf = _client_config(protocol, ports[protocol], workdir)
                topic = f"bench-{protocol.lower()}-{round_}"
                row = best[protocol]
                for phase, work in (
                    ("produce", lambda: _produce(conf, topic, records, size)),  # noqa: B023
                    ("consume", lambda: _consume(conf, topic, records)),  # noqa: B023
                ):
                    cpu0, t0 = _cpu_s(broker.pid), time.perf_counter()
                    work()
                    seconds = time.perf_counter() - t0
                    cpu = _cpu_s(broker.pid) - cpu0
                    if phase not in row or records / seconds > row[phase]["records_per_s"]:
                        row[phase] = {
                            "records_per_s": records / seconds,
                            "mb_per_s": records * size / seconds / 1e6,
                            "broker_cpu_us_per_record": cpu * 1e6 / records,
                        }
            order = order[1:] + order[:1]
        rows = [best[name] for name in LISTENERS]
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def report(rows: list[dict[str, Any]], records: int, size: int, rounds: int) -> str:
    base = rows[0]
    table = []
    for row in rows:
        cells = [row["listener"]]
        for phase in ("produce", "consume"):
            figures = row[phase]
            ratio = figures["records_per_s"] / base[phase]["records_per_s"]
            cells += [
                f"{figures['records_per_s']:,.0f}",
                f"{figures['mb_per_s']:.1f}",
                f"{figures['broker_cpu_us_per_record']:.1f}",
                f"{ratio:.2f}",
            ]
        table.append(cells)
    header = ["listener"] + [
        f"{phase} {what}"
        for phase in ("produce", "consume")
        for what in ("rec/s", "MB/s", "broker CPU us/rec", "x PLAINTEXT")
    ]
    facts = machine_facts()
    return (
        f"security: {records:,} records of {size} B per listener, confluent-kafka, acks=all, "
        f"best of {rounds} round(s); {facts['usable_cores']} cores, load {facts['load_avg_1m']}\n"
        + format_table(header, table)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.security", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024, help="record value bytes")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (best one counts)")
    parser.add_argument("--quick", action="store_true", help="20,000 records, one round")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("ports", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        ports = dict(item.split("=", 1) for item in args.ports)
        _serve(Path(args.serve), {name: int(port) for name, port in ports.items()})
        return 0
    records = 20_000 if args.quick else args.records
    rounds = 1 if args.quick else args.rounds
    print(report(run(records, args.size, rounds), records, args.size, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
