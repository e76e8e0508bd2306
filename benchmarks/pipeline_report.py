"""The pipeline benchmark's report: throughput and latency table, CPU table, failures.

Who calls what: ``benchmarks.pipeline`` prints :func:`render` of the report
that :func:`benchmarks.pipeline.run` returns, logs :func:`summary` after each
row and exits 1 when :func:`failed` yields anything. Nothing here runs a process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchmarks import profiling
from benchmarks.common import format_table
from benchmarks.pipeline_rows import ROWS, Row

SIDES = ("gateway", "loop")


def _cell(result: dict[str, Any] | None, fld: str, fmt: str) -> tuple[str, float | None]:
    if result is None:
        return "-", None
    if "error" in result:
        return "failed", None
    if "skipped" in result:
        return "skipped", None
    value = result.get(fld)
    if value is None:
        return "n/a", None
    return format(value, fmt), float(value)


def _ratio(gateway: float | None, loop: float | None) -> str:
    return f"{gateway / loop:.2f}x" if gateway and loop else "-"


def summary(row: Row, results: dict[str, dict[str, Any]]) -> str:
    """One progress line: each side's headline figure or failure."""
    parts = []
    for side, r in results.items():
        if "error" in r:
            parts.append(f"{side} failed: {r['error']}")
        elif "skipped" in r:
            parts.append(f"{side} skipped: {r['skipped']}")
        elif row.kind == "latency":
            parts.append(f"{side} p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
        else:
            parts.append(f"{side} {r['records_per_s']:,.0f} {row.unit}/s")
    return "; ".join(parts)


def _throughput_rows(row: Row, results: dict[str, Any]) -> list[list[str]]:
    g, lp = results.get("gateway"), results.get("loop")
    if row.kind == "latency":
        lines = []
        for label, fld in (("p50 (ms)", "p50_ms"), ("p99 (ms)", "p99_ms"), ("max (ms)", "max_ms")):
            gt, gv = _cell(g, fld, ",.2f")
            lt, lv = _cell(lp, fld, ",.2f")
            first = label == "p50 (ms)"
            name = f"{row.label} {label}" if first else f"  {label}"
            lines.append([name, gt, lt, _ratio(gv, lv), row.target if label == "p99 (ms)" else ""])
        return lines
    gt, gv = _cell(g, "records_per_s", ",.0f")
    lt, lv = _cell(lp, "records_per_s", ",.0f")
    lines = [[f"{row.label} ({row.unit}/s)", gt, lt, _ratio(gv, lv), row.target]]
    gt, gv = _cell(g, "steady_records_per_s", ",.0f")
    lt, lv = _cell(lp, "steady_records_per_s", ",.0f")
    lines.append(["  10-90 % of the run", gt, lt, _ratio(gv, lv), ""])
    gt, gv = _cell(g, "mb_per_s", ",.1f")
    lt, lv = _cell(lp, "mb_per_s", ",.1f")
    lines.append(["  MB/s of values", gt, lt, _ratio(gv, lv), ""])
    return lines


def _cpu_rows(row: Row, results: dict[str, Any]) -> list[str]:
    cells = [row.label]
    for fld in ("cpu_us_per_record", "broker_cpu_us_per_record"):
        for side in SIDES:
            text, _ = _cell(results.get(side), fld, ",.1f")
            pct, _ = _cell(results.get(side), fld.replace("us_per_record", "pct"), ",.0f")
            cells.append("-" if text in ("n/a", "-") else f"{text} ({pct}%)")
    _, gateway = _cell(results.get("gateway"), "cpu_us_per_record", ",.1f")
    _, loop = _cell(results.get("loop"), "cpu_us_per_record", ",.1f")
    cells.append(_ratio(loop, gateway))
    return cells


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    m, v, o = report["machine"], report["versions"], report["options"]
    lines = [
        "Backbone pipeline benchmark: backbone run (gateway) beside a hand-written aiokafka loop",
        f"machine: {m['usable_cores']} usable cores of {m['cpu_count']} ({m['cpu_model']}), "
        f"load {m['load_avg_1m']}, Python {m['python']}",
        f"versions: backbone {v['backbone']}, aiokafka {v['aiokafka']}, orjson {v['orjson']}, "
        f"tansu {v['tansu']}",
        f"counts: generator rows {o['records']:,}, sql snapshot {o['sql_rows']:,}, sql sink "
        f"{o['sink_rows']:,}, processor {o['processor_records']:,}; latency "
        f"{o['latency_rate']:,}/s for {o['latency_seconds']:g} s after 1 s warm-up",
    ]
    if o.get("repeat", 1) > 1:
        lines.append(f"figures: medians of {o['repeat']} rounds (the loop first in every other)")
    if o.get("runtime"):
        lines.append("gateway runtime: " + ", ".join(f"{k}={x}" for k, x in o["runtime"].items()))
    for client in ("producer", "consumer"):
        if o.get(client):
            pairs = ", ".join(f"{k}={x}" for k, x in o[client].items())
            lines.append(f"gateway broker.{client}: {pairs}")
    table: list[list[str]] = []
    cpu: list[list[str]] = []
    for row in ROWS:
        results = report["rows"].get(row.key)
        if results is None:
            continue
        table += _throughput_rows(row, results)
        cpu.append(_cpu_rows(row, results))
    lines += ["", format_table(["row", "gateway", "loop", "gateway/loop", "target"], table)]
    lines.append(
        "timed from the process's ready line to the last record counted; ratio > 1 is "
        "better for rates, < 1 for latencies"
    )
    header = ["CPU us/record (% of a core)", "gateway proc", "loop proc"]
    header += ["broker, gateway run", "broker, loop run", "loop/gateway"]
    lines += ["", format_table(header, cpu)]
    lines.append(
        "the embedded broker's CPU is part of its process; '-' = no separate broker; "
        "loop/gateway = the loop's CPU per record over the gateway's (1.00x = as cheap)"
    )
    problems = [f"  {key} / {side}: {reason}" for key, side, reason in failed(report)]
    for key, results in report["rows"].items():
        for side, r in results.items():
            if "skipped" in r:
                problems.append(f"  {key} / {side}: skipped: {r['skipped']}")
    if problems:
        lines += ["", "failures and skips:", *problems]
    for key, results in report["rows"].items():
        spots = results.get("gateway", {}).get("profile")
        if spots:
            lines += ["", profiling.render_hot_spots(f"profile of backbone run, {key}", spots)]
    return "\n".join(lines)


def failed(report: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(row, side, reason) for every side that failed."""
    for key, results in report["rows"].items():
        for side, r in results.items():
            if "error" in r:
                yield key, side, str(r["error"])
