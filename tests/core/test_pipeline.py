"""The runtime end to end, against Tansu (``broker.bootstrap``) and the embedded broker.

Source -> topic -> sink, positions saved and resumed, dead-letter headers, FAILED
states, retries honouring ``retry_after``, processors. Real brokers, real aiokafka.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from backbone.positions import POSITIONS_TOPIC, PositionStore, history
from backbone.runner import ConnectorState
from backbone.testing import (
    FAST_RUNTIME,
    broker_yaml,
    check_sink_dead_letters,
    check_source_through_crash,
    consume,
    running,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

LIST = "tests.core.plugins:LIST"
FILE = "tests.core.plugins:FILE"


@pytest.fixture(params=["tansu", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``broker:`` YAML section of each broker the runtime must work with."""
    if request.param == "tansu":
        return broker_yaml("tansu", tansu=request.getfixturevalue("tansu"))
    return broker_yaml("embedded", data_dir=tmp_path / "broker")


def uid() -> str:
    return uuid.uuid4().hex[:8]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_generator_to_file_sink_and_positions(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"gen-{uid()}"
    out = tmp_path / "out.jsonl"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
topics:
  {topic}: {{partitions: 3}}
sources:
  {name}: {{type: generator, topic: {topic}, rate: 1000, count: 50, keys: 7}}
sinks:
  sink-{name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl}}
""",
    )
    async with running(config) as runner:
        await wait_until(lambda: len(read_lines(out)) >= 50, what="50 records in the sink")
        assert runner.status[name].state is ConnectorState.RUNNING
        bootstrap = runner.bootstrap
        assert bootstrap is not None
        await wait_until(lambda: _position(bootstrap, name, 50), what="position 50 saved")
        records = await consume(bootstrap, topic, count=50)
    lines = read_lines(out)
    assert sorted(line["value"]["seq"] for line in lines) == list(range(1, 51))
    by_key: dict[str, list[int]] = {}
    for line in lines:
        by_key.setdefault(line["key"], []).append(line["value"]["seq"])
    for key, seqs in by_key.items():  # per-key order holds across partitions
        assert seqs == sorted(seqs), key
    headers = dict(records[0].headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == f"backbone://{name}".encode()
    assert headers["ce_type"] == b"backbone.generator.event"
    assert headers["content-type"] == b"application/json"
    assert set(headers) >= {"ce_id", "ce_time"}


async def test_source_resumes_from_saved_position(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"gen-{uid()}"
    text = (
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: generator, topic: {topic}, rate: 1000, count: COUNT}}
"""
    )
    config = write(tmp_path, text.replace("COUNT", "20"))
    async with running(config) as runner:
        bootstrap = runner.bootstrap
        assert bootstrap is not None
        await consume(bootstrap, topic, count=20)
    config = write(tmp_path, text.replace("COUNT", "30"))
    async with running(config) as runner:
        assert runner.bootstrap is not None
        records = await consume(runner.bootstrap, topic, count=30)
        saved = await wait_until(
            lambda: _position(runner.bootstrap, name, 30), what="position 30 saved"
        )
    assert saved == 30
    seqs = [json.loads(r.value)["seq"] for r in records]
    assert seqs == list(range(1, 31))  # resumed after 20: no gap, no repeat


async def _position(bootstrap: str, name: str, want: int) -> bool:
    records = await consume(bootstrap, POSITIONS_TOPIC, count=1)
    values = history(records, name)
    return bool(values) and values[-1] == want and want


async def test_dead_letter_headers_and_isolation(broker: str, tmp_path: Path) -> None:
    topic, dlq, name = f"t.{uid()}", f"dlq.{uid()}", f"src-{uid()}"
    out = tmp_path / "out.jsonl"
    values = [{"n": 0}, {"n": 1, "bad": True}, {"n": 2}, {"n": 3, "bad": True}, {"n": 4}]
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: {json.dumps(values)}}}
sinks:
  sink-{name}:
    type: "{FILE}"
    topics: [{topic}]
    path: out.jsonl
    dead_letter_topic: {dlq}
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        dead = await consume(runner.bootstrap, dlq, count=2)
        await wait_until(lambda: len(read_lines(out)) >= 3, what="good records written")
        sink_status = runner.status[f"sink-{name}"]
        assert sink_status.state is ConnectorState.RUNNING
    assert [line["value"]["n"] for line in read_lines(out)] == [0, 2, 4]
    assert [json.loads(r.value) for r in dead] == [values[1], values[3]]
    headers = dict(dead[0].headers)
    assert headers["backbone.error.connector"] == f"sink-{name}".encode()
    assert headers["backbone.error.class"] == b"DataError"
    assert headers["backbone.error.message"] == b"bad record 1"
    assert headers["backbone.error.attempts"] == b"1"
    assert headers["backbone.original.topic"] == topic.encode()
    assert headers["backbone.original.partition"] == b"0"
    assert headers["backbone.original.offset"] == b"1"
    assert dead[0].key == b"k1"
    assert headers["ce_source"] == f"backbone://{name}".encode()  # original headers kept


async def test_no_dead_letter_topic_means_failed(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    out = tmp_path / "out.jsonl"
    values = [{"n": 0}, {"n": 1, "bad": True}, {"n": 2}]
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: {json.dumps(values)}}}
sinks:
  sink-{name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl}}
  other-{name}: {{type: "{FILE}", topics: [{topic}], path: other.jsonl}}
""",
    )
    async with running(config) as runner:
        status = runner.status[f"sink-{name}"]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
        assert status.error == "DataError: bad record 1"
        # the other sink fails on the same record, by itself and after writing record 0
        other = runner.status[f"other-{name}"]
        await wait_until(lambda: other.state is ConnectorState.FAILED, what="other FAILED")
        assert [line["value"]["n"] for line in read_lines(tmp_path / "other.jsonl")] == [0]
        # the source is unaffected
        assert runner.status[name].state is ConnectorState.RUNNING
    assert [line["value"]["n"] for line in read_lines(out)] == [0]


async def test_retry_honours_retry_after_then_succeeds(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    out = tmp_path / "out.jsonl"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [{{"n": 0}}]}}
sinks:
  sink-{name}:
    type: "{FILE}"
    topics: [{topic}]
    path: out.jsonl
    fail_first: 2
    retry_after: 0.3
    retry: {{max_attempts: 5, initial_backoff: 1ms, max_backoff: 2ms}}
""",
    )
    async with running(config):
        await wait_until(lambda: read_lines(out), what="record written")
    log = Path(f"{out}.attempts").read_text()  # noqa: ASYNC240 - after the run
    attempts = [float(line.split()[0]) for line in log.splitlines()]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.3 and attempts[2] - attempts[1] >= 0.3


async def test_retries_exhausted_go_to_dead_letter(broker: str, tmp_path: Path) -> None:
    topic, dlq, name = f"t.{uid()}", f"dlq.{uid()}", f"src-{uid()}"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [{{"n": 0}}]}}
sinks:
  sink-{name}:
    type: "{FILE}"
    topics: [{topic}]
    path: out.jsonl
    fail_first: 100
    dead_letter_topic: {dlq}
    retry: {{max_attempts: 3, initial_backoff: 1ms, max_backoff: 5ms}}
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        dead = await consume(runner.bootstrap, dlq, count=1)
    headers = dict(dead[0].headers)
    assert headers["backbone.error.class"] == b"RetriableError"
    assert headers["backbone.error.message"] == b"scripted failure 3"
    assert headers["backbone.error.attempts"] == b"3"
    assert json.loads(dead[0].value) == {"n": 0}


async def test_source_dead_letter_for_unparseable_records(broker: str, tmp_path: Path) -> None:
    topic, dlq, name = f"t.{uid()}", f"dlq.{uid()}", f"src-{uid()}"
    values = [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}:
    type: "{LIST}"
    topic: {topic}
    dead_letter_topic: {dlq}
    values: {json.dumps(values)}
    error_at: [1]
    unserializable_at: [2]
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        good = await consume(runner.bootstrap, topic, count=2)
        dead = await consume(runner.bootstrap, dlq, count=2)
    assert [json.loads(r.value) for r in good] == [{"n": 0}, {"n": 3}]
    assert dead[0].value == b"raw-1"
    assert dict(dead[0].headers)["backbone.error.message"] == b"cannot parse line"
    assert dict(dead[1].headers)["backbone.error.class"] == b"DataError"
    assert dict(dead[1].headers)["backbone.error.message"].startswith(
        b"value cannot be serialized as JSON"
    )


async def test_source_without_dead_letter_fails_on_bad_record(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [1, 2], error_at: [1]}}
""",
    )
    async with running(config) as runner:
        status = runner.status[name]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
        assert status.error == "DataError: cannot parse line"


async def test_processor_transforms_and_function(broker: str, tmp_path: Path) -> None:
    src, routed_de, other, mapped = (f"{p}.{uid()}" for p in ("in", "de", "other", "mapped"))
    name = f"src-{uid()}"
    values = [
        {"n": 0, "country": "DE", "amount": 500, "card": "1234"},
        {"n": 1, "country": "FR", "amount": 5},
        {"n": 2, "country": "US", "amount": 700, "card": "9999"},
    ]
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {src}, values: {json.dumps(values)}}}
processors:
  route-{name}:
    topics: [{src}]
    transforms:
      - filter: "amount > 100"
      - mask: [card]
      - set: {{meta.checked: true}}
      - rename: {{n: number}}
      - drop: [amount]
      - route: {{field: country, topics: {{DE: {routed_de}}}, default: {other}}}
  fn-{name}:
    topics: [{src}]
    to: {mapped}
    function: tests.core.processing:double
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        de = await consume(runner.bootstrap, routed_de, count=1)
        rest = await consume(runner.bootstrap, other, count=1)
        doubled = await consume(runner.bootstrap, mapped, count=4)
    assert json.loads(de[0].value) == {
        "number": 0,
        "country": "DE",
        "card": "****",
        "meta": {"checked": True},
    }
    assert json.loads(rest[0].value)["number"] == 2
    assert de[0].key == b"k0"
    assert [json.loads(r.value) for r in doubled] == [
        {"n": 0, "copy": 1},
        {"n": 0, "copy": 2},
        {"n": 2, "copy": 1},
        {"n": 2, "copy": 2},
    ]


async def test_conformance_sink_dead_letters_with_the_file_sink(
    broker: str, tmp_path: Path
) -> None:
    out = tmp_path / "conf.jsonl"

    async def read_back() -> list[Any]:
        return [line["value"] for line in read_lines(out)]

    values = [{"n": 0}, {"n": 1, "bad": True}, {"n": 2}]
    await check_sink_dead_letters(
        broker=broker,
        tmp_path=tmp_path,
        sink=f'{{type: "{FILE}", path: conf.jsonl}}',
        values=values,
        bad=[1],
        read_back=read_back,
        expected=[{"n": 0}, {"n": 2}],
    )


async def test_conformance_source_through_crash_with_the_generator(
    broker: str, tmp_path: Path
) -> None:
    def seqs(lines: list[dict[str, Any]]) -> set[int]:
        return {line["value"]["seq"] for line in lines}

    lines = await check_source_through_crash(
        broker=broker,
        tmp_path=tmp_path,
        source="{type: generator, rate: 40, count: 600}",  # 15 s: the kill lands mid-stream
        kill_when=lambda lines: len(seqs(lines)) >= 1,
        done_when=lambda lines: len(seqs(lines)) == 600,
    )
    assert seqs(lines) == set(range(1, 601))


async def test_fatal_error_fails_only_that_sink(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [{{"fatal": true}}]}}
sinks:
  sink-{name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl, dead_letter_topic: d.{name}}}
processors:
  copy-{name}: {{topics: [{topic}], to: copy.{topic}, transforms: [{{set: {{copied: true}}}}]}}
""",
    )
    async with running(config) as runner:
        status = runner.status[f"sink-{name}"]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
        assert status.error == "FatalError: fatal record"
        assert runner.bootstrap is not None
        copied = await consume(runner.bootstrap, f"copy.{topic}", count=1)
        assert runner.status[f"copy-{name}"].state is ConnectorState.RUNNING
    assert json.loads(copied[0].value) == {"fatal": True, "copied": True}


async def test_processor_function_errors_go_to_dead_letter(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [{{"n": 2}}, {{"m": 1}}, {{"n": 4}}]}}
processors:
  fn-{name}:
    topics: [{topic}]
    to: out.{topic}
    function: tests.core.processing:double
    dead_letter_topic: dlq.{topic}
""",
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        dead = await consume(runner.bootstrap, f"dlq.{topic}", count=1)
        out = await consume(runner.bootstrap, f"out.{topic}", count=4)
    assert json.loads(dead[0].value) == {"m": 1}
    headers = dict(dead[0].headers)
    assert headers["backbone.error.class"] == b"KeyError"
    assert headers["backbone.error.message"] == b"'n'"
    assert headers["backbone.original.offset"] == b"1"
    assert [json.loads(r.value)["n"] for r in out] == [2, 2, 4, 4]


async def test_sink_start_at_timestamp(
    broker: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "bootstrap" in broker:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="Tansu answers ListOffsets by timestamp with offset 0, timestamp -1",
            )
        )
    topic, first, second = f"t.{uid()}", f"a-{uid()}", f"b-{uid()}"
    text = broker + FAST_RUNTIME + "sources:\n"
    one = write(tmp_path, text + f'  {first}: {{type: "{LIST}", topic: {topic}, values: [1, 2]}}\n')
    async with running(one) as runner:
        assert runner.bootstrap is not None
        early = await consume(runner.bootstrap, topic, count=2)
    cut = dt.datetime.fromtimestamp((early[-1].timestamp + 1) / 1000, dt.UTC)
    # the second run's records must be stamped at or after the cut
    await wait_until(lambda: dt.datetime.now(dt.UTC) > cut, within=5, what="the clock past the cut")
    two = write(
        tmp_path,
        text
        + f'  {second}: {{type: "{LIST}", topic: {topic}, values: [3, 4]}}\n'
        + f'sinks:\n  late-{second}: {{type: "{FILE}", topics: [{topic}], path: late.jsonl, '
        + f'start: "{cut.isoformat()}"}}\n',
    )
    async with running(two):
        await wait_until(lambda: len(read_lines(tmp_path / "late.jsonl")) >= 2, what="2 records")
    assert [line["value"] for line in read_lines(tmp_path / "late.jsonl")] == [3, 4]


async def test_position_does_not_pass_a_record_that_failed_to_produce(
    broker: str, tmp_path: Path
) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    huge = "x" * 2_000_000  # larger than the producer's max request size
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: "{LIST}", topic: {topic}, values: [1, 2, "{huge}", 4]}}
""",
    )
    async with running(config) as runner:
        status = runner.status[name]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
        assert status.error is not None and "MessageSizeTooLargeError" in status.error
        assert runner.bootstrap is not None
        good = await consume(runner.bootstrap, topic, count=2)
        saved = await PositionStore(None, runner.bootstrap).load()  # type: ignore[arg-type]
    assert [json.loads(r.value) for r in good] == [1, 2]
    assert saved.get(name) in (None, 1, 2)


async def test_stop_commits_what_is_done(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"gen-{uid()}"
    out = tmp_path / "out.jsonl"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: generator, topic: {topic}, rate: 1000, count: 40}}
sinks:
  sink-{name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl}}
""",
    )
    async with running(config):
        await wait_until(lambda: len(read_lines(out)) == 40, what="40 records")
    async with running(config) as runner:
        sink = runner.status[f"sink-{name}"]
        await wait_until(lambda: sink.state is ConnectorState.RUNNING, what="sink running")
        # a marker after the 40 records: once the sink wrote it, it would have written
        # anything redelivered from before it (a partition is consumed in order)
        assert runner.bootstrap is not None
        producer = AIOKafkaProducer(bootstrap_servers=runner.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b'{"seq": 41}')
        finally:
            await producer.stop()
        await wait_until(lambda: len(read_lines(out)) > 40, what="the marker in the sink")
    assert [line["value"]["seq"] for line in read_lines(out)] == list(range(1, 42))


async def test_source_read_retries_report_status_and_recover(broker: str, tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"src-{uid()}"
    config = write(
        tmp_path,
        broker
        + FAST_RUNTIME
        + f"""
sources:
  {name}:
    type: "{LIST}"
    topic: {topic}
    values: [1, 2]
    fail_reads: 3
    retry: {{initial_backoff: 300ms, max_backoff: 300ms}}
""",
    )
    async with running(config) as runner:
        status = runner.status[name]
        await wait_until(lambda: status.error is not None, what="the retry reported")
        # between attempts BACKOFF, during one RUNNING
        assert status.state in (ConnectorState.BACKOFF, ConnectorState.RUNNING)
        assert status.error.startswith("RetriableError: source down (")
        assert runner.bootstrap is not None
        records = await consume(runner.bootstrap, topic, count=2)
        await wait_until(lambda: status.error is None, what="the error cleared")
        assert status.state is ConnectorState.RUNNING
        assert status.retries == 3 and status.errors == 3
        assert status.last_error is not None and status.last_error_at is not None
    assert [json.loads(r.value) for r in records] == [1, 2]


def batch_codecs(log_dir: Path) -> set[int]:
    """Compression codecs (attributes & 7) of every record batch in a partition folder."""
    codecs = set()
    for segment in log_dir.glob("*.log"):
        data = segment.read_bytes()
        at = 0
        while at + 23 <= len(data):
            length = int.from_bytes(data[at + 8 : at + 12], "big")
            codecs.add(int.from_bytes(data[at + 21 : at + 23], "big") & 7)
            at += 12 + length
    return codecs


async def test_broker_producer_and_consumer_maps_reach_aiokafka(tmp_path: Path) -> None:
    topic, name = f"t.{uid()}", f"gen-{uid()}"
    out = tmp_path / "out.jsonl"
    data_dir = tmp_path / "broker"
    config = write(
        tmp_path,
        f"""\
broker:
  embedded: {{listen: "127.0.0.1:0", data_dir: "{data_dir}"}}
  producer: {{compression_type: lz4, linger_ms: 0, max_batch_size: 64KiB}}
  consumer: {{max_partition_fetch_bytes: 1KiB, fetch_max_wait_ms: 50}}
"""
        + FAST_RUNTIME
        + f"""
topics:
  {topic}: {{partitions: 1}}
sources:
  {name}: {{type: generator, topic: {topic}, rate: 2000, count: 300, keys: 7}}
sinks:
  sink-{name}: {{type: "{FILE}", topics: [{topic}], path: out.jsonl}}
""",
    )
    async with running(config):
        # a 1 KiB fetch limit still delivers everything (at least one batch per fetch)
        await wait_until(lambda: len(read_lines(out)) >= 300, what="300 records in the sink")
    assert sorted(line["value"]["seq"] for line in read_lines(out)) == list(range(1, 301))
    assert batch_codecs(data_dir / f"{topic}-0") == {3}  # every batch lz4, as the map said
