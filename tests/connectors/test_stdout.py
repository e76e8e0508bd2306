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
