"""The registry: entry points (built-ins included), module:attr types, broken plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.config import load_config
from backbone.connectors import generator, stdout
from backbone.errors import ConfigError
from backbone.registry import Registry
from tests.core import plugins


def test_builtins_register_through_entry_points() -> None:
    registry = Registry.from_entry_points()
    assert registry.get("generator") is generator.CONNECTOR
    assert registry.get("stdout") is stdout.CONNECTOR
    assert "generator" in registry.names("source")
    assert "stdout" in registry.names("sink")
    assert "stdout" not in registry.names("source")


def test_unknown_name() -> None:
    with pytest.raises(KeyError) as info:
        Registry([stdout.CONNECTOR]).get("kafka")
    assert info.value.args[0] == "unknown connector type 'kafka'"


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path whose entry points are broken in three ways."""
    dist = tmp_path / "fakeplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[backbone.connectors]\n"
        "missing = nosuch.module:CONNECTOR\n"
        "notakind = tests.core.plugins:ListOptions\n"
        "reserved = tests.core.plugins:RESERVED\n"
        "renamed = tests.core.plugins:SECRET\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugins_are_reported_not_fatal(fake_plugins: Path) -> None:
    registry = Registry.from_entry_points()
    assert "generator" in registry and "stdout" in registry  # the others still load
    assert registry.broken == {
        "missing": "plugin nosuch.module:CONNECTOR failed to load: "
        "ModuleNotFoundError: No module named 'nosuch'",
        "notakind": "plugin tests.core.plugins:ListOptions failed to load: TypeError: entry "
        "point 'notakind' (tests.core.plugins:ListOptions) is a ModelMetaclass, not a "
        "backbone.ConnectorKind",
        "reserved": "plugin tests.core.plugins:RESERVED failed to load: TypeError: entry point "
        "'reserved' (tests.core.plugins:RESERVED): sink options model ReservedOptions "
        "defines 'retry', reserved by the runtime for every connector (reserved: "
        "dead_letter_topic, retry, start, topic, topics, type); rename the option",
        "renamed": "plugin tests.core.plugins:SECRET failed to load: ValueError: entry point "
        "'renamed' (tests.core.plugins:SECRET) names a kind called 'secret'",
    }
    with pytest.raises(KeyError) as info:
        registry.get("missing")
    assert info.value.args[0] == registry.broken["missing"]
    config = fake_plugins / "c.yaml"
    config.write_text("sinks:\n  a: {type: missing, topics: [t]}\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, registry, env={})
    assert error.value.problems == [
        f"{config}:2:13: sinks.a.type: connector type 'missing' is unavailable: plugin "
        "nosuch.module:CONNECTOR failed to load: ModuleNotFoundError: No module named 'nosuch'"
        f" (known sink types: {', '.join(registry.names('sink'))})"
    ]


def test_module_attribute_spec_registers_under_the_spec() -> None:
    registry = Registry()
    kind = registry.load_spec("tests.core.plugins:SECRET")
    assert kind.name == "tests.core.plugins:SECRET"
    assert kind.sink is plugins.SecretSink
    assert registry.names("sink") == ["tests.core.plugins:SECRET"]
