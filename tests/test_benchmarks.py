"""Smoke test of the benchmark harness (``benchmarks.broker``) against a real Tansu.

Asserts the shape of the report and that every record produced was consumed,
never how fast anything was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import broker as bench
from tests.servers import tansu_binary, unavailable

pytestmark = [pytest.mark.tansu, pytest.mark.timeout(90)]

RECORDS = 2000
SMOKE_WORKLOADS = [
    "rdk_produce_1p",
    "rdk_consume_1p",
    "rdk_consume_1p_nobackoff",
    "kcat_consume_1p",
    "aio_produce_1p",
    "aio_consume_1p",
    "latency",
    "rdk_produce_6p",
    "group_consume_6p",
]


def test_quick_tansu_run_consumes_everything_it_produced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tansu_binary()  # skip (or fail in CI) when the Tansu binary is unavailable
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (make system-deps installs it)")
    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--quick",
            "--only",
            "tansu",
            "--records",
            str(RECORDS),
            "--latency-seconds",
            "1",
            "--latency-rate",
            "200",
            "--workloads",
            ",".join(SMOKE_WORKLOADS),
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 0, printed

    assert set(report) >= {"machine", "versions", "options", "brokers"}
    assert report["machine"]["usable_cores"] >= 1
    assert report["versions"]["tansu"].startswith("v")
    assert list(report["brokers"]) == ["tansu"]
    results = report["brokers"]["tansu"]["workloads"]
    assert sorted(results) == sorted(SMOKE_WORKLOADS)
    assert list(bench.failed(report)) == []

    for key in (
        "rdk_produce_1p",
        "rdk_consume_1p",
        "rdk_consume_1p_nobackoff",
        "kcat_consume_1p",
        "aio_produce_1p",
        "aio_consume_1p",
    ):
        assert results[key]["records"] == RECORDS, key
        assert results[key]["bytes"] == RECORDS * 100, key
        assert results[key]["records_per_s"] > 0, key
    assert results["rdk_produce_6p"]["records"] == RECORDS
    group = results["group_consume_6p"]
    assert group["records"] == RECORDS
    assert sum(group["per_member"]) == group["consumed"] >= RECORDS
    latency = results["latency"]
    assert latency["received"] == latency["records"] == 200
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]

    assert "librdkafka produce, 1 partition (records/s)" in printed
    assert "end-to-end latency (librdkafka) p99 (ms)" in printed
    assert "failed" not in printed
    assert f"results saved to {out}" in printed


def test_bad_options_are_refused_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--workloads", "rdk_produce_1p,nope"])
    assert exc.value.code == 2
    assert "unknown workload(s) nope; choose from rdk_produce_1p" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--records", "0"])
    assert "--records must be a positive number of records (got 0)" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_quick_http_run_stores_every_request_and_delivers_every_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import http as http_bench

    out = tmp_path / "http.json"
    assert http_bench.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    hook = report["webhook"]
    assert hook["requests"] == hook["ok"] == hook["stored"] == 1600
    assert 0 < hook["p50_ms"] <= hook["p99_ms"]
    assert hook["yardstick"]["records_per_s"] > 0
    sinks = report["sink"]
    assert sinks["batched"]["records"] == sinks["yardstick"]["records"] == 5000
    assert sinks["per_record"]["records"] == 500
    assert "webhook, 16 keep-alive clients (req/s)" in printed
    assert "http sink, batches of 500 (records/s)" in printed
    assert "webhook: 1600 requests, 1600 answered 200, 1600 on the topic" in printed


@pytest.mark.timeout(180)
def test_quick_files_run_moves_every_line_through_both_connectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import files as files_bench

    out = tmp_path / "files.json"
    argv = ["--size", "1MB", "--lines-per-file", "2000", "--json", str(out)]
    assert files_bench.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    lines = report["lines"]
    assert lines % 2000 == 0 and report["size_bytes"] >= 1_000_000
    for row in ("source", "yardstick_produce", "sink", "yardstick_consume"):
        assert report[row]["records"] == lines, row
        assert report[row]["records_per_s"] > 0 and report[row]["cpu_us_per_record"] > 0
    # the sink's files hold exactly the input: every line once, in files of 2000 lines
    assert report["sink_bytes"] == report["size_bytes"]
    assert report["sink_files"] == lines // 2000
    assert "file source -> topic" in printed and "yardstick: aiokafka getmany + write" in printed
