"""HTTP connectors benchmark: ``python -m benchmarks.http [--quick] [--json PATH]``.

Figures on this machine, each beside a yardstick measured in the same run:

1. **webhook**: durable requests/s and latency (p50/p99) of a ``webhook`` source
   (no auth, 3 partitions) in ``backbone run`` (its own process, embedded broker on
   disk, fsync before every acks=all answer), driven by 16 concurrent keep-alive
   HTTP/1.1 connections from this process. Every 2xx is checked to be on the
   topic. Yardstick: 16 concurrent ``send_and_wait`` loops of a hand-written
   aiokafka producer (acks=all) against the same broker, the same payload.
2. **http sink**: records/s from a pre-filled topic into a local receiver
   (uvicorn in its own process), batched (``batch: {size: 500}``) and one request
   per record (``concurrency: 16``), through the runner in this process.
   Yardstick: a hand-written aiokafka consumer loop POSTing the same batches with
   httpx.

``--quick`` shrinks every phase (the smoke run of the test suite). Called by
``python -m benchmarks`` through :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import format_table, free_port, machine_facts, wait_for_port

logger = logging.getLogger("benchmarks.http")
PAYLOAD = json.dumps({"order": {"id": 12345, "customer": "c-42", "total": 99.5}}).encode()
CLIENTS = 16


# -- a minimal keep-alive HTTP/1.1 load client ------------------------------------


async def _client(port: int, path: str, count: int, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(PAYLOAD)}\r\n\r\n"
    ).encode() + PAYLOAD
    ok = 0
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
    finally:
        writer.close()
    return ok


async def _topic_size(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] * 1000


async def webhook(folder: Path, per_client: int) -> dict[str, Any]:
    broker_port, http_port = free_port(), free_port()
    config = folder / "webhook.yaml"
    config.write_text(
        f'broker: {{embedded: {{listen: "127.0.0.1:{broker_port}", data_dir: data}}}}\n'
        f'http: {{listen: "127.0.0.1:{http_port}"}}\n'
        "runtime: {state_dir: state}\n"
        "topics: {bench.hooks: {partitions: 3}, bench.yardstick: {partitions: 3}}\n"
        "sources:\n  hooks: {type: webhook, topic: bench.hooks, path: /hooks}\n"
    )
    log = (folder / "gateway.log").open("wb")
    backbone = Path(sys.executable).with_name("backbone")
    proc = subprocess.Popen([str(backbone), "run", str(config)], stderr=log, stdout=log)  # noqa: ASYNC220
    try:
        wait_for_port(http_port, timeout=60, proc=proc)
        async with httpx.AsyncClient() as client:  # until the source runs; warm up
            warm = 0
            deadline = time.monotonic() + 60
            while warm < 20:
                response = await client.post(
                    f"http://127.0.0.1:{http_port}/hooks",
                    content=PAYLOAD,
                    headers={"Content-Type": "application/json"},
                )
                warm += response.status_code == 200
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the webhook never answered 200: {response.text}")
        latencies: list[float] = []
        cpu = _cpu(proc.pid)
        started = time.perf_counter()
        oks = await asyncio.gather(
            *(_client(http_port, "/hooks", per_client, latencies) for _ in range(CLIENTS))
        )
        elapsed = time.perf_counter() - started
        cpu = _cpu(proc.pid) - cpu
        total = CLIENTS * per_client
        stored = await _topic_size(f"127.0.0.1:{broker_port}", "bench.hooks", 3) - 20
        result: dict[str, Any] = {
            "requests": total,
            "ok": sum(oks),
            "stored": stored,
            "requests_per_s": total / elapsed,
            "p50_ms": _percentile(latencies, 0.50),
            "p99_ms": _percentile(latencies, 0.99),
            "gateway_cpu_ms_per_request": cpu * 1000 / total,
        }
        result["yardstick"] = await _producer_yardstick(f"127.0.0.1:{broker_port}", per_client)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def _producer_yardstick(bootstrap: str, per_task: int) -> dict[str, Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    latencies: list[float] = []

    async def loop() -> None:
        for _ in range(per_task):
            started = time.perf_counter()
            await producer.send_and_wait("bench.yardstick", PAYLOAD)
            latencies.append(time.perf_counter() - started)

    try:
        await producer.send_and_wait("bench.yardstick", PAYLOAD)
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {
        "records_per_s": CLIENTS * per_task / elapsed,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the receiver (its own process) and the sink ------------------------------------


def _receiver(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    count = 0

    async def receive(request: Request) -> Response:
        nonlocal count
        body = await request.body()
        count += body.count(b'"order"')
        return Response(b"", status_code=204)

    async def counted(request: Request) -> Response:
        return JSONResponse({"count": count})

    app = Starlette(routes=[Route("/in", receive, methods=["POST"]), Route("/count", counted)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _fill(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        batch = producer.create_batch()
        futures = []
        for n in range(count):
            if batch.append(key=str(n % 100).encode(), value=PAYLOAD, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=str(n % 100).encode(), value=PAYLOAD, timestamp=None)
        futures.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _count(client: httpx.AsyncClient, url: str) -> int:
    return int((await client.get(url)).json()["count"])


async def sink(folder: Path, batched: int, single: int) -> dict[str, Any]:
    from backbone.config import load_config
    from backbone.registry import Registry
    from backbone.runner import Runner

    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=_receiver, args=(port,))
    receiver.start()
    results: dict[str, Any] = {}
    try:
        await asyncio.to_thread(wait_for_port, port, timeout=60, proc=_Alive(receiver))
        base = f"http://127.0.0.1:{port}"
        broker_port = free_port()
        async with httpx.AsyncClient() as client:
            for name, records, options in (
                ("batched", batched, "batch: {size: 500}"),
                ("per_record", single, "concurrency: 16"),
            ):
                config = folder / f"sink-{name}.yaml"
                config.write_text(
                    f'broker: {{embedded: {{listen: "127.0.0.1:{broker_port}", '
                    f"data_dir: data-{name}}}}}\n"
                    "runtime: {state_dir: state, max_batch: 500}\n"
                    f"topics: {{bench.{name}: {{partitions: 1}}}}\n"
                    f"sinks:\n  out-{name}: {{type: http, topics: [bench.{name}], "
                    f'url: "{base}/in", {options}}}\n'
                )
                registry = Registry.from_entry_points()
                runner = Runner(load_config(config, registry), registry)
                stop = asyncio.Event()
                before = await _count(client, f"{base}/count")
                task = asyncio.create_task(runner.run(stop))
                try:
                    await asyncio.wait_for(runner.started.wait(), 60)
                    assert runner.bootstrap is not None
                    # one record first: the sink joined its group and delivers
                    await _fill(runner.bootstrap, f"bench.{name}", 1)
                    while await _count(client, f"{base}/count") - before < 1:
                        if task.done():
                            task.result()
                        await asyncio.sleep(0.05)
                    before += 1
                    fill = time.perf_counter()
                    await _fill(runner.bootstrap, f"bench.{name}", records)
                    while await _count(client, f"{base}/count") - before < records:
                        if task.done():
                            task.result()
                        await asyncio.sleep(0.05)
                    elapsed = time.perf_counter() - fill
                    results[name] = {"records": records, "records_per_s": records / elapsed}
                    if name == "batched":
                        results["yardstick"] = await _sink_yardstick(
                            runner.bootstrap, f"bench.{name}", records, base, client
                        )
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 60)
    finally:
        receiver.terminate()
        receiver.join(10)
    return results


async def _sink_yardstick(
    bootstrap: str, topic: str, records: int, base: str, client: httpx.AsyncClient
) -> dict[str, Any]:
    """A hand-written consume -> POST JSON array loop over the same records."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", max_poll_records=500
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=5000, max_records=1)  # the warm-up record
    before = await _count(client, f"{base}/count")
    started = time.perf_counter()
    done = 0
    try:
        while done < records:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for messages in batches.values():
                body = b"[" + b",".join(m.value for m in messages) + b"]"
                response = await client.post(
                    f"{base}/in", content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
                done += len(messages)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    assert await _count(client, f"{base}/count") - before >= records
    return {"records": records, "records_per_s": records / elapsed}


class _Alive:
    """Adapts a multiprocessing.Process to wait_for_port's ``poll()``/``returncode``."""

    def __init__(self, process: Any) -> None:
        self.process = process

    def poll(self) -> int | None:
        return None if self.process.is_alive() else (self.process.exitcode or 1)

    @property
    def returncode(self) -> int | None:
        return self.poll()


def render(results: dict[str, Any]) -> str:
    hook, sinks = results["webhook"], results["sink"]
    yard = hook["yardstick"]
    rows = [
        (
            "webhook, 16 keep-alive clients (req/s)",
            f"{hook['requests_per_s']:,.0f}",
            f"{yard['records_per_s']:,.0f}",
            f"{hook['requests_per_s'] / yard['records_per_s']:.2f}",
        ),
        ("webhook p50 latency (ms)", f"{hook['p50_ms']:.1f}", f"{yard['p50_ms']:.1f}", ""),
        ("webhook p99 latency (ms)", f"{hook['p99_ms']:.1f}", f"{yard['p99_ms']:.1f}", ""),
        (
            "webhook gateway CPU per request (ms)",
            f"{hook['gateway_cpu_ms_per_request']:.3f}",
            "",
            "",
        ),
        (
            "http sink, batches of 500 (records/s)",
            f"{sinks['batched']['records_per_s']:,.0f}",
            f"{sinks['yardstick']['records_per_s']:,.0f}",
            f"{sinks['batched']['records_per_s'] / sinks['yardstick']['records_per_s']:.2f}",
        ),
        (
            "http sink, one request per record x16 (records/s)",
            f"{sinks['per_record']['records_per_s']:,.0f}",
            "",
            "",
        ),
    ]
    table = format_table(("workload", "backbone", "yardstick", "ratio"), rows)
    checks = (
        f"webhook: {hook['requests']} requests, {hook['ok']} answered 200, "
        f"{hook['stored']} on the topic"
    )
    return (
        table
        + "\n"
        + checks
        + "\nyardsticks: aiokafka send_and_wait x16 (acks=all); aiokafka getmany + httpx POST"
    )


async def run(quick: bool, folder: Path) -> dict[str, Any]:
    per_client = 100 if quick else 2000
    return {
        "machine": machine_facts(),
        "webhook": await webhook(folder, per_client),
        "sink": await sink(folder, 5_000 if quick else 200_000, 500 if quick else 10_000),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (also called by ``python -m benchmarks``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small phases (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="backbone-bench-http-") as folder:
        results = asyncio.run(run(args.quick, Path(folder)))
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
