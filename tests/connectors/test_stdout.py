"""The stdout sink: one JSON line per event, conformance checks, through the runner."""

from __future__ import annotations

import io
import json
from pathlib import Path

from backbone import SinkRecord, testing
from backbone.connectors.stdout import StdoutOptions, StdoutSink, render


async def test_writes_one_json_line_per_record(tmp_path: Path) -> None:
    stream = io.StringIO()

    def make() -> StdoutSink:
        return StdoutSink(StdoutOptions(), testing.context(tmp_path), stream=stream)

    records = [testing.sink_record({"n": i}, i, key={"id": i}) for i in range(3)]

    async def read_back() -> list[object]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    expected = [
        {
            "topic": "t",
            "partition": 0,
            "offset": i,
            "timestamp": 1_700_000_000_000 + i,
            "key": {"id": i},
            "value": {"n": i},
            "headers": {"ce_id": str(i)},
        }
        for i in range(3)
    ]
    await testing.check_sink_writes(make, records, read_back, expected)

    async def breaks() -> None:
        stream.close()

    error = await testing.check_sink_errors_are_typed(make, records, breaks)
    assert str(error) == "cannot write to standard output: I/O operation on closed file"


def test_render_non_json_and_options() -> None:
    record = SinkRecord(
        topic="t", partition=1, offset=5, key=b"plain", value=b"\xff\x00", headers=[]
    )
    line = json.loads(render(record))
    assert line["key"] == "plain"
    assert line["value"] == {"base64": "/wA="}
    assert "headers" not in json.loads(render(record, headers=False))
    tomb = SinkRecord(topic="t", partition=0, offset=0, key=None, value=None)
    assert json.loads(render(tomb))["value"] is None
    assert render(tomb, indent=2).count("\n") > 3


def test_lines_are_compact_json_with_text_keys_and_exact_numbers() -> None:
    record = SinkRecord(
        topic="t",
        partition=2,
        offset=7,
        key=b"key-5",
        value=b'{"n": 18446744073709551616, "s": "\xc3\xa9", "f": 0.5}',
        headers=[("ce_id", b"abc"), ("content-type", b"application/json")],
        timestamp_ms=1_700_000_000_000,
    )
    assert render(record) == (
        '{"topic":"t","partition":2,"offset":7,"timestamp":1700000000000,"key":"key-5",'
        '"value":{"n":18446744073709551616,"s":"é","f":0.5},'
        '"headers":{"ce_id":"abc","content-type":"application/json"}}'
    )
    pretty = render(record, indent=2)
    assert pretty == json.dumps(json.loads(pretty), ensure_ascii=False, indent=2)
    assert json.loads(render(record, indent=4)) == json.loads(pretty)


def test_values_that_are_not_strict_json_print_as_text() -> None:
    def value_of(data: bytes) -> object:
        record = SinkRecord(topic="t", partition=0, offset=0, key=b'{"id": 1}', value=data)
        line = json.loads(render(record))
        assert line["key"] == {"id": 1}
        return line["value"]

    assert value_of(b'{"x": NaN}') == '{"x": NaN}'  # json.loads would read NaN
    assert value_of(b"true") is True
    assert value_of(b"trueish") == "trueish"
    assert value_of(b"") == ""


async def test_writes_bytes_after_text_already_on_the_stream(tmp_path: Path) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    stream.write("before\n")  # still in the text layer's buffer
    sink = StdoutSink(StdoutOptions(headers=False), testing.context(tmp_path), stream=stream)
    await sink.write([testing.sink_record({"n": i}, i) for i in range(2)])
    lines = raw.getvalue().decode().splitlines()
    assert lines[0] == "before"
    assert [json.loads(line)["value"] for line in lines[1:]] == [{"n": 0}, {"n": 1}]
