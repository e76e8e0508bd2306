"""The config file: every error path, with the exact ``file:line:col: path: message``."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from backbone import ConfigError
from backbone.config import Config, connector_options, load_config
from backbone.connectors import generator, stdout
from backbone.registry import Registry
from tests.core import plugins


def registry() -> Registry:
    return Registry([generator.CONNECTOR, stdout.CONNECTOR, plugins.SECRET])


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    (tmp_path / "c.yaml").write_text(textwrap.dedent(text))
    return load_config(tmp_path / "c.yaml", registry(), env=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    prefix = f"{tmp_path / 'c.yaml'}:"
    assert all(p.startswith(prefix) for p in info.value.problems), info.value.problems
    return [p[len(prefix) :] for p in info.value.problems]


def test_every_problem_at_once(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        topics:
          bad topic: {}
        sources:
          gen:
            type: generator
            topic: shop.orders
            rat: 5
            count: -1
          g2:
            type: generatr
            topic: x
          g3:
            topic: x
          g4:
            type: stdout
            topic: x
        sinks:
          out:
            type: stdout
            topics: []
            start: yesterday
            retry: {max_attempts: 0, initial_backoff: 5 mins}
          out2:
            type: stdout
        """,
    ) == [
        "2:3: topics.bad topic: 'bad topic' is not a valid topic name "
        "(1-249 characters: letters, digits, '.', '_', '-')",
        "7:5: sources.gen.rat: unknown key 'rat'; did you mean 'rate'?",
        "8:12: sources.gen.count: Input should be greater than or equal to 0",
        "10:11: sources.g2.type: unknown source type 'generatr'; did you mean 'generator'? "
        "(known source types: generator)",
        "12:3: sources.g3: missing required key 'type' (known source types: generator)",
        "15:11: sources.g4.type: connector type 'stdout' has no source "
        "(known source types: generator)",
        "20:13: sinks.out.topics: List should have at least 1 item after validation, not 0",
        "21:12: sinks.out.start: expected earliest, latest or an ISO-8601 timestamp like "
        "2024-05-01T00:00:00Z (got 'yesterday')",
        "22:27: sinks.out.retry.max_attempts: Input should be greater than or equal to 1",
        '22:47: sinks.out.retry.initial_backoff: expected a duration like "5s", "200ms" or '
        "\"7d\" (got '5 mins')",
        "23:3: sinks.out2: missing required key 'topics'",
    ]


def test_unknown_keys_suggest_or_list(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        brokr: {}
        runtime: {grace: 1s}
        sinks:
          vault: {type: secret, topics: [a], url: x, password: y, zzz: 1}
        """,
    ) == [
        "1:1: brokr: unknown key 'brokr'; did you mean 'broker'?",
        "2:11: runtime.grace: unknown key 'grace' (expected one of: grace_period, "
        "heartbeat_interval, max_batch, position_interval, progress_interval, session_timeout, "
        "state_dir, static_membership)",
        "4:59: sinks.vault.zzz: unknown key 'zzz' (expected one of: dead_letter_topic, password, "
        "retry, start, topics, type, url)",
    ]


def test_interpolation(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        sinks:
          vault:
            type: secret
            topics: ["${TOPIC:-orders}"]
            url: "postgres://${HOST}:${PORT:-5432}/${EMPTY:-db}?x=$${NOT_A_VAR}"
            password: ${PASSWORD}
        """,
        env={"HOST": "db.example", "EMPTY": "", "PASSWORD": "hunter2"},
    )
    vault = config.sinks["vault"]
    assert vault.topics == ["orders"]
    assert vault.url == "postgres://db.example:5432/db?x=${NOT_A_VAR}"
    assert vault.password.get_secret_value() == "hunter2"


def test_missing_variable_is_named(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        sinks:
          vault: {type: secret, topics: [a], url: "${DB_URL}", password: "${PW}"}
        """,
    ) == [
        "2:43: sinks.vault.url: environment variable DB_URL is not set "
        "(set it, or write ${DB_URL:-default} to give a default)",
        "2:66: sinks.vault.password: environment variable PW is not set "
        "(set it, or write ${PW:-default} to give a default)",
    ]


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        sinks:
          vault: {type: secret, topics: [a], url: x, password: hunter2}
        """,
    )
    options = connector_options(config.sinks["vault"], plugins.SecretOptions)
    for text in (repr(config), str(config), repr(options), config.model_dump_json()):
        assert "hunter2" not in text
    assert "**********" in repr(options)
    assert options.password.get_secret_value() == "hunter2"


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    assert problems(tmp_path, "sinks:\n  out: {type: stdout\n") == [
        "3:1: invalid YAML: while parsing a flow mapping: expected ',' or '}', but got "
        "'<stream end>'"
    ]


def test_duplicate_key(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "topics: {}\ntopics: {}\n")
    assert found.startswith("2:1: invalid YAML: while constructing a mapping: ")
    assert 'found duplicate key "topics"' in found


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "- a\n- b\n") == ["1:1: (top level): expected a mapping of sections"]


def test_broker_defaults_and_exclusive_choice(tmp_path: Path) -> None:
    config = load(tmp_path, "{}\n")
    assert config.broker.embedded is not None
    assert config.broker.embedded.listen == "127.0.0.1:9092"
    assert config.resolve(config.broker.embedded.data_dir) == tmp_path.resolve() / "data"
    assert problems(
        tmp_path,
        """\
        broker:
          embedded: {listen: "localhost"}
          bootstrap: [kafka:9092]
        """,
    ) == [
        "2:22: broker.embedded.listen: expected HOST:PORT like 127.0.0.1:9092 (got 'localhost')",
    ]
    assert problems(
        tmp_path,
        """\
        broker:
          embedded: {}
          bootstrap: [kafka:9092]
        """,
    ) == ["1:1: broker: give either embedded or bootstrap, not both"]


def test_embedded_broker_connection_limits(tmp_path: Path) -> None:
    defaults = load(tmp_path, "{}\n").broker.embedded
    assert defaults is not None
    assert (defaults.max_frame_bytes, defaults.connections_max_idle) == (None, 600.0)
    assert (defaults.max_connections, defaults.max_connections_per_ip) == (1000, 500)
    assert defaults.request_read_timeout == 30.0
    assert defaults.queued_max_request_bytes == 100 * 1024 * 1024
    embedded = load(
        tmp_path,
        """\
        broker:
          embedded:
            max_frame_bytes: 2MiB
            connections_max_idle: 10m
            request_read_timeout: 45s
            max_connections: 200
            max_connections_per_ip: 20
            queued_max_request_bytes: 64MiB
        """,
    ).broker.embedded
    assert embedded is not None
    assert embedded.max_frame_bytes == 2 * 1024 * 1024
    assert (embedded.connections_max_idle, embedded.request_read_timeout) == (600.0, 45.0)
    assert (embedded.max_connections, embedded.max_connections_per_ip) == (200, 20)
    assert embedded.queued_max_request_bytes == 64 * 1024 * 1024
    assert problems(
        tmp_path,
        """\
        broker:
          embedded:
            connections_max_idle: 0s
            max_connections_per_ip: 0
        """,
    ) == [
        "3:27: broker.embedded.connections_max_idle: Input should be greater than 0",
        "4:29: broker.embedded.max_connections_per_ip: Input should be greater than or equal to 1",
    ]
    assert problems(
        tmp_path,
        """\
        broker:
          embedded: {max_frame_bytes: 200MiB}
        """,
    ) == [
        "2:3: broker.embedded: queued_max_request_bytes (104857600) must be at least "
        "max_frame_bytes (209715200): a request of the largest size must fit in it"
    ]


def test_topics_configs(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        topics:
          shop.orders: {partitions: 3, retention: 7d}
          shop.customers: {cleanup: compact, config: {segment.bytes: 1048576, x.flag: true}}
          plain:
        """,
    )
    assert config.topics["shop.orders"].partitions == 3
    assert config.topics["shop.orders"].kafka_configs() == {"retention.ms": "604800000"}
    assert config.topics["shop.customers"].kafka_configs() == {
        "segment.bytes": "1048576",
        "x.flag": "true",
        "cleanup.policy": "compact",
    }
    assert config.topic_settings("plain").partitions == 1
    assert problems(tmp_path, "topics:\n  a: {partitions: 0, cleanup: nope}\n") == [
        "2:19: topics.a.partitions: Input should be greater than or equal to 1",
        "2:31: topics.a.cleanup: Input should be 'delete', 'compact' or 'compact,delete'",
    ]


def test_sink_start_forms(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        sinks:
          a: {type: stdout, topics: [t]}
          b: {type: stdout, topics: [t], start: latest}
          c: {type: stdout, topics: [t], start: 2024-05-01T10:00:00}
          d: {type: stdout, topics: [t], start: "2024-05-01T10:00:00+02:00"}
        """,
    )
    assert config.sinks["a"].start == "earliest"
    assert config.sinks["b"].start == "latest"
    assert config.sinks["c"].start == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert config.sinks["d"].start == dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC)


def test_processor_problems(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        processors:
          both: {topics: [a], to: b, function: "m:f", transforms: [{drop: [x]}]}
          neither: {topics: [a], to: b}
          noto: {topics: [a], function: "m:f"}
          loop: {topics: [a], to: a, function: "m:f"}
          badfn: {topics: [a], to: b, function: "m.f"}
          steps:
            topics: [a]
            to: b
            transforms:
              - filter: "amount >"
              - filter: "__import__('os').system('x')"
              - sett: {a: 1}
              - route: {field: c, topics: {DE: "bad topic"}}
        """,
    ) == [
        "2:3: processors.both: give either function or transforms (exactly one)",
        "3:3: processors.neither: give either function or transforms (exactly one)",
        "4:3: processors.noto: 'to' is required (the topic output events go to)",
        "5:3: processors.loop: 'to' (a) is also an input topic: it would read its own output",
        "6:41: processors.badfn.function: expected package.module:function (got 'm.f')",
        "11:17: processors.steps.transforms[0].filter: invalid filter expression 'amount >': "
        "invalid syntax",
        "12:17: processors.steps.transforms[1].filter: unsupported filter expression "
        "\"__import__('os').system('x')\": use field names, literals, comparisons "
        "(== != < <= > >= in, not in, is None), and/or/not",
        "13:9: processors.steps.transforms[2]: each transform is one of filter, set, rename, "
        "drop, mask, route",
        "14:40: processors.steps.transforms[3].route.topics.DE: 'bad topic' is not a valid topic "
        "name (1-249 characters: letters, digits, '.', '_', '-')",
    ]


def test_connector_names_unique_and_valid(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        sources:
          demo: {type: generator, topic: t}
        sinks:
          demo: {type: stdout, topics: [t]}
          "bad name": {type: stdout, topics: [t]}
        """,
    ) == [
        "4:3: sinks.demo: the name 'demo' is already used in sources; connector names must be "
        "unique across sources, sinks and processors",
        "5:3: sinks.bad name: invalid connector name 'bad name' (letters, digits, '.', '_', '-'; "
        "starting with a letter or digit)",
    ]


def test_module_attribute_types(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        sinks:
          a: {type: "tests.core.plugins:NOPE", topics: [t]}
          b: {type: "nosuch.module:X", topics: [t]}
          c: {type: "tests.core.plugins:RESERVED", topics: [t]}
          d: {type: "tests.core.plugins:ListOptions", topics: [t]}
        """,
    ) == [
        "2:13: sinks.a.type: connector type 'tests.core.plugins:NOPE' could not be loaded: "
        "AttributeError: module 'tests.core.plugins' has no attribute 'NOPE'",
        "3:13: sinks.b.type: connector type 'nosuch.module:X' could not be loaded: "
        "ModuleNotFoundError: No module named 'nosuch'",
        "4:13: sinks.c.type: connector type 'tests.core.plugins:RESERVED': sink options model "
        "ReservedOptions defines 'retry', reserved by the runtime for every connector "
        "(reserved: dead_letter_topic, retry, start, topic, topics, type); rename the option",
        "5:13: sinks.d.type: connector type 'tests.core.plugins:ListOptions' is a "
        "ModelMetaclass, not a backbone.ConnectorKind",
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml", registry())
    assert info.value.problems == [
        f"{tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory"
    ]


def test_options_split_from_common_fields(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        sources:
          g: {type: generator, topic: t, rate: 5, dead_letter_topic: d,
              retry: {max_attempts: 3, initial_backoff: 1s, max_backoff: 1m}}
        """,
    )
    entry = config.sources["g"]
    assert entry.retry.max_attempts == 3 and entry.retry.max_backoff == 60.0
    options = connector_options(entry, generator.GeneratorOptions)
    assert options == generator.GeneratorOptions(rate=5)


def test_topic_config_sizes_and_durations(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        topics:
          t:
            retention: 1d
            config:
              segment.bytes: 64MiB
              max.message.bytes: 1048576
              retention.bytes: "-1"
              retention.ms: 7d
              segment.ms: "3600000"
              delete.retention.ms: 1.5s
              cleanup.policy: compact
              x.flag: true
        """,
    )
    assert config.topics["t"].kafka_configs() == {
        "segment.bytes": "67108864",
        "max.message.bytes": "1048576",
        "retention.bytes": "-1",
        "retention.ms": "604800000",  # the raw config wins over ``retention``
        "segment.ms": "3600000",  # an integer string is milliseconds, not seconds
        "delete.retention.ms": "1500",
        "cleanup.policy": "compact",
        "x.flag": "true",
    }
    assert problems(
        tmp_path,
        """\
        topics:
          t:
            config:
              segment.bytes: 64 megs
              flush.ms: 1.5
              segment.ms: soon
              min.compaction.lag.ms: 0.5ms
              retention.bytes: true
              max.message.bytes: [1]
        """,
    ) == [
        '4:22: topics.t.config.segment.bytes: expected a size like "64MiB" or a whole number '
        "of bytes (got '64 megs')",
        '5:17: topics.t.config.flush.ms: expected a duration like "7d" or a whole number of '
        "milliseconds (got 1.5)",
        '6:19: topics.t.config.segment.ms: expected a duration like "7d" or a whole number of '
        "milliseconds (got 'soon')",
        '7:30: topics.t.config.min.compaction.lag.ms: expected a duration like "7d" or a '
        "whole number of milliseconds (got '0.5ms')",
        '8:24: topics.t.config.retention.bytes: expected a size like "64MiB" or a whole '
        "number of bytes (got True)",
        '9:26: topics.t.config.max.message.bytes: expected a size like "64MiB" or a whole '
        "number of bytes (got [1])",
    ]


def test_broker_producer_and_consumer_maps(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        broker:
          producer: {linger_ms: 20, max_batch_size: 1MiB, compression_type: lz4}
          consumer: {fetch_max_wait_ms: 100, max_partition_fetch_bytes: 4MiB}
        """,
    )
    assert config.broker.producer.kafka_args() == {
        "linger_ms": 20,
        "max_batch_size": 1 << 20,
        "compression_type": "lz4",
    }
    assert config.broker.consumer.kafka_args() == {
        "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": 4 << 20,
    }
    defaults = load(tmp_path, "sinks: {}\n").broker
    assert defaults.producer.kafka_args() == {"linger_ms": 5, "max_batch_size": 512 * 1024}
    assert defaults.consumer.kafka_args() == {}


def test_broker_client_maps_refuse_unknown_and_guarantee_keys(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        broker:
          producer: {lingerms: 20, acks: 1, compression_type: brotli}
          consumer: {fetch_max_wait_ms: -1, enable_auto_commit: true}
        """,
    ) == [
        "2:14: broker.producer.lingerms: unknown key 'lingerms'; did you mean 'linger_ms'?",
        "2:28: broker.producer.acks: 'acks' cannot be set here: the gateway always produces "
        "with acks=all (nothing is lost once acknowledged)",
        "2:55: broker.producer.compression_type: Input should be 'gzip', 'snappy', 'lz4' or 'zstd'",
        "3:33: broker.consumer.fetch_max_wait_ms: Input should be greater than or equal to 0",
        "3:37: broker.consumer.enable_auto_commit: 'enable_auto_commit' cannot be set here: "
        "sinks commit only what they wrote (at-least-once)",
    ]
