"""The broker's one command line: ``python -m backbone.broker`` and ``backbone broker``.

Both run ``backbone.broker.cli.main``: the same flags, the same one-line usage errors, the
same logging options (``--log-level``, ``--log-format text|json``), checked here by
running each as users do, as a subprocess on a free port.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.broker import protocol as kp
from backbone.broker.cli import main
from backbone.broker.logging_setup import JsonFormatter, configure_logging
from tests.broker.expect import exactly
from tests.broker.test_server import call
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.timeout(90)

BACKBONE = Path(sys.executable).parent / "backbone"
COMMANDS = {
    "python -m backbone.broker": [sys.executable, "-m", "backbone.broker"],
    "backbone broker": [str(BACKBONE), "broker"],
}


WIDE = {**os.environ, "COLUMNS": "1000"}  # help and error boxes on one line each


def run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMANDS[command], *args], capture_output=True, text=True, timeout=60, env=WIDE
    )


def options(help_text: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", help_text)))


def test_both_commands_offer_the_same_flags() -> None:
    helps = {command: run(command, "--help") for command in COMMANDS}
    for command, result in helps.items():
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: {command} "), result.stdout
    module, cli = (options(r.stdout) for r in helps.values())
    assert module == cli
    assert module == [
        "--advertised-listener",
        "--auto-create-topics",
        "--data-dir",
        "--debug",
        "--default-partitions",
        "--flush",
        "--flush-interval-ms",
        "--help",
        "--idle-timeout",
        "--listen",
        "--log-format",
        "--log-level",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-frame-bytes",
        "--no-auto-create-topics",
        "--node-id",
        "--queued-max-request-bytes",
        "--request-read-timeout",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--listen", "nowhere"],
            "--listen: expected HOST:PORT like 127.0.0.1:9092 (got 'nowhere')",
        ),
        (["--max-frame-bytes", "10"], "--max-frame-bytes: must be at least 1024 (got 10)"),
        (["--idle-timeout", "0"], "--idle-timeout: must be more than 0 seconds (got '0')"),
        (
            ["--request-read-timeout", "soon"],
            "--request-read-timeout: expected a number of seconds (got 'soon')",
        ),
        (["--max-connections", "0"], "--max-connections: must be at least 1 (got 0)"),
        (["--max-connections-per-ip", "0"], "--max-connections-per-ip: must be at least 1 (got 0)"),
        (
            ["--max-frame-bytes", "4096", "--queued-max-request-bytes", "2048"],
            "queued_max_request_bytes (2048) must be at least max_frame_bytes (4096): a "
            "request of the largest size must fit in it",
        ),
        (["--node-id", "x"], "--node-id: expected a whole number (got 'x')"),
        (["--flush", "never"], "--flush: must be 'always', 'interval' or 'os' (got 'never')"),
        (
            ["--log-level", "loud"],
            "--log-level: log level must be one of debug, info, warning, error, critical "
            "(got 'loud')",
        ),
        (
            ["--log-format", "xml"],
            "--log-format: invalid choice: 'xml' (choose from 'text', 'json')",
        ),
        (["--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    assert main([*args, "--data-dir", str(tmp_path)], prog="backbone broker") == 2
    assert capsys.readouterr() == ("", f"error: {error}\n")
    assert list(tmp_path.iterdir()) == []  # nothing started


@pytest.mark.parametrize("command", list(COMMANDS))
def test_both_commands_report_usage_errors_the_same_way(tmp_path: Path, command: str) -> None:
    result = run(command, "--idle-timeout", "0", "--data-dir", str(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: --idle-timeout: must be more than 0 seconds (got '0')\n",
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_flag_reaches_the_broker_and_logs_are_json_lines(
    tmp_path: Path, command: str
) -> None:
    port = free_port()
    log = tmp_path / "stderr.jsonl"
    args = [
        *COMMANDS[command],
        *("--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")),
        *("--advertised-listener", "broker.example:29092", "--node-id", "7"),
        *("--no-auto-create-topics", "--default-partitions", "3", "--flush", "interval"),
        *("--flush-interval-ms", "50", "--max-frame-bytes", "4096", "--idle-timeout", "30"),
        *("--request-read-timeout", "12.5", "--max-connections", "40"),
        *("--max-connections-per-ip", "20", "--queued-max-request-bytes", "8192"),
        *("--log-level", "debug", "--log-format", "json"),
    ]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port(port, timeout=30, proc=proc)
        request = kp.MetadataRequest(
            topics=[kp.MetadataRequest.MetadataRequestTopic(name="missing")],
            allow_auto_topic_creation=True,
        )
        metadata = asyncio.run(call(port, request, 12))
        assert [(b.node_id, b.host, b.port) for b in metadata.brokers] == [
            (7, "broker.example", 29092)
        ]
        assert [(t.name, t.error_code) for t in metadata.topics] == [("missing", 3)]
        create = kp.CreateTopicsRequest(
            topics=[
                kp.CreateTopicsRequest.CreatableTopic(
                    name="orders", num_partitions=-1, replication_factor=-1
                )
            ]
        )
        created = asyncio.run(call(port, create, 7))
        assert [(t.name, t.error_code, t.num_partitions) for t in created.topics] == [
            ("orders", 0, 3)
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries, "no log lines"
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries), entries
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in entries)
    messages = [e["message"] for e in entries]
    assert any(
        m.startswith("log manager started in ") and "flush policy interval" in m for m in messages
    )
    assert any("serving broker.example:29092" in m for m in messages), messages
    assert any(
        m.endswith(
            "(max_frame_bytes 4096, max_connections 40, max_connections_per_ip 20, "
            "idle_timeout 30s, request_read_timeout 12.5s, queued_max_request_bytes 8192)"
        )
        for m in messages
    ), messages
    assert "DEBUG" in {e["level"] for e in entries}  # --log-level debug
    [created_line] = [e for e in entries if e["message"].startswith("created topic orders")]
    assert created_line["extra"] == {"topic": "orders"}  # context for log shippers
    assert messages[-1] == "broker stopped"


def test_json_lines_carry_extra_context_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.broker.cli.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("lag of %s is %d", "orders", 12, extra={"connector": "orders", "topic": "t"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "tests.broker.cli.json"
    assert first["message"] == "lag of orders is 12"
    assert first["extra"] == {"connector": "orders", "topic": "t"}
    assert "extra" not in second
    assert (
        second["exception"].startswith("Traceback") and "RuntimeError: boom" in second["exception"]
    )


def test_configure_logging_refuses_unknown_levels_and_formats() -> None:
    with pytest.raises(ValueError, match=exactly("log format must be text or json (got 'xml')")):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError, match="log level must be one of debug, info, warning"):
        configure_logging("chatty", "text")


@pytest.mark.parametrize("command", ["run", "validate", "connectors"])
def test_every_backbone_command_takes_the_logging_options(command: str) -> None:
    from typer.testing import CliRunner

    from backbone.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert {"--log-level", "--log-format", "--debug"} <= set(options(result.output))


def test_backbone_validate_with_json_logs(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("sinks:\n  out: {type: stdout, topics: [t]}\n")
    result = subprocess.run(
        [str(BACKBONE), "validate", str(config), "--log-format", "json", "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ok: {config}\n"
    for line in result.stderr.splitlines():  # whatever was logged is one JSON object a line
        assert set(json.loads(line)) >= {"time", "level", "logger", "message"}
    from typer.testing import CliRunner

    from backbone.cli import app

    bad = CliRunner().invoke(
        app, ["validate", str(config), "--log-format", "xml"], env={"COLUMNS": "1000"}
    )
    assert bad.exit_code == 2
    assert "Invalid value for '--log-format': Value error, 'xml' is not one of 'text', 'json'." in (
        bad.output
    )
