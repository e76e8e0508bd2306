"""``backbone.broker.config``: the one ``host:port`` parser, BrokerConfig's checks, and the
leaf rule (importing it loads neither the server, the codec nor the gateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backbone.broker.config import BrokerConfig, format_host_port, parse_host_port
from tests.broker.expect import exactly


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost:0", ("localhost", 0)),
        ("kafka-1.internal:29092", ("kafka-1.internal", 29092)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:9092", ("::1", 9092)),
        ("[fe80::1%eth0]:9092", ("fe80::1%eth0", 9092)),
        ("::1:9092", ("::1", 9092)),  # the port is after the last colon
    ],
)
def test_parse_host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value", ["localhost", ":9092", "[]:9092", "host:", "host:port", "host:-1", "a b:1", "h:9 2"]
)
def test_parse_host_port_refuses_with_the_expected_form(value: str) -> None:
    message = f"expected HOST:PORT like 127.0.0.1:9092 (got {value!r})"
    with pytest.raises(ValueError, match=exactly(message)):
        parse_host_port(value)


def test_parse_host_port_refuses_ports_out_of_range() -> None:
    with pytest.raises(ValueError, match=exactly("port 65536 of 'h:65536' is outside 0-65535")):
        parse_host_port("h:65536")


def test_format_host_port_round_trips() -> None:
    for host, port in [("127.0.0.1", 9092), ("::1", 0), ("kafka", 1)]:
        assert parse_host_port(format_host_port(host, port)) == (host, port)
    assert format_host_port("::1", 9092) == "[::1]:9092"


def test_from_listeners(tmp_path: Path) -> None:
    config = BrokerConfig.from_listeners(
        "0.0.0.0:0", tmp_path, "[2001:db8::7]:29092", flush="interval"
    )
    assert (config.host, config.port, config.data_dir) == ("0.0.0.0", 0, tmp_path)
    assert (config.advertised_host, config.advertised_port) == ("2001:db8::7", 29092)
    assert config.flush == "interval"
    with pytest.raises(
        ValueError, match=exactly("expected HOST:PORT like 127.0.0.1:9092 (got 'x')")
    ):
        BrokerConfig.from_listeners("127.0.0.1:0", tmp_path, "x")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"flush": "never"}, "flush must be 'always', 'interval' or 'os' (got 'never')"),
        ({"max_frame_bytes": 10}, "max_frame_bytes must be at least 1024 (got 10)"),
        ({"default_partitions": 0}, "default_partitions must be at least 1 (got 0)"),
        ({"flush_interval_ms": 0}, "flush_interval_ms must be at least 1 (got 0)"),
        ({"idle_timeout_s": 0}, "idle_timeout_s must be positive (got 0)"),
        ({"node_id": -1}, "node_id must be 0 or more (got -1)"),
    ],
)
def test_broker_config_refuses_bad_values(
    tmp_path: Path, option: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        BrokerConfig(data_dir=tmp_path, **option)  # type: ignore[arg-type]


def test_the_config_is_a_leaf_and_the_package_loads_lazily() -> None:
    """What the gateway imports to check addresses loads no server, codec, log machinery,
    typer or pydantic; ``backbone.broker.Broker`` still resolves on first use."""
    code = (
        "import sys, backbone.broker.config; "
        "heavy = ('backbone.broker.server', 'backbone.broker.protocol', "
        "'backbone.broker.handlers', 'backbone.broker.log.manager', 'backbone.broker.groups', "
        "'pydantic', 'typer'); "
        "print(sorted(m for m in heavy if m in sys.modules)); "
        "import backbone.broker as b; print(b.Broker.__module__, b.BrokerConfig.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[]",
        "backbone.broker.broker backbone.broker.config",
    ]
