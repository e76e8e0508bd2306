"""Smoke test of the ``small_requests`` workload of ``benchmarks.broker`` against
Backbone's broker (a real broker process, real librdkafka clients).

Asserts the shape of the report and that every record sent was received, never
how fast anything was or how much CPU it took.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import broker as bench

pytestmark = pytest.mark.timeout(120)


def test_small_requests_reports_broker_cpu_per_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--only",
            "backbone",
            "--workloads",
            "small_requests",
            "--latency-seconds",
            "1",
            "--small-rate",
            "200",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    result = report["brokers"]["backbone"]["workloads"]["small_requests"]
    assert result["records"] == 200
    assert result["rate"] == 200
    # linger.ms=0 and a paced producer: (nearly) one record per Produce request
    assert 0 < result["produce_requests"] <= 200
    assert result["records_per_request"] >= 1
    assert result["fetch_requests_per_s"] > 0
    assert result["broker_cpu_pct"] > 0
    assert result["broker_cpu_us_per_request"] > 0
    assert result["broker_cpu_us_per_any_request"] <= result["broker_cpu_us_per_request"]
    assert "small requests: produce requests/s" in printed
    assert "broker CPU per produce request (us)" in printed
    assert "failed" not in printed


def test_small_requests_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    opts = bench.parse_args(["--small-rate", "500", "--small-fetch-wait-ms", "250"])
    assert (opts.small_rate, opts.small_fetch_wait_ms) == (500, 250)
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--small-rate", "0"])
    assert exc.value.code == 2
    assert "--small-rate must be positive" in capsys.readouterr().err
