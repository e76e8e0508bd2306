"""Client workloads: each function runs in its own child process against one broker.

Who calls what: ``benchmarks.broker`` runs every function here through
``benchmarks.common.run_isolated``, one process per workload, and passes only
plain arguments (bootstrap address, topic, counts, a time budget). Each
function returns a JSON-serialisable dict of measurements or raises with a
message that says what went wrong; it gives up by itself when its ``timeout``
(seconds) runs out, and the parent kills it a little later if it does not.

Clients: confluent-kafka (librdkafka) and aiokafka, configured as the issue's
benchmark section says (acks=all, linger.ms=5, batch.size 1 MB for the
throughput runs).
"""

from __future__ import annotations

import asyncio
import os
import resource
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_seconds

Result = dict[str, Any]

#: Record value size used by every throughput workload.
RECORD_BYTES = 100
#: librdkafka / aiokafka batch size (librdkafka's maximum for batch.size is message.max.bytes).
BATCH_BYTES = 1_000_000


def _value(size: int) -> bytes:
    return (b"backbone-benchmark-" * (size // 19 + 1))[:size]


def _own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) plus its finished children (kcat)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Meter:
    """Wall time and CPU use (client process, broker process) over the timed section."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.started = time.perf_counter()
        self.client_cpu = _own_cpu_seconds()
        self.broker_cpu = cpu_seconds(broker_pid) if broker_pid else None
        self.stopped: float | None = None
        self.figures: Result = {}

    def stop(self) -> float:
        """End the timed section now; returns the elapsed seconds."""
        self.stopped = time.perf_counter()
        wall = max(self.stopped - self.started, 1e-9)
        self.figures = {"client_cpu_pct": 100.0 * (_own_cpu_seconds() - self.client_cpu) / wall}
        if self.broker_pid and self.broker_cpu is not None:
            now = cpu_seconds(self.broker_pid)
            if now is not None:
                self.figures["broker_cpu_pct"] = 100.0 * (now - self.broker_cpu) / wall
        return wall


def throughput_figures(records: int, nbytes: int, meter: Meter) -> Result:
    seconds = meter.stop() if meter.stopped is None else meter.stopped - meter.started
    seconds = max(seconds, 1e-9)
    figures: Result = {
        "seconds": round(seconds, 4),
        "records_per_s": records / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
        **meter.figures,
    }
    if "broker_cpu_pct" in figures and records:
        # broker CPU time (user + system) per record, in microseconds
        figures["broker_cpu_us_per_record"] = (
            figures["broker_cpu_pct"] / 100 * seconds / records * 1e6
        )
    return figures


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Create ``topic`` with ``partitions`` (CreateTopics) and wait until Metadata shows leaders."""
    from confluent_kafka.admin import AdminClient, NewTopic

    deadline = Deadline(timeout)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=min(timeout, 20.0),
        request_timeout=timeout,
    )
    futures[topic].result(timeout=deadline.left())
    while True:
        meta = admin.list_topics(topic, timeout=max(deadline.left(), 0.1))
        info = meta.topics.get(topic)
        if (
            info is not None
            and info.error is None
            and len(info.partitions) == partitions
            and all(p.leader >= 0 for p in info.partitions.values())
        ):
            return
        if deadline.expired():
            detail = info.error if info is not None else "topic missing"
            raise TimeoutError(
                f"topic {topic} not ready with {partitions} partitions within {timeout:.0f}s: "
                f"{detail}"
            )
        time.sleep(0.1)


# --- librdkafka ------------------------------------------------------------------------


def librdkafka_produce(
    bootstrap: str,
    topic: str,
    partitions: int,
    records: int,
    timeout: float,
    broker_pid: int | None = None,
) -> Result:
    """Create ``topic`` and produce ``records`` x 100-byte values (acks=all, linger 5 ms)."""
    from confluent_kafka import Producer

    deadline = Deadline(timeout)
    create_topic(bootstrap, topic, partitions, timeout=min(30.0, timeout))
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": BATCH_BYTES,
            "compression.type": "none",
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
            "error_cb": lambda err: failures.append(f"client error: {err}"),
        }
    )
    value = _value(RECORD_BYTES)
    produce = producer.produce
    poll = producer.poll
    meter = Meter(broker_pid)
    for i in range(records):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.002)
                if deadline.expired():
                    raise TimeoutError(
                        f"queue still full after {i} of {records} records; errors: {failures[:3]}"
                    ) from None
        if i & 0x3FFF == 0:
            poll(0)
    remaining = producer.flush(max(deadline.left(), 0.0))
    meter.stop()
    if remaining:
        raise TimeoutError(
            f"{remaining} of {records} records not acknowledged within {timeout:.0f}s; "
            f"errors: {failures[:3]}"
        )
    delivery_errors = [f for f in failures if not f.startswith("client error")]
    if delivery_errors:
        raise RuntimeError(
            f"{len(delivery_errors)} of {records} records failed; first: {delivery_errors[0]}"
        )
    return {
        "records": records,
        "bytes": records * RECORD_BYTES,
        "client_errors": failures[:5],
        **throughput_figures(records, records * RECORD_BYTES, meter),
    }


def librdkafka_consume(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int,
    timeout: float,
    broker_pid: int | None = None,
    consumer_config: dict[str, str] | None = None,
) -> Result:
    """Read ``expected`` records back from every partition (assign, no group) and time it.

    ``consumer_config`` overrides librdkafka settings (``--consumer-config``).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    deadline = Deadline(timeout)
    errors: list[str] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-assign-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **(consumer_config or {}),
            "error_cb": lambda err: errors.append(f"client error: {err}"),
        }
    )
    try:
        count = 0
        nbytes = 0
        meter = Meter(broker_pid)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        while count < expected:
            if deadline.expired():
                raise TimeoutError(
                    f"consumed {count} of {expected} records within {timeout:.0f}s; "
                    f"errors: {errors[:3]}"
                )
            # consume(n) waits until n records arrived or the timeout passed: never ask for
            # more than are left, or the last call would sit out its timeout.
            wait = min(1.0, max(deadline.left(), 0.01))
            for msg in consumer.consume(min(10_000, expected - count), timeout=wait):
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    if msg.error().fatal():
                        raise RuntimeError(f"fatal consumer error: {msg.error()}")
                    continue
                count += 1
                nbytes += len(msg)
        meter.stop()
    finally:
        consumer.close()
    return {
        "records": count,
        "bytes": nbytes,
        "client_errors": errors[:5],
        **throughput_figures(count, nbytes, meter),
    }


def kcat_consume(
    bootstrap: str, topic: str, expected: int, timeout: float, broker_pid: int | None = None
) -> Result:
    """Read ``expected`` records with kcat (C, the system librdkafka), one offset per line.

    No Python in the client's path, so this shows the broker's fetch capacity
    rather than the Python client's. Needs ``kcat`` on PATH.
    """
    import shutil
    import subprocess

    exe = shutil.which("kcat")
    if exe is None:
        raise RuntimeError("kcat is not installed (`make system-deps` installs it)")
    argv = [exe, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"]
    argv += ["-c", str(expected), "-f", "%o\\n"]
    with tempfile.TemporaryDirectory(prefix="bench-kcat-") as libdir:
        env = dict(os.environ)
        librdkafka = _wheel_librdkafka(Path(libdir))
        if librdkafka is not None:
            env["LD_LIBRARY_PATH"] = libdir
        meter = Meter(broker_pid)
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, env=env)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"kcat did not finish within {timeout:.0f}s") from exc
        meter.stop()
    count = proc.stdout.count(b"\n")
    if proc.returncode != 0 or count != expected:
        stderr = " ".join(proc.stderr.decode(errors="replace").split())[-300:]
        raise RuntimeError(
            f"kcat exited with code {proc.returncode} after {count} of {expected} records: {stderr}"
        )
    return {
        "records": count,
        "bytes": count * RECORD_BYTES,
        "librdkafka": "confluent-kafka wheel" if librdkafka is not None else "system",
        **throughput_figures(count, count * RECORD_BYTES, meter),
    }


def _wheel_librdkafka(libdir: Path) -> Path | None:
    """Link the librdkafka bundled in the confluent-kafka wheel as ``libdir/librdkafka.so.1``.

    Debian's kcat links the system librdkafka (2.0.2 on bookworm), which cannot
    talk to Tansu; run with ``LD_LIBRARY_PATH=libdir`` it uses the wheel's
    newer library instead (the C API is backward compatible), so both brokers
    are read by the same C consumer. Returns the library linked, or None when
    the wheel ships none (kcat then uses the system library).
    """
    try:
        import confluent_kafka
    except ImportError:
        return None
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so.1"))
    if not found:
        return None
    (libdir / "librdkafka.so.1").symlink_to(found[0])
    return found[0]


def _long_polling_consumer(bootstrap: str, group: str, fetch_wait_ms: int, **extra: Any) -> Any:
    """A librdkafka consumer answered as soon as one record is there (fetch.min.bytes=1),
    else after ``fetch_wait_ms``; ``extra``: more settings (statistics callbacks)."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": 1,
            "enable.partition.eof": False,
            **extra,
        }
    )


def _warm_up(producer: Any, consumer: Any, topic: str, value: bytes, deadline: Deadline) -> None:
    """One record through the whole path (connections, metadata) before the clock starts;
    assigns ``consumer`` partition 0 of ``topic`` from the beginning."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    producer.produce(topic, value)
    producer.flush(max(deadline.left(), 0.0))
    while True:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            return
        if deadline.expired():
            raise TimeoutError("warm-up record never arrived at the consumer")


def _produce_paced(
    producer: Any,
    topic: str,
    total: int,
    rate: float,
    value: Callable[[], bytes],
    deadline: Deadline,
) -> None:
    """Produce ``total`` records of ``value()`` at ``rate``/s, then flush."""
    start = time.perf_counter()
    for i in range(total):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        producer.produce(topic, value())
        producer.poll(0)
        if deadline.expired():
            raise TimeoutError(f"sent only {i} of {total} records within {deadline.seconds:.0f}s")
    producer.flush(max(deadline.left(), 0.0))


def librdkafka_latency(
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    fetch_wait_ms: int,
    timeout: float,
) -> Result:
    """End-to-end latency: paced produce at ``rate`` msg/s, send->receive per record.

    Producer: acks=all, linger.ms=0. Consumer: fetch.min.bytes=1,
    fetch.wait.max.ms=``fetch_wait_ms``. The send time (perf_counter_ns) rides
    in the first 8 bytes of each 100-byte value; producer and consumer share
    this process, so the clocks agree.
    """
    from confluent_kafka import Producer

    deadline = Deadline(timeout)
    create_topic(bootstrap, topic, 1, timeout=min(30.0, timeout))
    failures: list[str] = []
    acks_s: list[float] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        elif msg.latency() is not None:
            acks_s.append(msg.latency())

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "on_delivery": on_delivery,
        }
    )
    consumer = _long_polling_consumer(bootstrap, "bench-latency", fetch_wait_ms)
    pad = _value(RECORD_BYTES - 8)
    total = int(rate * seconds)
    latencies_ns: list[int] = []
    stop = threading.Event()
    consumer_error: list[str] = []

    try:
        _warm_up(producer, consumer, topic, struct.pack(">q", -1) + pad, deadline)

        def receive() -> None:
            try:
                # poll() returns as soon as one record is there (consume(n) would wait for n)
                while len(latencies_ns) < total and not stop.is_set():
                    m = consumer.poll(0.05)
                    if m is None:
                        continue
                    now = time.perf_counter_ns()
                    if m.error() is not None:
                        consumer_error.append(str(m.error()))
                        continue
                    sent = struct.unpack_from(">q", m.value())[0]
                    latencies_ns.append(now - sent)
            except Exception as exc:
                consumer_error.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=receive, name="latency-consumer")
        thread.start()
        try:

            def stamped() -> bytes:  # the send time rides in the value
                return struct.pack(">q", time.perf_counter_ns()) + pad

            _produce_paced(producer, topic, total, rate, stamped, deadline)
            while thread.is_alive() and not deadline.expired():
                thread.join(0.1)
        finally:
            stop.set()
            thread.join(10)
    finally:
        consumer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} records failed to send; first: {failures[0]}")
    if len(latencies_ns) < total:
        raise TimeoutError(
            f"received {len(latencies_ns)} of {total} records; errors: {consumer_error[:3]}"
        )
    ordered = sorted(latencies_ns)
    acks = sorted(acks_s) or [0.0]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    def ack_pct(q: float) -> float:
        return acks[min(len(acks) - 1, int(q * len(acks)))] * 1000

    return {
        "records": total,
        "received": len(latencies_ns),
        "rate": rate,
        "seconds": seconds,
        "fetch_wait_ms": fetch_wait_ms,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] / 1e6,
        "mean_ms": sum(ordered) / len(ordered) / 1e6,
        # produce() -> delivery report (broker ack), as librdkafka measures it
        "ack_p50_ms": ack_pct(0.50),
        "ack_p99_ms": ack_pct(0.99),
    }


# --- aiokafka --------------------------------------------------------------------------


def aiokafka_produce(
    bootstrap: str, topic: str, records: int, timeout: float, broker_pid: int | None = None
) -> Result:
    """Create a 1-partition ``topic``; produce with create_batch()/send_batch() (acks=all)."""
    create_topic(bootstrap, topic, 1, timeout=min(30.0, timeout))
    work = _aiokafka_produce(bootstrap, topic, records, broker_pid)
    return asyncio.run(asyncio.wait_for(work, timeout))


async def _aiokafka_produce(
    bootstrap: str, topic: str, records: int, broker_pid: int | None
) -> Result:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=BATCH_BYTES,
        max_request_size=2 * BATCH_BYTES,
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        value = _value(RECORD_BYTES)
        pending: list[asyncio.Future[Any]] = []
        meter = Meter(broker_pid)
        batch = producer.create_batch()
        sent = 0
        turn = 0
        while sent < records:
            if batch.append(key=None, value=value, timestamp=None) is not None:
                sent += 1
                continue
            pending.append(
                await producer.send_batch(
                    batch, topic, partition=partitions[turn % len(partitions)]
                )
            )
            turn += 1
            batch = producer.create_batch()
        if batch.record_count():
            pending.append(
                await producer.send_batch(
                    batch, topic, partition=partitions[turn % len(partitions)]
                )
            )
        await asyncio.gather(*pending)
        meter.stop()
    finally:
        await producer.stop()
    return {
        "records": records,
        "bytes": records * RECORD_BYTES,
        "batches": len(pending),
        **throughput_figures(records, records * RECORD_BYTES, meter),
    }


def aiokafka_consume(
    bootstrap: str, topic: str, expected: int, timeout: float, broker_pid: int | None = None
) -> Result:
    """Read ``expected`` records of partition 0 with getmany() from the beginning."""
    work = _aiokafka_consume(bootstrap, topic, expected, broker_pid)
    return asyncio.run(asyncio.wait_for(work, timeout))


async def _aiokafka_consume(
    bootstrap: str, topic: str, expected: int, broker_pid: int | None
) -> Result:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        meter = Meter(broker_pid)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        count = 0
        nbytes = 0
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for batch in batches.values():
                count += len(batch)
                nbytes += sum(len(r.value) for r in batch)
        meter.stop()
    finally:
        await consumer.stop()
    return {"records": count, "bytes": nbytes, **throughput_figures(count, nbytes, meter)}


# --- small unbatched requests ----------------------------------------------------------


def librdkafka_small_requests(
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    fetch_wait_ms: int,
    timeout: float,
    broker_pid: int | None = None,
) -> Result:
    """The broker's cost per small request: ``rate`` single-record produce requests/s.

    Producer: acks=all, linger.ms=0, paced, so nearly every record is its own
    Produce request; a long-polling consumer (fetch.min.bytes=1,
    fetch.wait.max.ms=``fetch_wait_ms``) reads them as they land. Both run in
    this process (not the broker's). The broker's CPU is read from /proc over
    the paced section; the Produce/Fetch request counts come from librdkafka's
    statistics (``req`` per broker), so ``broker_cpu_us_per_request`` is per
    Produce request actually sent.
    """
    import json

    from confluent_kafka import Producer

    deadline = Deadline(timeout)
    create_topic(bootstrap, topic, 1, timeout=min(30.0, timeout))
    failures: list[str] = []
    produce_stats: list[int] = []  # Produce requests sent so far, per statistics callback
    fetch_stats: list[int] = []

    def requests_sent(stats_json: str, api: str, into: list[int]) -> None:
        stats = json.loads(stats_json)
        into.append(
            sum(
                b.get("req", {}).get(api, 0)
                for b in stats.get("brokers", {}).values()
                if b.get("nodeid", -1) >= 0
            )
        )

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "on_delivery": on_delivery,
            "statistics.interval.ms": 100,
            "stats_cb": lambda s: requests_sent(s, "Produce", produce_stats),
        }
    )
    consumer = _long_polling_consumer(
        bootstrap,
        "bench-small",
        fetch_wait_ms,
        **{
            "statistics.interval.ms": 100,
            "stats_cb": lambda s: requests_sent(s, "Fetch", fetch_stats),
        },
    )
    value = _value(RECORD_BYTES)
    total = int(rate * seconds)
    received = [0]
    stop = threading.Event()
    consumer_error: list[str] = []

    def wait_for_stats(into: list[int], poll: Any) -> int:
        """The next statistics report's count (a fresh one, <= 100 ms old)."""
        seen = len(into)
        while len(into) == seen and not deadline.expired():
            poll(0.02)
        return into[-1] if into else 0

    try:
        _warm_up(producer, consumer, topic, value, deadline)

        def receive() -> None:
            try:
                while received[0] < total and not stop.is_set():
                    m = consumer.poll(0.05)
                    if m is None:
                        continue
                    if m.error() is not None:
                        consumer_error.append(str(m.error()))
                        continue
                    received[0] += 1
            except Exception as exc:
                consumer_error.append(f"{type(exc).__name__}: {exc}")

        produce_before = wait_for_stats(produce_stats, producer.poll)
        thread = threading.Thread(target=receive, name="small-requests-consumer")
        thread.start()
        try:
            meter = Meter(broker_pid)
            fetch_before = fetch_stats[-1] if fetch_stats else 0
            _produce_paced(producer, topic, total, rate, lambda: value, deadline)
            while thread.is_alive() and not deadline.expired():
                thread.join(0.05)
            wall = meter.stop()
            fetch_after = fetch_stats[-1] if fetch_stats else 0
        finally:
            stop.set()
            thread.join(10)
        produce_after = wait_for_stats(produce_stats, producer.poll)
    finally:
        consumer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} records failed to send; first: {failures[0]}")
    if received[0] < total:
        raise TimeoutError(f"received {received[0]} of {total} records; {consumer_error[:3]}")
    produce_requests = max(produce_after - produce_before, 1)
    figures: Result = {
        "records": total,
        "rate": rate,
        "seconds": round(wall, 4),
        "fetch_wait_ms": fetch_wait_ms,
        "produce_requests": produce_requests,
        "produce_requests_per_s": produce_requests / wall,
        "records_per_request": total / produce_requests,
        "fetch_requests_per_s": (fetch_after - fetch_before) / wall,
        **meter.figures,
    }
    if "broker_cpu_pct" in figures:
        cpu_s = figures["broker_cpu_pct"] / 100 * wall
        figures["broker_cpu_us_per_request"] = cpu_s / produce_requests * 1e6
        # the consumer's fetch count varies from run to run (and broker to broker: a
        # fetch answered sooner means more fetches), so also per request of either kind
        fetches = max(fetch_after - fetch_before, 0)
        figures["broker_cpu_us_per_any_request"] = cpu_s / (produce_requests + fetches) * 1e6
    return figures
