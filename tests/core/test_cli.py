"""The CLI as users run it: exit codes, "ok" lines, every problem printed, connector docs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = Path(sys.executable).parent / "backbone"


def cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BACKBONE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_every_shipped_config_validates() -> None:
    configs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    assert "configs/quickstart.yaml" in configs
    result = cli(
        "validate",
        *configs,
        env={"DATABASE_URL": "sqlite:///x.db", "SHOP_WEBHOOK_SECRET": "s3cret"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"ok: {c}" for c in configs]
    assert result.stderr == ""


def test_validate_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("sinks:\n  out: {type: stdout, topics: [t]}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sinks:\n  out: {type: stdout, topics: [t], startt: latest}\n"
        "sources:\n  gen: {type: generator, topic: t, rate: fast}\n"
    )
    result = cli("validate", str(good), str(bad), "missing.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == f"ok: {good}\n"
    assert result.stderr.splitlines() == [
        f"{bad}:2:36: sinks.out.startt: unknown key 'startt'; did you mean 'start'?",
        f"{bad}:4:42: sources.gen.rate: Input should be a valid number, unable to parse string "
        "as a number",
        "missing.yaml: cannot read the file: No such file or directory",
    ]


def test_validate_check_runs_live_checks(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "sinks:\n"
        '  a: {type: "tests.core.plugins:SECRET", topics: [t], url: "ok:1", password: pw}\n'
        '  b: {type: "tests.core.plugins:SECRET", topics: [t], url: "db:5", password: pw}\n'
        "processors:\n"
        '  p: {topics: [t], to: u, function: "tests.core.processing:nope"}\n'
    )
    assert cli("validate", str(config)).returncode == 0
    result = cli("validate", str(config), "--check")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{config}: sinks.b: check failed: cannot reach db:5",
        f"{config}: processors.p.function: cannot load processor function "
        "'tests.core.processing:nope': module 'tests.core.processing' has no attribute 'nope'",
    ]


def test_connectors_list_and_describe() -> None:
    listing = cli("connectors")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert {"generator", "stdout"} <= set(names)
    generator = cli("connectors", "generator")
    assert generator.returncode == 0
    lines = generator.stdout.splitlines()
    assert lines[0] == (
        "generator: Synthetic JSON events at a steady rate (for trying pipelines and tests)."
    )
    assert "  rate                 float                    default 10.0" in lines
    assert "      Events per second." in lines
    assert "  topic                str                      default (required)" in lines
    assert any(line.startswith("  retry ") for line in lines)
    assert "example:" in lines and "    type: generator" in lines
    schema = json.loads(cli("connectors", "stdout", "--json-schema").stdout)
    sink = schema["sink"]
    assert sink["properties"]["pretty"]["default"] is False
    assert sink["properties"]["topics"]["description"] == "Topics to consume."
    assert sink["required"] == ["type", "topics"]
    whole = json.loads(cli("connectors", "--json-schema").stdout)
    assert {"broker", "topics", "sources", "sinks", "processors"} <= set(whole["properties"])
    unknown = cli("connectors", "kafka")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: unknown connector type 'kafka' (known: ")


def test_run_config_error_exits_2_and_runtime_error_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  g: {type: generator}\n")
    result = cli("run", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"{bad}:2:3: sources.g: missing required key 'topic'"
    from tests.servers import free_port

    unreachable = tmp_path / "down.yaml"
    unreachable.write_text(
        f"broker: {{bootstrap: ['127.0.0.1:{free_port()}']}}\n"
        "sinks:\n  out: {type: stdout, topics: [t]}\n"
    )
    result = cli("run", str(unreachable))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")


@pytest.mark.timeout(90)
def test_run_stops_cleanly_on_sigterm(tmp_path: Path, tansu: object) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"broker: {{bootstrap: ['{tansu.bootstrap}'], idempotence: false}}\n"  # type: ignore[attr-defined]
        "runtime: {session_timeout: 6s, heartbeat_interval: 300ms}\n"
        "sources:\n  sigterm-gen: {type: generator, topic: sigterm.t, rate: 50}\n"
        "sinks:\n  sigterm-out: {type: stdout, topics: [sigterm.t]}\n"
    )
    out = tmp_path / "out.txt"
    with open(out, "wb") as stdout, open(tmp_path / "err.txt", "wb") as stderr:
        proc = subprocess.Popen(
            [str(BACKBONE), "run", str(config)], stdout=stdout, stderr=stderr, cwd=tmp_path
        )
        try:
            deadline = time.monotonic() + 60
            while out.stat().st_size == 0:
                assert time.monotonic() < deadline, "no event printed"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "err.txt").read_text()
    assert "SIGTERM received: stopping" in log
    assert "source sigterm-gen started at position None" in log
    assert "sink sigterm-out stopped" in log
    assert "backbone stopped" in log
    first = json.loads(out.read_text().splitlines()[0])
    assert first["value"]["seq"] == 1 and first["topic"] == "sigterm.t"


def test_broker_command_serves_until_sigterm(tmp_path: Path) -> None:
    from kafka import KafkaAdminClient

    from tests.servers import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [str(BACKBONE), "broker", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=10000)
        try:
            assert isinstance(admin.list_topics(), list)
        finally:
            admin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    proc.stderr.close()


def test_broker_command_bad_listener(tmp_path: Path) -> None:
    result = cli("broker", "--listen", "nowhere", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --listen: expected HOST:PORT like 127.0.0.1:9092 (got 'nowhere')"
    )


def test_broker_command_bad_flush_policy(tmp_path: Path) -> None:
    result = cli("broker", "--flush", "never", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --flush: must be 'always', 'interval' or 'os' (got 'never')"
    )


def test_connectors_show_durations_and_their_schema() -> None:
    sql = cli("connectors", "sql")
    assert sql.returncode == 0, sql.stderr
    lines = sql.stdout.splitlines()
    assert "  poll_interval        duration                 default 1s" in lines
    assert "  lag                  duration                 default 5s" in lines
    retry = (
        "  retry                RetryPolicy              default "
        "{max_attempts: 10, initial_backoff: 200ms, max_backoff: 30s}"
    )
    assert lines.count(retry) == 2  # source and sink
    result = cli("connectors", "sql", "--json-schema")
    assert result.returncode == 0, result.stderr
    source = json.loads(result.stdout)["source"]
    lag = source["properties"]["lag"]
    assert lag["default"] == 5.0
    assert lag["anyOf"][0] == {"type": "number", "minimum": 0}
    assert lag["anyOf"][1] == {
        "type": "string",
        "pattern": r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$",
    }
    backoff = source["$defs"]["RetryPolicy"]["properties"]["initial_backoff"]
    assert backoff["anyOf"] == lag["anyOf"]
    whole = json.loads(cli("connectors", "--json-schema").stdout)
    topic = whole["$defs"]["TopicSettings"]["properties"]
    assert topic["config"]["additionalProperties"] == {
        "type": ["string", "integer", "number", "boolean"]
    }
    assert topic["retention"]["anyOf"][0]["anyOf"] == lag["anyOf"]
