"""Consumer-group workloads (Broker II): group throughput and rebalance time.

Who calls what: like ``benchmarks.workloads``, each function runs in its own
child process started by ``benchmarks.broker`` through
``benchmarks.common.run_isolated`` and returns a JSON-serialisable dict or
raises with a message saying what went wrong. Both use confluent-kafka
(librdkafka) consumers subscribed to a 6-partition topic that
``workloads.librdkafka_produce`` filled, with the same :data:`GROUP_CONFIG`
for every broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from benchmarks.workloads import RECORD_BYTES, Deadline, Meter, Result, throughput_figures

#: Group timings the workloads use (both brokers get the same); Kafka's minimum session is 6 s.
GROUP_CONFIG = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}


def librdkafka_group_consume(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int,
    members: int,
    timeout: float,
    broker_pid: int | None = None,
    consumer_config: dict[str, str] | None = None,
) -> Result:
    """``members`` consumers in one new group subscribe to ``topic`` and read all ``expected``.

    The group is new and starts at the earliest offset, so every member reads
    each partition contiguously from an offset already read (or 0): the
    distinct records read from a partition are its highest offset seen + 1.
    Done when those add up to ``expected``; records read twice after a
    rebalance count as duplicates. Auto commit stays on (the default). The
    rate is timed from the group's first record (joining is timed by
    :func:`librdkafka_rebalance`); ``first_fetch_ms`` gives each member's
    subscribe -> first record.
    (End offsets are not asked for: Tansu 0.6.0 answers ListOffsets(latest)
    with the last batch's base offset + 1.)
    """
    from confluent_kafka import Consumer

    deadline = Deadline(timeout)
    group = f"bench-group-{uuid.uuid4().hex[:8]}"
    counts = [0] * members
    first_ms: list[float | None] = [None] * members
    seen: list[dict[int, int]] = [{} for _ in range(members)]
    assignments: list[list[list[int]]] = [[] for _ in range(members)]
    errors: list[str] = []
    done = threading.Event()
    finish = threading.Lock()
    meters: list[Meter] = []  # started at the group's first record
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
                **(consumer_config or {}),
            }
        )
        try:
            consumer.subscribe(
                [topic],
                on_assign=lambda _c, tps: assignments[i].append(sorted(t.partition for t in tps)),
            )
            last = seen[i]
            while not done.is_set() and not deadline.expired():
                # consume(n) waits for n records or the timeout: keep the tail wait short
                msgs = consumer.consume(max(1, min(10_000, expected - distinct())), timeout=0.02)
                for m in msgs:
                    if m.error() is not None:
                        errors.append(str(m.error()))
                        continue
                    last[m.partition()] = m.offset()
                if msgs and first_ms[i] is None:
                    first_ms[i] = (time.perf_counter() - started) * 1000
                    with finish:
                        if not meters:
                            meters.append(Meter(broker_pid))
                counts[i] += len(msgs)
                if msgs and complete():
                    with finish:
                        if not done.is_set():
                            meters[0].stop()
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
    if not meters or meters[0].stopped is None:
        raise TimeoutError(
            f"group read {distinct()} of {expected} records within {timeout:.0f}s "
            f"(per member {counts}; assignments {assignments}); errors: {errors[:3]}"
        )
    total = sum(counts)
    return {
        "records": expected,
        "consumed": total,
        "duplicates": total - expected,
        "per_member": counts,
        "first_fetch_ms": first_ms,
        "assignments": assignments,
        "client_errors": errors[:5],
        **throughput_figures(expected, expected * RECORD_BYTES, meters[0]),
    }


def librdkafka_rebalance(bootstrap: str, topic: str, timeout: float) -> Result:
    """Join-to-first-fetch times: member A joins a new group alone; then member B joins.

    ``join_ms``: A's subscribe -> A's first record. ``rebalance_ms``: B's
    subscribe -> B's first record (A must give up partitions, both rejoin).
    ``reassigned_ms``: B's subscribe -> A's second assignment. Auto commit is
    off, so B's partitions start from the earliest offset and always have data.
    """
    from confluent_kafka import Consumer

    deadline = Deadline(timeout)
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
                msg = consumer.poll(0.05)  # returns with the first record available
                if msg is None:
                    continue
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    continue
                if not got_first[name].is_set():
                    marks[f"{name}_first"] = time.perf_counter()
                    got_first[name].set()
                    # Idle (but keep polling, which serves the rebalance) instead of
                    # burning the GIL on records nobody measures.
                    consumer.pause(consumer.assignment())
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
