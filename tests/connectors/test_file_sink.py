"""The file sink on real files in ``tmp_path``: the conformance suite (with commits through
a crash), complete files, rotation, names from offsets, formats, typed errors."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from backbone import SinkRecord, TopicPartition, testing
from backbone.connectors.file import FileSink, FileSinkOptions, file_name

pytestmark = pytest.mark.timeout(60)


def sink(tmp_path: Path, clock: testing.ManualClock | None = None, **options: Any) -> FileSink:
    options.setdefault("path", "out")
    context = testing.context(tmp_path, "archive", clock=clock)
    return FileSink(FileSinkOptions(**options), context)


def published(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def lines(folder: Path) -> list[Any]:
    out: list[Any] = []
    for name in published(folder):
        out += [json.loads(line) for line in (folder / name).read_text().splitlines()]
    return out


def record(value: Any, offset: int, *, partition: int = 0, ts: int | None = None) -> SinkRecord:
    made = testing.sink_record(value, offset)
    made.partition = partition
    if ts is not None:
        made.timestamp_ms = ts
    return made


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


async def test_the_sink_passes_the_conformance_suite(tmp_path: Path, out: Path) -> None:
    def make() -> FileSink:
        return sink(tmp_path)

    async def read_back() -> list[Any]:
        return lines(out)

    async def breaks() -> None:
        shutil.rmtree(out)

    not_json = testing.sink_record(None, 9)
    not_json.value = b"\xff not json"
    records = [record({"n": n}, n) for n in range(3)]
    await testing.check_sink(
        make,
        records=records,
        read_back=read_back,
        expected=[{"n": n} for n in range(3)],
        good_then_bad=[record({"n": 8}, 8), not_json],
    )
    error = await testing.check_sink_errors_are_typed(make, [record({"n": 20}, 20)], breaks)
    assert type(error).__name__ == "RetriableError"
    assert "cannot create a file in" in str(error) and "No such file or directory" in str(error)


@pytest.mark.parametrize("rotate", [{"records": 7}, {"size": 100}, {"size": "64MiB"}])
async def test_commits_only_published_records_and_a_crash_rewrites_the_same_files(
    tmp_path: Path, out: Path, rotate: dict[str, Any]
) -> None:
    records = [record({"n": n}, n, partition=n % 2) for n in range(40)]

    async def read_back() -> list[Any]:
        return lines(out)

    def make() -> FileSink:
        return sink(tmp_path, rotate=rotate)

    await testing.check_sink_commits(make, records, read_back, [{"n": n} for n in range(40)])
    names = published(out)
    assert all(name.startswith(("t-0-", "t-1-")) for name in names), names
    assert not hidden(out), "a temporary file is left"


async def test_files_are_named_by_first_offset_and_rotate_by_records(
    tmp_path: Path, out: Path
) -> None:
    s = sink(tmp_path, rotate={"records": 3, "interval": None})
    await s.open()
    try:
        await s.write([record({"n": n}, 100 + n) for n in range(7)])
        tp = TopicPartition("t", 0)
        assert await s.precommit({tp: 107}) == {tp: 106}  # 106 sits in the open file
        assert published(out) == [file_name("t", 0, 100, "jsonl"), file_name("t", 0, 103, "jsonl")]
        assert published(out)[0] == "t-0-00000000000000000100.jsonl"
        assert hidden(out) == [".t-0-00000000000000000106.jsonl.tmp"]
        await s.flush([tp])
        assert await s.precommit({tp: 107}) == {tp: 107}
    finally:
        await s.close()
    assert lines(out) == [{"n": n} for n in range(7)]
    assert (out / "t-0-00000000000000000103.jsonl").read_text() == (
        '{"n": 3}\n{"n": 4}\n{"n": 5}\n'
    )


async def test_rotation_by_record_time_and_by_age(tmp_path: Path, out: Path) -> None:
    clock = testing.ManualClock("2024-05-01T00:00:00+00:00")
    s = sink(tmp_path, clock, rotate={"interval": "1m", "size": None})
    await s.open()
    tp = TopicPartition("t", 0)
    try:
        base = 1_714_521_600_000
        await s.write([record({"n": n}, n, ts=base + n * 20_000) for n in range(5)])
        # records 0-2 span 40 s; record 3 is 60 s after record 0: a new file
        assert published(out) == [file_name("t", 0, 0, "jsonl")]
        assert await s.precommit({tp: 5}) == {tp: 3}
        clock.advance(59)
        assert await s.precommit({tp: 5}) == {tp: 3}
        clock.advance(1)  # the open file is a minute old: published without new records
        assert await s.precommit({tp: 5}) == {tp: 5}
        assert published(out) == [file_name("t", 0, 0, "jsonl"), file_name("t", 0, 3, "jsonl")]
    finally:
        await s.close()


async def test_a_retried_batch_is_not_written_twice(tmp_path: Path, out: Path) -> None:
    s = sink(tmp_path, rotate={"records": 2})
    await s.open()
    try:
        batch = [record({"n": n}, n) for n in range(5)]
        await s.write(batch)
        await s.write(batch)  # the runtime retrying after a failure it did not see
        await s.write([*batch, record({"n": 5}, 5)])
        await s.flush([TopicPartition("t", 0)])
    finally:
        await s.close()
    assert lines(out) == [{"n": n} for n in range(6)]


async def test_csv_and_raw_formats(tmp_path: Path, out: Path) -> None:
    s = sink(tmp_path, format="csv", columns=["id", "name", "tags", "ok"], delimiter=";")
    await s.open()
    try:
        await s.write(
            [
                record({"id": 1, "name": "a;b", "tags": ["x"], "ok": True}, 0),
                record({"id": 2, "extra": "ignored"}, 1),
                testing.sink_record(None, 2),  # a tombstone: nothing written
            ]
        )
        await s.flush([TopicPartition("t", 0)])
        with pytest.raises(Exception, match="format csv needs a JSON object, got list") as error:
            await s.write([record([1, 2], 3)])
        assert type(error.value).__name__ == "DataError"
    finally:
        await s.close()
    [name] = published(out)
    assert name == "t-0-00000000000000000000.csv"
    rows = list(csv.reader(io.StringIO((out / name).read_text()), delimiter=";"))
    assert rows == [["id", "name", "tags", "ok"], ["1", "a;b", '["x"]', "true"], ["2", "", "", ""]]

    raw = tmp_path / "raw"
    raw.mkdir()
    r = sink(tmp_path, path="raw", format="raw", separator="|", extension="txt")
    await r.open()
    try:
        first = testing.sink_record(None, 0)
        first.value = b"\x00bytes"
        second = testing.sink_record(None, 1)
        second.value = b"more"
        await r.write([first, second])
        await r.flush([TopicPartition("t", 0)])
    finally:
        await r.close()
    assert (raw / "t-0-00000000000000000000.txt").read_bytes() == b"\x00bytes|more|"


async def test_pretty_json_values_become_one_line(tmp_path: Path, out: Path) -> None:
    s = sink(tmp_path)
    await s.open()
    try:
        pretty = testing.sink_record(None, 0)
        pretty.value = b'{\n  "a": "x\\ny"\n}'
        await s.write([pretty])
        await s.flush([TopicPartition("t", 0)])
    finally:
        await s.close()
    assert (out / "t-0-00000000000000000000.jsonl").read_text() == '{"a":"x\\ny"}\n'


def test_options_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ValueError, match="format: csv needs columns"):
        FileSinkOptions(path="out", format="csv")
    with pytest.raises(ValueError, match="columns only apply to format: csv"):
        FileSinkOptions(path="out", columns=["a"])
    with pytest.raises(ValueError, match="separator only applies to format: raw"):
        FileSinkOptions(path="out", separator=";")
    with pytest.raises(ValueError, match="expected an extension like 'jsonl'"):
        FileSinkOptions(path="out", extension=".csv")
