"""``backbone topics``: against a running broker (found through --config) and a stopped one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backbone.broker.lock import holder
from tests.core.operating import BrokerProcess, broker_process, cli, ok, write_config

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with broker_process(tmp_path) as running:
        yield running


def test_create_list_describe_delete(broker: BrokerProcess) -> None:
    config = str(broker.config)
    settings = ["--topic-config", "retention.ms=7d", "--topic-config", "cleanup.policy=compact"]
    created = ok("topics", "create", "orders", "-p", "3", *settings, "--config", config)
    assert created == "created topic orders (3 partition(s))\n"
    assert ok("topics", "create", "audit", "--bootstrap", broker.bootstrap) == (
        "created topic audit (1 partition(s))\n"
    )
    ok("produce", "orders", "--key-separator", ":", "--config", config, input="a:1\nb:2\nc:3\n")
    listing = ok("topics", "list", "--config", config).splitlines()
    assert listing[0].split() == ["TOPIC", "PARTITIONS", "RECORDS", "SIZE"]
    rows = {line.split()[0]: line.split()[1:3] for line in listing[1:]}
    assert rows == {"audit": ["1", "0"], "orders": ["3", "3"]}

    described = json.loads(ok("topics", "describe", "orders", "--config", config, "--json"))
    assert described["name"] == "orders" and described["records"] == 3
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert sum(p["end_offset"] for p in described["partitions"]) == 3
    assert all(p["start_offset"] == 0 and p["leader"] == 0 for p in described["partitions"])
    assert all(p["size_bytes"] > 0 for p in described["partitions"] if p["records"])
    assert described["size_bytes"] == sum(p["size_bytes"] for p in described["partitions"])
    overrides = {c["name"]: c["value"] for c in described["configs"] if not c["default"]}
    assert overrides == {"retention.ms": "604800000", "cleanup.policy": "compact"}

    text = ok("topics", "describe", "orders", "--config", config).splitlines()
    assert text[0].startswith("topic orders: 3 partition(s), 3 record(s), ")
    assert text[1].split() == ["PARTITION", "LEADER", "START", "END", "RECORDS", "SIZE"]
    assert [line.split()[0] for line in text[2:5]] == ["0", "1", "2"]
    assert text[5] == ""
    assert text[6].split() == ["CONFIG", "VALUE", "SOURCE"]
    assert sorted(line.split() for line in text[7:]) == [
        ["cleanup.policy", "compact", "topic"],
        ["retention.ms", "604800000", "topic"],
    ]

    assert ok("topics", "delete", "audit", "--config", config) == "deleted topic audit\n"
    assert [line.split()[0] for line in ok("topics", "list", "-c", config).splitlines()] == [
        "TOPIC",
        "orders",
    ]


def test_errors_are_sentences_with_exit_codes(broker: BrokerProcess, tmp_path: Path) -> None:
    config = str(broker.config)
    missing = cli("topics", "delete", "nope", "--config", config)
    assert (missing.returncode, missing.stderr) == (1, "error: topic 'nope' does not exist\n")
    ok("topics", "create", "dup", "--config", config)
    again = cli("topics", "create", "dup", "--config", config)
    assert again.returncode == 1
    assert again.stderr == "error: cannot create topic 'dup': Topic 'dup' already exists.\n"
    both = cli("topics", "list", "--config", config, "--bootstrap", broker.bootstrap)
    assert both.returncode == 2
    assert both.stderr == "error: give either --config or --bootstrap, not both\n"
    neither = cli("topics", "list")
    assert neither.returncode == 2
    assert neither.stderr == "error: give --config FILE or --bootstrap HOST:PORT\n"
    bad = cli("topics", "create", "x", "--topic-config", "retention.ms=soon", "-c", config)
    assert bad.returncode == 2
    assert bad.stderr == (
        'error: --topic-config retention.ms: expected a duration like "7d" or a whole number '
        "of milliseconds (got 'soon')\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("broker: {embeded: {}}\n")
    result = cli("topics", "list", "--config", str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{broken}:1:10: broker.embeded: unknown key 'embeded'")


def test_with_the_gateway_stopped_the_command_runs_the_broker_itself(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data_dir = tmp_path / "data"
    assert ok("topics", "create", "offline", "-p", "2", "--config", str(config)) == (
        "created topic offline (2 partition(s))\n"
    )
    assert holder(data_dir) is None  # the command stopped the broker it started
    assert (data_dir / "offline-0").is_dir() and (data_dir / "offline-1").is_dir()
    ok("produce", "offline", "--config", str(config), input="one\ntwo\n")
    listing = ok("topics", "list", "--config", str(config)).splitlines()
    assert listing[1].split()[:3] == ["offline", "2", "2"]
    # the same data directory is what a broker (the gateway's) serves afterwards
    with broker_process(tmp_path) as broker:
        lines = ok("consume", "offline", "--bootstrap", broker.bootstrap).splitlines()
        assert sorted(json.loads(line)["value"] for line in lines) == ["one", "two"]
