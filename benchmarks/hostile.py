"""Hostile input against a broker process: memory, a good client's latency, log volume.

``python -m benchmarks.hostile`` starts ``python -m backbone.broker`` (fresh data dir,
free loopback port, ``--log-level info``) and measures, in one bounded run:

1. the broker's RSS before, during and after ``--attackers`` connections that each
   send only a 4-byte frame size of ``--frame-mib`` MiB and a Produce request header,
   then hold the connection open;
2. a well-behaved librdkafka producer's latency (acks=all, one record, wait for its
   delivery) without the attack and while the attack connections are open (p50, p99);
3. the bytes and lines the broker logs while ``--garbage`` connections each send three
   malformed frames and close.

Figures only: nothing is asserted (tests assert behaviour, never speed). Extra broker
flags go after ``--`` (e.g. ``-- --max-frame-bytes 104857600``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RunningBroker, start_backbone


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _header(api_key: int, version: int, correlation_id: int, client_id: bytes) -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def _attack(port: int, count: int, frame_bytes: int) -> list[socket.socket]:
    """Connections that announce a huge Produce frame, send its header, and stall."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(struct.pack(">i", frame_bytes) + _header(0, 9, i, b"attack"))
        socks.append(sock)
    return socks


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latencies(bootstrap: str, count: int, topic: str, during: Any = None) -> dict[str, float]:
    """Produce ``count`` records one at a time (acks=all); ``during()`` runs after 10."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "message.timeout.ms": 20000}
    )
    took: list[float] = []
    errors: list[object] = []
    for i in range(count + 10):
        if i == 10 and during is not None:
            threading.Thread(target=during, daemon=True).start()
        started = time.perf_counter()
        producer.produce(topic, b"x" * 100, on_delivery=lambda e, _m: errors.append(e))
        producer.flush(30)
        if i >= 10:
            took.append(time.perf_counter() - started)
    failures = sum(1 for e in errors[10:] if e is not None)
    return {
        "p50_ms": round(_percentile(took, 0.5) * 1000, 2),
        "p99_ms": round(_percentile(took, 0.99) * 1000, 2),
        "max_ms": round(max(took) * 1000, 2),
        "failures": failures,
    }


def _garbage(port: int, count: int, parallel: int = 50) -> int:
    """``count`` connections, each: three malformed frames, read until EOF, close.
    Returns how many the broker closed itself (EOF) within 10 s."""
    bad = struct.pack(">i", 3) + b"\xff\x01\x02"
    closed = 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal closed
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(bad * 3)
            s.settimeout(10)
            while s.recv(65536):
                pass
            with lock:
                closed += 1

    for start in range(0, count, parallel):
        threads = [threading.Thread(target=one) for _ in range(min(parallel, count - start))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    return closed


def _log_size(broker: RunningBroker) -> tuple[int, int]:
    data = broker.log_path.read_bytes()
    return len(data), data.count(b"\n")


def _settle(broker: RunningBroker, quiet_s: float = 1.0, limit_s: float = 20.0) -> None:
    """Wait until the broker's log stops growing for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    last, since = _log_size(broker), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _log_size(broker)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def run(args: argparse.Namespace, broker_args: Sequence[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"broker_args": list(broker_args)}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        extra = ["--log-level", "info", *broker_args]
        with start_backbone(Path(tmp), extra) as broker:
            port = int(broker.bootstrap.rsplit(":", 1)[1])
            pid = broker.pid
            result["good_client_alone"] = _latencies(broker.bootstrap, args.produce, "good")
            result["rss_mib_before_attack"] = round(_rss_mib(pid), 1)
            attackers: list[socket.socket] = []
            peak = [0.0]
            opened = threading.Event()

            def attack() -> None:
                attackers.extend(_attack(port, args.attackers, args.frame_mib << 20))
                opened.set()

            def sample() -> None:
                while not stop.is_set():
                    with contextlib.suppress(OSError):
                        peak[0] = max(peak[0], _rss_mib(pid))
                    time.sleep(0.05)

            stop = threading.Event()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            result["good_client_under_attack"] = _latencies(
                broker.bootstrap, args.produce, "good", during=attack
            )
            opened.wait(10)
            result["rss_mib_during_attack"] = round(_rss_mib(pid), 1)
            stop.set()
            sampler.join(5)
            result["rss_mib_peak_during_attack"] = round(peak[0], 1)
            still_open = 0
            for sock in attackers:
                sock.setblocking(False)
                try:
                    still_open += 1 if sock.recv(1) else 0
                except BlockingIOError:
                    still_open += 1
                except OSError:
                    pass
            result["attack_connections_still_open"] = still_open
            for sock in attackers:
                sock.close()
            time.sleep(2)
            result["rss_mib_after_attack"] = round(_rss_mib(pid), 1)

            _settle(broker)
            before_bytes, before_lines = _log_size(broker)
            started = time.monotonic()
            closed = _garbage(port, args.garbage)
            _settle(broker)
            after_bytes, after_lines = _log_size(broker)
            result["garbage"] = {
                "connections": args.garbage,
                "closed_by_broker": closed,
                "seconds": round(time.monotonic() - started, 1),
                "log_bytes": after_bytes - before_bytes,
                "log_lines": after_lines - before_lines,
                "rss_mib_after": round(_rss_mib(pid), 1),
            }
            result["good_client_after"] = _latencies(broker.bootstrap, 50, "good")
            result["broker_alive"] = broker.alive()
            if args.show_log:
                text = broker.log_path.read_text(errors="replace")
                result["log_head"] = text[:3000]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    broker_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, broker_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--attackers", type=int, default=10)
    parser.add_argument("--frame-mib", type=int, default=100)
    parser.add_argument("--produce", type=int, default=300, help="records per latency run")
    parser.add_argument("--garbage", type=int, default=2000)
    parser.add_argument("--show-log", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args, broker_args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
