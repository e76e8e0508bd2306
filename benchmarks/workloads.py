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
import struct
import threading
import time
import uuid
from typing import Any

Result = dict[str, Any]

#: Record value size used by every throughput workload.
RECORD_BYTES = 100
#: librdkafka / aiokafka batch size (librdkafka's maximum for batch.size is message.max.bytes).
BATCH_BYTES = 1_000_000


def _value(size: int) -> bytes:
    return (b"backbone-benchmark-" * (size // 19 + 1))[:size]


def _rate(records: int, nbytes: int, seconds: float) -> Result:
    seconds = max(seconds, 1e-9)
    return {
        "seconds": round(seconds, 4),
        "records_per_s": records / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
    }


class _Deadline:
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

    deadline = _Deadline(timeout)
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
    bootstrap: str, topic: str, partitions: int, records: int, timeout: float
) -> Result:
    """Create ``topic`` and produce ``records`` x 100-byte values (acks=all, linger 5 ms)."""
    from confluent_kafka import Producer

    deadline = _Deadline(timeout)
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
    started = time.perf_counter()
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
    elapsed = time.perf_counter() - started
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
        **_rate(records, records * RECORD_BYTES, elapsed),
    }


def librdkafka_consume(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float
) -> Result:
    """Read ``expected`` records back from every partition (assign, no group) and time it."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    deadline = _Deadline(timeout)
    errors: list[str] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-assign-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "error_cb": lambda err: errors.append(f"client error: {err}"),
        }
    )
    try:
        count = 0
        nbytes = 0
        started = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        while count < expected:
            if deadline.expired():
                raise TimeoutError(
                    f"consumed {count} of {expected} records within {timeout:.0f}s; "
                    f"errors: {errors[:3]}"
                )
            for msg in consumer.consume(10_000, timeout=min(1.0, max(deadline.left(), 0.01))):
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    if msg.error().fatal():
                        raise RuntimeError(f"fatal consumer error: {msg.error()}")
                    continue
                count += 1
                nbytes += len(msg)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return {
        "records": count,
        "bytes": nbytes,
        "client_errors": errors[:5],
        **_rate(count, nbytes, elapsed),
    }


def kcat_consume(bootstrap: str, topic: str, expected: int, timeout: float) -> Result:
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
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"kcat did not finish within {timeout:.0f}s") from exc
    elapsed = time.perf_counter() - started
    count = proc.stdout.count(b"\n")
    if proc.returncode != 0 or count != expected:
        stderr = " ".join(proc.stderr.decode(errors="replace").split())[-300:]
        raise RuntimeError(
            f"kcat exited with code {proc.returncode} after {count} of {expected} records: {stderr}"
        )
    return {
        "records": count,
        "bytes": count * RECORD_BYTES,
        **_rate(count, count * RECORD_BYTES, elapsed),
    }


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
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    deadline = _Deadline(timeout)
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
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-latency-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": 1,
            "enable.partition.eof": False,
        }
    )
    pad = _value(RECORD_BYTES - 8)
    total = int(rate * seconds)
    latencies_ns: list[int] = []
    stop = threading.Event()
    consumer_error: list[str] = []

    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        # Warm-up: one record through the whole path before the clock starts.
        producer.produce(topic, struct.pack(">q", -1) + pad)
        producer.flush(max(deadline.left(), 0.0))
        while True:
            msgs = [m for m in consumer.consume(10, timeout=0.5) if m.error() is None]
            if msgs:
                break
            if deadline.expired():
                raise TimeoutError("warm-up record never arrived at the consumer")

        def receive() -> None:
            try:
                while len(latencies_ns) < total and not stop.is_set():
                    msgs = consumer.consume(1000, timeout=0.05)
                    now = time.perf_counter_ns()
                    for m in msgs:
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
            start = time.perf_counter()
            for i in range(total):
                due = start + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                producer.produce(topic, struct.pack(">q", time.perf_counter_ns()) + pad)
                producer.poll(0)
                if deadline.expired():
                    raise TimeoutError(f"sent only {i} of {total} records within {timeout:.0f}s")
            producer.flush(max(deadline.left(), 0.0))
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


def aiokafka_produce(bootstrap: str, topic: str, records: int, timeout: float) -> Result:
    """Create a 1-partition ``topic``; produce with create_batch()/send_batch() (acks=all)."""
    create_topic(bootstrap, topic, 1, timeout=min(30.0, timeout))
    return asyncio.run(asyncio.wait_for(_aiokafka_produce(bootstrap, topic, records), timeout))


async def _aiokafka_produce(bootstrap: str, topic: str, records: int) -> Result:
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
        started = time.perf_counter()
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
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {
        "records": records,
        "bytes": records * RECORD_BYTES,
        "batches": len(pending),
        **_rate(records, records * RECORD_BYTES, elapsed),
    }


def aiokafka_consume(bootstrap: str, topic: str, expected: int, timeout: float) -> Result:
    """Read ``expected`` records of partition 0 with getmany() from the beginning."""
    return asyncio.run(asyncio.wait_for(_aiokafka_consume(bootstrap, topic, expected), timeout))


async def _aiokafka_consume(bootstrap: str, topic: str, expected: int) -> Result:
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
        started = time.perf_counter()
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        count = 0
        nbytes = 0
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for batch in batches.values():
                count += len(batch)
                nbytes += sum(len(r.value) for r in batch)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"records": count, "bytes": nbytes, **_rate(count, nbytes, elapsed)}


# --- consumer groups (Broker II) -------------------------------------------------------

#: Group timings the workloads use (both brokers get the same); Kafka's minimum session is 6 s.
GROUP_CONFIG = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}


def librdkafka_group_consume(
    bootstrap: str, topic: str, partitions: int, expected: int, members: int, timeout: float
) -> Result:
    """``members`` consumers in one new group subscribe to ``topic`` and read all ``expected``.

    The group is new and starts at the earliest offset, so every member reads
    each partition contiguously from an offset already read (or 0): the
    distinct records read from a partition are its highest offset seen + 1.
    Done when those add up to ``expected``; records read twice after a
    rebalance count as duplicates. Auto commit stays on (the default).
    (End offsets are not asked for: Tansu 0.6.0 answers ListOffsets(latest)
    with the last batch's base offset + 1.)
    """
    from confluent_kafka import Consumer

    deadline = _Deadline(timeout)
    group = f"bench-group-{uuid.uuid4().hex[:8]}"
    counts = [0] * members
    first_ms: list[float | None] = [None] * members
    seen: list[dict[int, int]] = [{} for _ in range(members)]
    assignments: list[list[list[int]]] = [[] for _ in range(members)]
    errors: list[str] = []
    done = threading.Event()
    finished_at: list[float] = []
    started = time.perf_counter()

    def distinct() -> int:
        return sum(max((s.get(p, -1) for s in seen), default=-1) + 1 for p in range(partitions))

    def complete() -> bool:
        return distinct() >= expected

    def member(i: int) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "error_cb": lambda err: errors.append(f"member {i}: client error: {err}"),
                **GROUP_CONFIG,
            }
        )
        try:
            consumer.subscribe(
                [topic],
                on_assign=lambda _c, tps: assignments[i].append(sorted(t.partition for t in tps)),
            )
            last = seen[i]
            while not done.is_set() and not deadline.expired():
                msgs = consumer.consume(10_000, timeout=0.2)
                for m in msgs:
                    if m.error() is not None:
                        errors.append(str(m.error()))
                        continue
                    last[m.partition()] = m.offset()
                if msgs and first_ms[i] is None:
                    first_ms[i] = (time.perf_counter() - started) * 1000
                counts[i] += len(msgs)
                if msgs and complete() and not done.is_set():
                    finished_at.append(time.perf_counter())
                    done.set()
        except Exception as exc:
            errors.append(f"member {i}: {type(exc).__name__}: {exc}")
        finally:
            consumer.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(deadline.left(), 0.0) + 15)
    done.set()
    if not finished_at:
        raise TimeoutError(
            f"group read {distinct()} of {expected} records within {timeout:.0f}s "
            f"(per member {counts}; assignments {assignments}); errors: {errors[:3]}"
        )
    elapsed = finished_at[0] - started
    total = sum(counts)
    return {
        "records": expected,
        "consumed": total,
        "duplicates": total - expected,
        "per_member": counts,
        "first_fetch_ms": first_ms,
        "assignments": assignments,
        "client_errors": errors[:5],
        **_rate(expected, expected * RECORD_BYTES, elapsed),
    }


def librdkafka_rebalance(bootstrap: str, topic: str, timeout: float) -> Result:
    """Join-to-first-fetch times: member A joins a new group alone; then member B joins.

    ``join_ms``: A's subscribe -> A's first record. ``rebalance_ms``: B's
    subscribe -> B's first record (A must give up partitions, both rejoin).
    ``reassigned_ms``: B's subscribe -> A's second assignment. Auto commit is
    off, so B's partitions start from the earliest offset and always have data.
    """
    from confluent_kafka import Consumer

    deadline = _Deadline(timeout)
    group = f"bench-rebalance-{uuid.uuid4().hex[:8]}"
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "error_cb": lambda err: errors.append(f"client error: {err}"),
        **GROUP_CONFIG,
    }
    marks: dict[str, float] = {}
    assignments: dict[str, list[list[int]]] = {"a": [], "b": []}
    errors: list[str] = []
    stop = threading.Event()
    got_first = {"a": threading.Event(), "b": threading.Event()}

    def member(name: str) -> None:
        consumer = Consumer(config)

        def on_assign(_c: Any, tps: Any) -> None:
            assignments[name].append(sorted(t.partition for t in tps))
            marks.setdefault(f"{name}_assigned_{len(assignments[name])}", time.perf_counter())

        try:
            marks[f"{name}_subscribe"] = time.perf_counter()
            consumer.subscribe([topic], on_assign=on_assign)
            while not stop.is_set() and not deadline.expired():
                msgs = consumer.consume(1000, timeout=0.05)
                ok = [m for m in msgs if m.error() is None]
                errors.extend(str(m.error()) for m in msgs if m.error() is not None)
                if ok and not got_first[name].is_set():
                    marks[f"{name}_first"] = time.perf_counter()
                    got_first[name].set()
        except Exception as exc:
            errors.append(f"member {name}: {type(exc).__name__}: {exc}")
        finally:
            consumer.close()

    a = threading.Thread(target=member, args=("a",))
    b = threading.Thread(target=member, args=("b",))
    a.start()
    try:
        if not got_first["a"].wait(max(deadline.left(), 0.0)):
            raise TimeoutError(
                f"member A got no record within {timeout:.0f}s; "
                f"assignments {assignments['a']}; errors: {errors[:3]}"
            )
        b.start()
        if not got_first["b"].wait(max(deadline.left(), 0.0)):
            raise TimeoutError(
                f"member B got no record after joining within {timeout:.0f}s; "
                f"assignments {assignments}; errors: {errors[:3]}"
            )
        # Give A a moment to finish its own rejoin so its assignment is recorded.
        while len(assignments["a"]) < 2 and not deadline.expired():
            time.sleep(0.01)
    finally:
        stop.set()
        a.join(15)
        if b.ident is not None:
            b.join(15)

    def ms(start: str, end: str) -> float | None:
        if start in marks and end in marks:
            return (marks[end] - marks[start]) * 1000
        return None

    return {
        "join_ms": ms("a_subscribe", "a_first"),
        "rebalance_ms": ms("b_subscribe", "b_first"),
        "reassigned_ms": ms("b_subscribe", "a_assigned_2"),
        "assignments": assignments,
        "client_errors": errors[:5],
    }
