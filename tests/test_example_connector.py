"""The "Write a connector" example (examples/connector/lines.py): the conformance suite
(backbone.testing) and a real pipeline on the embedded broker, as the docs promise."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from backbone import testing
from backbone.config import load_config
from backbone.registry import Registry
from backbone.runner import ConnectorState
from examples.connector.lines import CONNECTOR, LinesOptions, LinesSink, LinesSource

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[1]
KIND = "examples.connector.lines:CONNECTOR"


def lines_file(path: Path, values: list[Any]) -> None:
    append(path, "".join(json.dumps(value) + "\n" for value in values))


def append(path: Path, text: str) -> None:
    with open(path, "a") as file:
        file.write(text)


async def test_the_source_passes_the_conformance_suite(tmp_path: Path) -> None:
    lines_file(tmp_path / "in.jsonl", [{"n": n} for n in range(12)])

    def make() -> LinesSource:
        return LinesSource(LinesOptions(path="in.jsonl"), testing.context(tmp_path, "lines"))

    async def bad_input() -> None:
        append(tmp_path / "in.jsonl", '{"n": 12}\nnot json at all\n')

    await testing.check_source(make, minimum=10, bad_input=bad_input)
    await testing.check_source_idle_read(make, drain=12)


async def test_the_sink_passes_the_conformance_suite(tmp_path: Path) -> None:
    out = tmp_path / "out" / "out.jsonl"
    out.parent.mkdir()

    def make() -> LinesSink:
        return LinesSink(LinesOptions(path="out/out.jsonl"), testing.context(tmp_path, "lines"))

    async def read_back() -> list[Any]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    async def breaks() -> None:
        shutil.rmtree(out.parent)

    not_json = testing.sink_record(None, 9)
    not_json.value = b"\xff not json"
    records = [testing.sink_record({"n": n}, n) for n in range(3)]
    await testing.check_sink(
        make,
        records=records,
        read_back=read_back,
        expected=[{"n": n} for n in range(3)],
        good_then_bad=[testing.sink_record({"n": 8}, 8), not_json],
    )
    error = await testing.check_sink_errors_are_typed(make, records, breaks)
    assert type(error).__name__ == "RetriableError"
    assert re.match(r"^cannot append to .*out\.jsonl: \[Errno 2\] No such file", str(error))


async def test_bad_lines_reach_the_dead_letter_topic(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')

    async def inject() -> None:
        append(tmp_path / "in.jsonl", 'oops\n{"n": 2}\n')

    [dead] = await testing.check_source_dead_letters(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "broker"),
        tmp_path=tmp_path,
        source=f'{{type: "{KIND}", path: in.jsonl}}',
        inject=inject,
        count=1,
    )
    assert dead.value == b"oops"
    assert dict(dead.headers)["backbone.error.message"].startswith(b"not JSON: Expecting value")


async def test_a_pipeline_from_a_file_through_the_broker_to_a_file(tmp_path: Path) -> None:
    lines_file(tmp_path / "in.jsonl", [{"n": n} for n in range(5)])
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        testing.broker_yaml("embedded", data_dir=tmp_path / "broker")
        + testing.FAST_RUNTIME
        + f'sources:\n  in: {{type: "{KIND}", topic: lines, path: in.jsonl}}\n'
        + f'sinks:\n  out: {{type: "{KIND}", topics: [lines], path: out.jsonl}}\n'
    )
    out = tmp_path / "out.jsonl"

    def written() -> list[Any]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    async with testing.running(config) as runner:
        await testing.wait_until(lambda: len(written()) == 5, what="five lines in out.jsonl")
        lines_file(tmp_path / "in.jsonl", [{"n": 5}])
        await testing.wait_until(lambda: len(written()) == 6, what="the appended line")
        assert runner.status["in"].state is ConnectorState.RUNNING
        assert runner.status["out"].state is ConnectorState.RUNNING
    assert written() == [{"n": n} for n in range(6)]


def test_the_docs_yaml_validates(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "connectors.md").read_text()
    [block] = re.findall(r"```yaml\n(.*?)```", page, re.S)
    path = tmp_path / "docs.yaml"
    path.write_text(block)
    config = load_config(path, Registry.from_entry_points(), env={})
    assert config.sources["in"].dead_letter_topic == "lines.dlq"
    assert config.sinks["out"].topics == ["lines"]


def test_the_docs_show_the_example_file_verbatim() -> None:
    page = (ROOT / "docs" / "connectors.md").read_text()
    source = (ROOT / "examples" / "connector" / "lines.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert source in blocks
    assert CONNECTOR.name == "lines"
