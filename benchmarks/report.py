"""Turning benchmark results into the report: medians over rounds, tables, failures.

Who calls what: ``benchmarks.broker`` collects one result dict per broker and
round, merges the rounds with :func:`merge_rounds`, prints :func:`render`'s
text, and uses :func:`failed` for its exit code and :func:`summary` for
progress lines. Nothing here touches a broker or a client.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from benchmarks import profiling
from benchmarks.common import Result, format_table
from benchmarks.workloads import RECORD_BYTES


class WorkloadInfo(Protocol):
    """What rendering needs of a workload (``benchmarks.broker.Workload`` has it)."""

    key: str
    label: str
    kind: str


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One broker's report from its rounds: the median of every figure over successful rounds.

    A workload that failed in every round keeps the first round's error; one
    that failed in some rounds reports the median of the others plus
    ``failed_rounds`` and the first error. All rounds stay under ``rounds``.
    """
    merged = dict(rounds[0])
    if len(rounds) == 1:
        return merged
    merged["workloads"] = {}
    for key, first in rounds[0]["workloads"].items():
        results = [r["workloads"].get(key, {}) for r in rounds]
        ok = [r for r in results if "error" not in r and "skipped" not in r]
        if not ok:
            merged["workloads"][key] = dict(first)
            continue
        combined = dict(ok[0])
        for fld, value in ok[0].items():
            values = [r.get(fld) for r in ok]
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and all(isinstance(v, int | float) for v in values):
                combined[fld] = statistics.median(values)
        combined["rounds"] = results
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            combined["failed_rounds"] = len(errors)
            combined["first_error"] = errors[0]
        merged["workloads"][key] = combined
    return merged


def summary(w: WorkloadInfo, r: Result) -> str:
    """One line for the progress log: the workload's headline figure or its failure."""
    if "error" in r:
        return f"failed: {r['error']}"
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if w.kind == "latency":
        return f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
    if w.kind == "requests":
        return (
            f"{r['produce_requests_per_s']:,.0f} produce requests/s, "
            f"broker CPU {r.get('broker_cpu_pct', 0):.0f}%, "
            f"{r.get('broker_cpu_us_per_request', 0):.0f} us/request"
        )
    if w.kind == "rebalance":
        return f"join {_ms(r.get('join_ms'))}, rebalance {_ms(r.get('rebalance_ms'))}"
    return f"{r['records_per_s']:,.0f} records/s, {r['mb_per_s']:.1f} MB/s"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def _rows(w: WorkloadInfo) -> list[tuple[str, str, Callable[[float], str]]]:
    """(row label, result field, formatter) for one workload."""
    if w.kind == "latency":
        return [
            (f"{w.label} p50 (ms)", "p50_ms", lambda v: f"{v:,.2f}"),
            (f"{w.label} p99 (ms)", "p99_ms", lambda v: f"{v:,.2f}"),
            ("  of which produce ack p50 (ms)", "ack_p50_ms", lambda v: f"{v:,.2f}"),
            ("  of which produce ack p99 (ms)", "ack_p99_ms", lambda v: f"{v:,.2f}"),
        ]
    if w.kind == "requests":
        return [
            ("small requests: produce requests/s", "produce_requests_per_s", lambda v: f"{v:,.0f}"),
            ("  records per produce request", "records_per_request", lambda v: f"{v:,.2f}"),
            ("  consumer fetch requests/s", "fetch_requests_per_s", lambda v: f"{v:,.0f}"),
            ("  broker CPU (% of one core)", "broker_cpu_pct", lambda v: f"{v:,.1f}"),
            (
                "  broker CPU per produce request (us)",
                "broker_cpu_us_per_request",
                lambda v: f"{v:,.0f}",
            ),
            (
                "  broker CPU per request, produce or fetch (us)",
                "broker_cpu_us_per_any_request",
                lambda v: f"{v:,.0f}",
            ),
        ]
    if w.kind == "rebalance":
        return [
            ("group join -> first fetch (ms)", "join_ms", lambda v: f"{v:,.0f}"),
            ("rebalance (2nd member) -> first fetch (ms)", "rebalance_ms", lambda v: f"{v:,.0f}"),
        ]
    return [
        (f"{w.label} (records/s)", "records_per_s", lambda v: f"{v:,.0f}"),
        (f"{w.label} (MB/s)", "mb_per_s", lambda v: f"{v:,.1f}"),
    ]


def _cell(result: Result | None, fld: str, fmt: Callable[[float], str]) -> tuple[str, float | None]:
    if result is None:
        return "-", None
    if "error" in result:
        return _shorten(f"failed: {result['error']}"), None
    if "skipped" in result:
        return "skipped", None
    value = result.get(fld)
    if value is None:
        return "n/a", None
    return fmt(value), float(value)


def _shorten(text: str, limit: int = 36) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(report: dict[str, Any], workloads: Sequence[WorkloadInfo]) -> str:
    """The human-readable report: facts, the side-by-side table, and full failure reasons."""
    m, v, o = report["machine"], report["versions"], report["options"]
    brokers = list(report["brokers"])
    lines = [
        "Backbone broker benchmark",
        f"machine: {m['usable_cores']} usable cores of {m['cpu_count']} ({m['cpu_model']}), "
        f"load {m['load_avg_1m']}, Python {m['python']}, {m['platform']}",
        f"versions: tansu {v['tansu']}, backbone {v['backbone']}, "
        f"confluent-kafka {v['confluent_kafka']} (librdkafka {v['librdkafka']}), "
        f"aiokafka {v['aiokafka']}",
        f"workload: {o['records']:,} x {RECORD_BYTES}-byte records, acks=all, "
        f"linger 5 ms, batch 1 MB; latency: {o['latency_rate']:,} msg/s for "
        f"{o['latency_seconds']:g} s, linger 0, fetch.wait.max.ms {o['fetch_wait_ms']}",
    ]
    if o.get("consumer_config"):
        settings = ", ".join(f"{k}={v}" for k, v in o["consumer_config"].items())
        lines.append(f"librdkafka throughput consumers: {settings}")
    if o.get("repeat", 1) > 1:
        lines.append(f"figures: medians of {o['repeat']} rounds, brokers alternating")
    for name in brokers:
        info = report["brokers"][name].get("broker", {})
        if info:
            lines.append(f"{name}: {info.get('version')} storage {info.get('storage')}")
    header = ["workload", *(n.capitalize() for n in brokers)]
    both = brokers == ["tansu", "backbone"]
    if both:
        header.append("Backbone/Tansu")
    rows: list[list[str]] = []
    for w in workloads:
        if not any(w.key in report["brokers"][n]["workloads"] for n in brokers):
            continue
        for label, fld, fmt in _rows(w):
            cells, values = [label], []
            for n in brokers:
                text, value = _cell(report["brokers"][n]["workloads"].get(w.key), fld, fmt)
                cells.append(text)
                values.append(value)
            if both:
                tansu, backbone = values
                cells.append(f"{backbone / tansu:.2f}x" if tansu and backbone else "-")
            rows.append(cells)
    lines += ["", format_table(header, rows)]
    if both:
        lines.append(
            "ratio = Backbone / Tansu: higher is better for records/s and MB/s, "
            "lower is better for latencies and times"
        )
    lines += _cpu_table(report, workloads)
    failures = []
    for n in brokers:
        for w in workloads:
            r = report["brokers"][n]["workloads"].get(w.key, {})
            if "error" in r:
                failures.append(f"  {n} / {w.key}: {r['error']}")
            elif "first_error" in r:
                failures.append(
                    f"  {n} / {w.key}: failed {r['failed_rounds']} of {len(r['rounds'])} "
                    f"rounds (median of the others shown); first: {r['first_error']}"
                )
    if failures:
        lines += ["", "failures:", *failures]
    for n in brokers:
        for key, spots in report["brokers"][n].get("profiles", {}).items():
            lines += ["", profiling.render_hot_spots(f"profile of {n} during {key}", spots)]
    return "\n".join(lines)


def _cpu_table(report: dict[str, Any], workloads: Sequence[WorkloadInfo]) -> list[str]:
    """CPU use during the throughput workloads, in percent of one core (100 = one core busy)."""
    brokers = list(report["brokers"])
    header = ["CPU, % of one core", *(f"{n} broker" for n in brokers)]
    header += [f"client ({n} run)" for n in brokers]
    rows = []
    for w in workloads:
        results = [report["brokers"][n]["workloads"].get(w.key, {}) for n in brokers]
        if not any("broker_cpu_pct" in r or "client_cpu_pct" in r for r in results):
            continue
        cells = [w.label]
        for fld in ("broker_cpu_pct", "client_cpu_pct"):
            cells += [f"{r[fld]:.0f}" if fld in r else "-" for r in results]
        rows.append(cells)
    if not rows:
        return []
    lines = ["", format_table(header, rows)]
    per_record = []
    for w in workloads:
        results = [report["brokers"][n]["workloads"].get(w.key, {}) for n in brokers]
        if any("broker_cpu_us_per_record" in r for r in results):
            values = [r.get("broker_cpu_us_per_record") for r in results]
            cells = [w.label, *(f"{v:.3f}" if v is not None else "-" for v in values)]
            if len(brokers) == 2:
                t, b = values
                cells.append(f"{b / t:.2f}x" if t and b else "-")
            per_record.append(cells)
    if per_record:
        head = ["broker CPU per record, us", *brokers]
        if len(brokers) == 2:
            head.append(f"{brokers[1]}/{brokers[0]}")
        lines += ["", format_table(head, per_record)]
    return lines


def failed(report: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(broker, workload key, reason) for every failed workload in ``report``."""
    for name, data in report["brokers"].items():
        for key, result in data["workloads"].items():
            if "error" in result:
                yield name, key, str(result["error"])
