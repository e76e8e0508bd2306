"""Broker benchmark: the same Kafka client workloads against Tansu and Backbone's broker.

Run it with ``make bench`` or ``python -m benchmarks.broker [options]``
(``python -m benchmarks`` runs this and every other benchmark module).

Who calls what: :func:`main` parses the command line and calls :func:`run`,
which starts each broker in turn as its own process on a free loopback port
(Tansu with in-memory storage; Backbone's broker with a fresh temporary data
dir and its default flush policy, fsync before acks=all), runs every workload
of :data:`WORKLOADS` in a fresh child process bounded by a timeout, stops the
broker, and returns one JSON-serialisable report. :func:`render` turns the
report into the side-by-side table (ratio = Backbone / Tansu).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import group_workloads, profiling, workloads
from benchmarks.common import (
    Result,
    RunningBroker,
    backbone_version,
    machine_facts,
    run_isolated,
    save_results,
    start_backbone,
    start_tansu,
    tansu_version,
)
from benchmarks.report import failed, merge_rounds, render, summary

BROKERS = ("tansu", "backbone")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Options:
    """What to run; :func:`parse_args` builds it from the command line."""

    records: int = 1_000_000
    latency_seconds: float = 10.0
    latency_rate: int = 2000
    fetch_wait_ms: int = 100
    small_rate: int = 2000
    small_fetch_wait_ms: int = 500
    only: str | None = None
    workloads: list[str] | None = None
    backbone_args: list[str] = field(default_factory=list)
    json_path: Path | None = DEFAULT_RESULTS
    timeout_scale: float = 1.0
    profile_dir: Path | None = None
    repeat: int = 1
    consumer_config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """One row group of the table: a client function and how to call it."""

    key: str
    label: str
    kind: str  # "throughput" | "latency" | "group" | "rebalance"
    func: Callable[..., Result]
    kwargs: Callable[[str, dict[str, str], Options], dict[str, Any]]
    timeout: Callable[[Options], float]
    needs: str | None = None  # key of the workload that must have succeeded first


def _throughput_timeout(opts: Options) -> float:
    return (60.0 + opts.records / 10_000) * opts.timeout_scale


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "rdk_produce_1p",
        "librdkafka produce, 1 partition",
        "throughput",
        workloads.librdkafka_produce,
        lambda b, t, o: {"bootstrap": b, "topic": t["1p"], "partitions": 1, "records": o.records},
        _throughput_timeout,
    ),
    Workload(
        "rdk_consume_1p",
        "librdkafka consume, 1 partition",
        "throughput",
        workloads.librdkafka_consume,
        lambda b, t, o: {"bootstrap": b, "topic": t["1p"], "partitions": 1, "expected": o.records},
        _throughput_timeout,
        needs="rdk_produce_1p",
    ),
    Workload(
        "rdk_consume_1p_nobackoff",
        "librdkafka consume, 1 partition, fetch.queue.backoff.ms=0",
        "throughput",
        workloads.librdkafka_consume,
        lambda b, t, o: {
            "bootstrap": b,
            "topic": t["1p"],
            "partitions": 1,
            "expected": o.records,
            # librdkafka's default waits 1 s each time queued.min.messages are queued;
            # without it the client is busy all run, so the figure shows fetch speed
            "consumer_config": {"fetch.queue.backoff.ms": "0"},
        },
        _throughput_timeout,
        needs="rdk_produce_1p",
    ),
    Workload(
        "kcat_consume_1p",
        "kcat consume, 1 partition",
        "throughput",
        workloads.kcat_consume,
        lambda b, t, o: {"bootstrap": b, "topic": t["1p"], "expected": o.records},
        _throughput_timeout,
        needs="rdk_produce_1p",
    ),
    Workload(
        "rdk_produce_6p",
        "librdkafka produce, 6 partitions",
        "throughput",
        workloads.librdkafka_produce,
        lambda b, t, o: {"bootstrap": b, "topic": t["6p"], "partitions": 6, "records": o.records},
        _throughput_timeout,
    ),
    Workload(
        "rdk_consume_6p",
        "librdkafka consume, 6 partitions",
        "throughput",
        workloads.librdkafka_consume,
        lambda b, t, o: {"bootstrap": b, "topic": t["6p"], "partitions": 6, "expected": o.records},
        _throughput_timeout,
        needs="rdk_produce_6p",
    ),
    Workload(
        "aio_produce_1p",
        "aiokafka produce (send_batch), 1 partition",
        "throughput",
        workloads.aiokafka_produce,
        lambda b, t, o: {"bootstrap": b, "topic": t["aio"], "records": o.records},
        _throughput_timeout,
    ),
    Workload(
        "aio_consume_1p",
        "aiokafka consume (getmany), 1 partition",
        "throughput",
        workloads.aiokafka_consume,
        lambda b, t, o: {"bootstrap": b, "topic": t["aio"], "expected": o.records},
        _throughput_timeout,
        needs="aio_produce_1p",
    ),
    Workload(
        "latency",
        "end-to-end latency (librdkafka)",
        "latency",
        workloads.librdkafka_latency,
        lambda b, t, o: {
            "bootstrap": b,
            "topic": t["latency"],
            "rate": o.latency_rate,
            "seconds": o.latency_seconds,
            "fetch_wait_ms": o.fetch_wait_ms,
        },
        lambda o: (60.0 + 2 * o.latency_seconds) * o.timeout_scale,
    ),
    Workload(
        "small_requests",
        "single-record produce requests + long-polling consumer (librdkafka)",
        "requests",
        workloads.librdkafka_small_requests,
        lambda b, t, o: {
            "bootstrap": b,
            "topic": t["small"],
            "rate": o.small_rate,
            "seconds": o.latency_seconds,
            "fetch_wait_ms": o.small_fetch_wait_ms,
        },
        lambda o: (60.0 + 2 * o.latency_seconds) * o.timeout_scale,
    ),
    Workload(
        "group_consume_6p",
        "consumer group, 2 members, 6 partitions",
        "throughput",
        group_workloads.librdkafka_group_consume,
        lambda b, t, o: {
            "bootstrap": b,
            "topic": t["6p"],
            "partitions": 6,
            "expected": o.records,
            "members": 2,
        },
        _throughput_timeout,
        needs="rdk_produce_6p",
    ),
    Workload(
        "rebalance",
        "consumer group rebalance",
        "rebalance",
        group_workloads.librdkafka_rebalance,
        lambda b, t, o: {"bootstrap": b, "topic": t["6p"]},
        lambda o: 60.0 * o.timeout_scale,
        needs="rdk_produce_6p",
    ),
)
WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)
#: Workloads whose librdkafka consumers take ``--consumer-config`` overrides.
CONFIGURABLE_CONSUMERS = (
    "rdk_consume_1p",
    "rdk_consume_1p_nobackoff",
    "rdk_consume_6p",
    "group_consume_6p",
)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _starter(name: str, workdir: Path, opts: Options) -> AbstractContextManager[RunningBroker]:
    if name == "tansu":
        return start_tansu(workdir)
    return start_backbone(workdir, opts.backbone_args)


def _run_broker(name: str, workdir: Path, opts: Options) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    topics = {k: f"bench-{k}-{run_id}" for k in ("1p", "6p", "aio", "latency", "small")}
    selected = [w for w in WORKLOADS if opts.workloads is None or w.key in opts.workloads]
    report: dict[str, Any] = {"workloads": {}}
    try:
        with _starter(name, workdir, opts) as broker:
            report["broker"] = {
                "version": broker.version,
                "pid": broker.pid,
                "bootstrap": broker.bootstrap,
                **broker.details,
            }
            _progress(f"{name} {broker.version} listening on {broker.bootstrap} (pid {broker.pid})")
            for w in selected:
                results = report["workloads"]
                if (dead := broker.death_note()) is not None:
                    results[w.key] = {"error": dead}
                    continue
                if w.needs is not None and "error" in results.get(w.needs, {}):
                    results[w.key] = {"skipped": f"needs {w.needs}, which failed"}
                    continue
                if w.needs is not None and w.needs not in results:
                    results[w.key] = {"skipped": f"needs {w.needs}, which was not selected"}
                    continue
                timeout = w.timeout(opts)
                started = time.monotonic()
                kwargs = {**w.kwargs(broker.bootstrap, topics, opts), "timeout": timeout - 10}
                if w.kind in ("throughput", "requests"):
                    kwargs["broker_pid"] = broker.pid
                if opts.consumer_config and w.key in CONFIGURABLE_CONSUMERS:
                    kwargs["consumer_config"] = {
                        **kwargs.get("consumer_config", {}),
                        **opts.consumer_config,
                    }
                if opts.profile_dir is not None and name == "backbone":
                    out = opts.profile_dir / f"{name}-{w.key}.txt"
                    with profiling.record(broker.pid, out):
                        result = run_isolated(w.func, kwargs, timeout=timeout, broker=broker)
                    spots = profiling.hot_spots(out, seconds=time.monotonic() - started)
                    report.setdefault("profiles", {})[w.key] = {"file": str(out), **spots}
                else:
                    result = run_isolated(w.func, kwargs, timeout=timeout, broker=broker)
                results[w.key] = result
                _progress(
                    f"  {name}: {w.label}: {summary(w, result)} ({time.monotonic() - started:.1f}s)"
                )
    except RuntimeError as exc:  # the broker did not start
        report["error"] = str(exc)
        for w in selected:
            report["workloads"].setdefault(w.key, {"error": f"broker did not start: {exc}"})
        _progress(f"{name}: {exc}")
    return report


def run(opts: Options) -> dict[str, Any]:
    """Run every selected workload against every selected broker; return the report dict."""
    brokers = [b for b in BROKERS if opts.only in (None, b)]
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "versions": _versions(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "brokers": {},
    }
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in brokers}
    with tempfile.TemporaryDirectory(prefix="backbone-bench-") as tmp:
        for i in range(opts.repeat):
            for name in brokers:  # alternate, so load drifts hit both brokers alike
                if opts.repeat > 1:
                    _progress(f"round {i + 1} of {opts.repeat}")
                rounds[name].append(_run_broker(name, Path(tmp), opts))
    for name in brokers:
        report["brokers"][name] = merge_rounds(rounds[name])
    return report


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import aiokafka
    import confluent_kafka

    return {
        "tansu": tansu_version(),
        "backbone": backbone_version(),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "aiokafka": aiokafka.__version__,
        "python": sys.version.split()[0],
    }


# --- command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line (``--quick``, ``--only``, ``--records`` ...)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.broker",
        description="Kafka client workloads against Tansu and Backbone's broker, side by side.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100,000 records, 3 s latency run"
    )
    parser.add_argument(
        "--records",
        type=int,
        help="records per throughput workload (default 1,000,000; 100,000 with --quick)",
    )
    parser.add_argument("--only", choices=BROKERS, help="run against one broker only")
    parser.add_argument("--workloads", help=f"comma-separated subset of {', '.join(WORKLOAD_KEYS)}")
    parser.add_argument(
        "--latency-seconds",
        type=float,
        help="paced latency run length (default 10; 3 with --quick)",
    )
    parser.add_argument("--latency-rate", type=int, default=2000, help="msg/s (default 2000)")
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=100,
        help="consumer fetch.wait.max.ms in the latency run (default 100)",
    )
    parser.add_argument(
        "--small-rate",
        type=int,
        default=2000,
        help="single-record produce requests/s in small_requests (default 2000; "
        "runs --latency-seconds)",
    )
    parser.add_argument(
        "--small-fetch-wait-ms",
        type=int,
        default=500,
        help="the long-polling consumer's fetch.wait.max.ms in small_requests (default 500)",
    )
    parser.add_argument(
        "--backbone-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `python -m backbone.broker` (repeatable), "
        "e.g. --backbone-arg=--flush=interval",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"write the report here (default {DEFAULT_RESULTS}); '-' = none",
    )
    parser.add_argument(
        "--timeout-scale",
        type=float,
        default=1.0,
        help="multiply every workload timeout by this factor",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample Backbone's broker with py-spy during each workload; "
        "collapsed stacks go to DIR, hot spots are printed",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run everything N times, brokers alternating, and report medians (default 1)",
    )
    parser.add_argument(
        "--consumer-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka setting for the throughput consumers (repeatable), "
        "e.g. fetch.queue.backoff.ms=0",
    )
    ns = parser.parse_args(argv)
    consumer_config = {}
    for item in ns.consumer_config:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--consumer-config takes KEY=VALUE (got {item!r})")
        consumer_config[key.strip()] = value.strip()
    if ns.repeat < 1:
        parser.error(f"--repeat must be at least 1 (got {ns.repeat})")
    records = ns.records if ns.records is not None else (100_000 if ns.quick else 1_000_000)
    if records <= 0:
        parser.error(f"--records must be a positive number of records (got {records})")
    seconds = ns.latency_seconds if ns.latency_seconds is not None else (3.0 if ns.quick else 10.0)
    if seconds <= 0 or ns.latency_rate <= 0:
        parser.error("--latency-seconds and --latency-rate must be positive")
    if ns.small_rate <= 0 or ns.small_fetch_wait_ms < 0:
        parser.error(
            f"--small-rate must be positive and --small-fetch-wait-ms at least 0 "
            f"(got {ns.small_rate} and {ns.small_fetch_wait_ms})"
        )
    chosen = None
    if ns.workloads:
        chosen = [k.strip() for k in ns.workloads.split(",") if k.strip()]
        unknown = sorted(set(chosen) - set(WORKLOAD_KEYS))
        if unknown:
            parser.error(
                f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOAD_KEYS)}"
            )
    return Options(
        records=records,
        latency_seconds=seconds,
        latency_rate=ns.latency_rate,
        fetch_wait_ms=ns.fetch_wait_ms,
        small_rate=ns.small_rate,
        small_fetch_wait_ms=ns.small_fetch_wait_ms,
        only=ns.only,
        workloads=chosen,
        backbone_args=list(ns.backbone_arg),
        json_path=None if str(ns.json) == "-" else ns.json,
        timeout_scale=ns.timeout_scale,
        profile_dir=ns.profile,
        repeat=ns.repeat,
        consumer_config=consumer_config,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run, print the table, save JSON; exit 1 if any workload failed."""
    opts = parse_args(argv)
    report = run(opts)
    print(render(report, WORKLOADS), flush=True)
    if opts.json_path is not None:
        save_results(opts.json_path, report)
        print(f"\nresults saved to {opts.json_path}")
    return 1 if any(True for _ in failed(report)) else 0


if __name__ == "__main__":
    sys.exit(main())
