"""Pipeline benchmark: ``backbone run`` beside a hand-written aiokafka loop, row by row.

Run it with ``make bench`` (``python -m benchmarks`` runs every suite) or
``python -m benchmarks.pipeline [--quick] [--rows KEY,...] [--profile DIR]``.

Who calls what: :func:`main` parses the command line and calls :func:`run`,
which runs each row of :data:`ROWS` twice, one process at a time: ``backbone
run CONFIG`` as a user runs it (a subprocess with its stdout redirected to a
file), then the hand-written loop doing the same job
(``python -m benchmarks.pipeline_loops``, same client settings, orjson). The
harness waits for the process to say it is running (``backbone running`` in
its log, ``ready`` for the loop), then counts what arrived -- lines in the
output file, rows in the PostgreSQL table, offsets in the output topic -- and
times it; CPU seconds of the process (and of the broker process, where the
broker runs in its own) come from ``/proc``. Figures: records/s, MB/s of
record values, CPU microseconds per record, and the ratio gateway / loop.
:mod:`benchmarks.pipeline_rows` holds the rows, :mod:`benchmarks.pipeline_report`
the table. Targets come from issue 10 and are printed, never asserted.

``--profile DIR`` samples the gateway process with py-spy while each row is
timed (collapsed stacks in ``DIR/<row>.txt``) and prints its hot spots.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import backbone_version, machine_facts, save_results, tansu_version

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Options:
    """What to run; :func:`parse_args` builds it from the command line."""

    records: int = 1_000_000
    sql_rows: int = 1_000_000
    sink_rows: int = 200_000
    processor_records: int = 500_000
    latency_seconds: float = 10.0
    latency_rate: int = 1000
    rows: list[str] | None = None
    runtime: dict[str, str] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None
    json_path: Path | None = DEFAULT_RESULTS
    timeout_scale: float = 1.0
    loop: bool = True
    gateway: bool = True
    repeat: int = 1


def run(opts: Options) -> dict[str, Any]:
    """Run every selected row (gateway, then loop); return the JSON-able report."""
    from benchmarks import pipeline_report, pipeline_rows

    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "versions": _versions(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "rows": {},
    }
    selected = [r for r in pipeline_rows.ROWS if opts.rows is None or r.key in opts.rows]
    rounds: dict[str, list[dict[str, Any]]] = {row.key: [] for row in selected}
    with (
        tempfile.TemporaryDirectory(prefix="backbone-bench-pipeline-") as tmp,
        contextlib.ExitStack() as stack,  # servers started by rows; stopped before tmp goes
    ):
        ctx = pipeline_rows.Context(Path(tmp), opts, stack)
        for number in range(opts.repeat):
            ctx.round = number  # odd rounds run the loop first, so load drifts hit both
            for row in selected:
                prefix = f"round {number + 1} of {opts.repeat}: " if opts.repeat > 1 else ""
                _progress(f"{prefix}{row.label} ...")
                rounds[row.key].append(row.run(ctx, row))
                _progress(f"  {pipeline_report.summary(row, rounds[row.key][-1])}")
    for key, results in rounds.items():
        report["rows"][key] = merge_rounds(results)
    return report


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's result from its rounds: per side, the median of every figure over the
    rounds that succeeded (all rounds under ``rounds``); the first error if none did."""
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, Any] = {}
    for side in rounds[0]:
        results = [r[side] for r in rounds if side in r]
        ok = [r for r in results if "error" not in r and "skipped" not in r]
        if not ok:
            merged[side] = dict(results[0])
            continue
        combined = dict(ok[0])
        for fld, value in ok[0].items():
            values = [r.get(fld) for r in ok]
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and all(isinstance(v, int | float) for v in values):
                combined[fld] = statistics.median(values)
        combined["rounds"] = results
        merged[side] = combined
    return merged


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    import aiokafka
    import orjson

    return {
        "backbone": backbone_version(),
        "tansu": tansu_version(),
        "aiokafka": aiokafka.__version__,
        "orjson": orjson.__version__,
        "python": sys.version.split()[0],
    }


def _pairs(items: Sequence[str], what: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"{what} takes KEY=VALUE (got {item!r})")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line."""
    from benchmarks.pipeline_rows import ROW_KEYS

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description="backbone run beside a hand-written aiokafka loop, row by row.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5,000 records per row, 2 s latency run"
    )
    parser.add_argument("--records", type=int, help="records of the generator rows (1,000,000)")
    parser.add_argument("--sql-rows", type=int, help="rows of the SQLite snapshot (1,000,000)")
    parser.add_argument("--sink-rows", type=int, help="rows upserted into PostgreSQL (200,000)")
    parser.add_argument("--processor-records", type=int, help="records processed (500,000)")
    parser.add_argument("--latency-seconds", type=float, help="paced latency run (10 s)")
    parser.add_argument("--latency-rate", type=int, default=1000, help="events/s (1000)")
    parser.add_argument("--rows", help=f"comma-separated subset of {', '.join(ROW_KEYS)}")
    parser.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set runtime.KEY in every gateway config (repeatable), e.g. max_batch=5000",
    )
    for client in ("producer", "consumer"):
        parser.add_argument(
            f"--{client}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"set broker.{client}.KEY in every gateway config (repeatable), "
            + ("e.g. linger_ms=0" if client == "producer" else "e.g. fetch_max_wait_ms=100"),
        )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the gateway process with py-spy while each row is timed; "
        "collapsed stacks go to DIR, hot spots are printed",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"store the report under 'pipeline' in this file (default {DEFAULT_RESULTS}); "
        "'-' = none",
    )
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="scale every timeout")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every row N times (the loop first in every other round); report medians",
    )
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument("--no-loop", action="store_true", help="run only backbone run")
    sides.add_argument("--no-gateway", action="store_true", help="run only the hand loops")
    ns = parser.parse_args(argv)

    def count(value: int | None, full: int, quick: int, name: str) -> int:
        chosen = value if value is not None else (quick if ns.quick else full)
        if chosen <= 0:
            parser.error(f"--{name} must be a positive number (got {chosen})")
        return chosen

    chosen = None
    if ns.rows:
        chosen = [k.strip() for k in ns.rows.split(",") if k.strip()]
        unknown = sorted(set(chosen) - set(ROW_KEYS))
        if unknown:
            parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROW_KEYS)}")
    seconds = ns.latency_seconds if ns.latency_seconds is not None else (2.0 if ns.quick else 10.0)
    if seconds <= 0 or ns.latency_rate <= 0:
        parser.error("--latency-seconds and --latency-rate must be positive")
    if ns.repeat < 1:
        parser.error(f"--repeat must be at least 1 (got {ns.repeat})")
    return Options(
        records=count(ns.records, 1_000_000, 5000, "records"),
        sql_rows=count(ns.sql_rows, 1_000_000, 5000, "sql-rows"),
        sink_rows=count(ns.sink_rows, 200_000, 5000, "sink-rows"),
        processor_records=count(ns.processor_records, 500_000, 5000, "processor-records"),
        latency_seconds=seconds,
        latency_rate=ns.latency_rate,
        rows=chosen,
        runtime=_pairs(ns.runtime, "--runtime", parser),
        producer=_pairs(ns.producer, "--producer", parser),
        consumer=_pairs(ns.consumer, "--consumer", parser),
        profile_dir=ns.profile,
        json_path=None if str(ns.json) == "-" else ns.json,
        timeout_scale=ns.timeout_scale,
        loop=not ns.no_loop,
        gateway=not ns.no_gateway,
        repeat=ns.repeat,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run, print the tables, save JSON; exit 1 if any row failed."""
    from benchmarks.pipeline_report import failed, render

    opts = parse_args(argv)
    report = run(opts)
    print(render(report), flush=True)
    if opts.json_path is not None:
        save_results(opts.json_path, report, "pipeline")
        print(f"\nresults saved to {opts.json_path} (key 'pipeline')")
    return 1 if any(True for _ in failed(report)) else 0


if __name__ == "__main__":
    sys.exit(main())
