"""The processor's fast path and its pipelined produce -> ack -> commit.

The transforms compile into one function of a record (no ``Event`` per record): its
output bytes are those of the general path (``event_from_record``, the steps,
``encode_event``). Batches are transformed while earlier outputs are on the wire,
and offsets are committed in order once their outputs are acknowledged: with tiny
batches, every output arrives once in per-partition order and the group commits to
the end of every input partition.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from backbone.connector import SinkRecord
from backbone.events import encode_event, event_from_record
from backbone.processor_worker import compile_processor
from backbone.runner import ConnectorState
from backbone.settings import ProcessorSettings
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running, wait_until
from backbone.transforms import apply_transforms, compile_filter
from tests.core.operating import cli

pytestmark = pytest.mark.timeout(120)

LIST = "tests.core.plugins:LIST"

CE = [("ce_id", b"id-1"), ("ce_source", b"backbone://x"), ("content-type", b"application/json")]
RECORDS = [
    # (key, value, headers, timestamp)
    (b"key-5", b'{"amount": 250, "country": "DE", "card": "4111"}', CE, 1714560000000),
    (b"key-5", b'{"amount": 50, "country": "DE", "card": "4111"}', CE, 1714560000000),
    (b'"quoted"', b'{"amount": 300, "country": "AT", "meta": 3}', [], 0),
    (b' {"b": 1, "a": 2}', b'{"amount": 300, "country": "AT", "meta": {"x": [1]}}', [], -1),
    (b"\xff\xfe", b'{"amount": 100, "country": "AT", "card": null}', CE, 5),
    (b"12", b'{"amount": 1e3, "country": "DE", "nested": {"card": "9"}}', [], 7),
    (None, b'{"amount": 99999999999999999999999, "country": "DE"}', [], 8),
    (None, b"not json at all", CE, 9),
    (b"tomb", None, CE, 10),
    (None, b"[1, 2, 3]", [("content-type", b"text/plain")], 11),
    (None, b'{"amount": "250", "country": "DE"}', [], 12),
    (None, b'{"amount": NaN, "country": "DE"}', [], 13),
]

TRANSFORMS: list[list[dict[str, Any]]] = [
    [
        {"filter": "amount >= 100 and country in ['DE', 'AT']"},
        {"mask": ["card"]},
        {"set": {"meta.checked": True, "tags": ["a"]}},
    ],
    [
        {"filter": "not (amount < 200) or nested.card != null"},
        {"mask": ["card", "nested.card"]},
        {"rename": {"country": "cc"}},
        {"drop": ["amount"]},
        {"route": {"field": "cc", "topics": {"DE": "out.de"}}},
    ],
    [{"set": {"a.b.c": 1}}, {"filter": "100 <= amount < 1000 and -amount < 0"}],
]


def general_path(settings: ProcessorSettings, record: SinkRecord) -> list[Any]:
    """What the processor produced for ``record`` before the fast path (the reference)."""
    event = event_from_record(record)
    keep, value, topic = apply_transforms(settings.transforms or [], event.value, in_place=True)
    if not keep:
        return []
    event.value, event.topic = value, topic
    out = encode_event(event, default_topic=settings.to)
    if out.timestamp_ms is None:
        out.timestamp_ms = record.timestamp_ms if record.timestamp_ms >= 0 else None
    return [(out.topic, out.key, out.value, out.headers, out.timestamp_ms)]


@pytest.mark.parametrize("transforms", TRANSFORMS)
def test_compiled_processor_writes_the_bytes_of_the_general_path(
    transforms: list[dict[str, Any]],
) -> None:
    settings = ProcessorSettings.model_validate(
        {"topics": ["in"], "to": "out.all", "transforms": transforms}
    )
    transform = compile_processor(settings)
    kept = 0
    for offset, (key, value, headers, stamp) in enumerate(RECORDS * 2):  # twice: key cache
        record = SinkRecord("in", 0, offset, key, value, list(headers), stamp)
        expected = general_path(settings, record)
        output = transform(key, value, headers, stamp)
        got = [] if output is None else [tuple(getattr(output, f) for f in FIELDS)]
        assert got == expected, record
        kept += len(got)
    assert 0 < kept < 2 * len(RECORDS)  # some kept, some filtered out


FIELDS = ("topic", "key", "value", "headers", "timestamp_ms")


async def test_tiny_batches_are_pipelined_in_order_and_committed_to_the_end(
    tmp_path: Path,
) -> None:
    src, out, name = f"in.{uuid.uuid4().hex[:8]}", f"out.{uuid.uuid4().hex[:8]}", "proc"
    values = [{"n": n, "keep": n % 3 != 0, "card": "4111"} for n in range(600)]
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        broker_yaml("embedded", data_dir=tmp_path / "broker")
        + FAST_RUNTIME.replace("runtime: {", "runtime: {max_batch: 7, ")
        + f"""
topics:
  {src}: {{partitions: 3}}
  {out}: {{partitions: 3}}
sources:
  src: {{type: "{LIST}", topic: {src}, values: {json.dumps(values)}}}
processors:
  {name}:
    topics: [{src}]
    to: {out}
    transforms:
      - filter: "keep == true"
      - mask: [card]
      - set: {{meta.checked: true}}
"""
    )
    kept = [v for v in values if v["keep"]]
    async with running(config) as runner:
        assert runner.bootstrap is not None
        records = await consume(runner.bootstrap, out, count=len(kept))
        status = runner.status[name]
        await wait_until(lambda: status.records_out == len(kept), what="records_out")
        admin = AIOKafkaAdminClient(bootstrap_servers=runner.bootstrap)
        await admin.start()
        try:
            ends: dict[TopicPartition, int] = {}

            async def committed_to_the_end() -> bool:
                offsets = await admin.list_consumer_group_offsets(f"backbone.{name}")
                done = {tp: meta.offset for tp, meta in offsets.items() if tp.topic == src}
                ends.update(done)
                return len(done) == 3 and sum(done.values()) == len(values)

            await wait_until(committed_to_the_end, what="offsets committed to the end")
        finally:
            await admin.close()
        assert status.records_in == len(values)
    got = [json.loads(r.value) for r in records]
    assert sorted(v["n"] for v in got) == [v["n"] for v in kept]  # each output once
    assert all(v["card"] == "****" and v["meta"] == {"checked": True} for v in got)
    by_partition: dict[int, list[int]] = {}
    for record in records:  # a key keeps its partition: each partition keeps the input order
        by_partition.setdefault(record.partition, []).append(json.loads(record.value)["n"])
    assert len(by_partition) == 3
    assert all(ns == sorted(ns) for ns in by_partition.values())
    assert sum(ends.values()) == len(values)


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("null == x", {"x": None}, True),  # literal names on the left stay literals
        ("null == x", {"null": 1, "x": 1}, False),
        ("true == x", {"x": True, "true": 5}, True),
        ("amount >= 100", {"amount": 100}, True),
        ("amount >= 100", {"amount": "a"}, False),  # a TypeError is false
        ("amount >= 100", [100], False),  # not an object: the field is missing
        ("a == 1", {"a": 1.0}, True),
        ("a.b in [1, 2]", {"a": {"b": 2}}, True),
        ("a.b in [1, 2]", {"a": 3}, False),
        ("x in ['DE']", {"x": ["DE"]}, False),
        ("not (x > 1) and y", {"x": 0, "y": [1]}, True),
        ("x or y", {"x": 0, "y": 0}, False),
    ],
)
def test_compiled_filters(expression: str, value: Any, expected: bool) -> None:
    assert compile_filter(expression)(value) is expected


async def test_an_output_that_cannot_be_produced_fails_the_processor_uncommitted(
    tmp_path: Path,
) -> None:
    src, out, name = f"in.{uuid.uuid4().hex[:8]}", f"out.{uuid.uuid4().hex[:8]}", "proc"
    pad = "x" * 1_100_000  # past the producer's max_request_size (1 MiB)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        broker_yaml("embedded", data_dir=tmp_path / "broker")
        + FAST_RUNTIME
        + f"""
sources:
  src: {{type: "{LIST}", topic: {src}, values: [{{"n": 0}}, {{"n": 1}}]}}
processors:
  {name}:
    topics: [{src}]
    to: {out}
    transforms:
      - set: {{pad: {pad}}}
"""
    )
    async with running(config) as runner:
        assert runner.bootstrap is not None
        status = runner.status[name]
        await wait_until(lambda: status.state is ConnectorState.FAILED, what="FAILED")
        assert status.error is not None and "MessageSizeTooLarge" in status.error
        assert status.records_out == 0
        admin = AIOKafkaAdminClient(bootstrap_servers=runner.bootstrap)
        await admin.start()
        try:  # nothing committed: a restart delivers the records again
            offsets = await admin.list_consumer_group_offsets(f"backbone.{name}")
        finally:
            await admin.close()
        assert [meta.offset for meta in offsets.values() if meta.offset >= 0] == []


async def test_redrive_of_a_processor_takes_only_its_own_dead_letters(tmp_path: Path) -> None:
    # two processors share a dead-letter topic: a redrive picks its connector's records
    # (the redrive's handle(), which the pipelined path must still go through)
    config = tmp_path / "gateway.yaml"
    processor = "{topics: [events], to: out, function: tests.core.processing:double, "
    config.write_text(
        'broker: {embedded: {listen: "127.0.0.1:0", data_dir: data}}\n'
        + FAST_RUNTIME
        + f'sources:\n  feed: {{type: "{LIST}", topic: events, values: [{{"n": 2}}, {{"m": 1}}]}}\n'
        + "processors:\n"
        + f"  one: {processor}dead_letter_topic: shared.dlq}}\n"
        + f"  two: {processor}dead_letter_topic: shared.dlq}}\n"
    )
    async with running(config) as runner:
        await wait_until(
            lambda: runner.status["one"].dead_lettered == runner.status["two"].dead_lettered == 1,
            what="one dead letter each",
        )
        redriven = await asyncio.to_thread(cli, "dlq", "redrive", "one", "-c", str(config))
    assert redriven.stdout.splitlines() == [
        "redrive one: 1 record(s), 0 processed again, 1 failed again",
        "  failed again: KeyError: 'n'",
    ]
