"""The file source on real files in ``tmp_path``: the conformance suite, spool (done and
error folders, acknowledgements), tail (appends, rotation, truncation), formats."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from backbone import SourceRecord, testing
from backbone.connectors.file import FileSource, FileSourceOptions

pytestmark = pytest.mark.timeout(90)


def source(tmp_path: Path, name: str = "files", **options: Any) -> FileSource:
    options.setdefault("path", "in")
    return FileSource(FileSourceOptions(**options), testing.context(tmp_path, name))


def write(path: Path, text: str | bytes, *, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if age:
        stamp = path.stat().st_mtime - age
        os.utime(path, (stamp, stamp))
    return path


def append(path: Path, text: str) -> None:
    with open(path, "a") as file:
        file.write(text)


def jsonl(values: list[Any]) -> str:
    return "".join(json.dumps(value) + "\n" for value in values)


def headers(record: SourceRecord) -> dict[str, bytes]:
    return dict(record.headers)


def produced(records: list[SourceRecord]) -> list[SourceRecord]:
    return [record for record in records if record.produce]


async def read_all(src: FileSource, count: int, *, within: float = 20.0) -> list[SourceRecord]:
    records = await testing.read_at_least(src, count, within=within)
    return produced(records)


async def ack_last(src: FileSource, records: list[SourceRecord]) -> None:
    await src.ack([r.position for r in records if r.position is not None][-1])


# ----------------------------------------------------------------------------- conformance


async def test_spool_jsonl_passes_the_conformance_suite(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.jsonl", jsonl([{"n": n} for n in range(8)]))
    write(tmp_path / "in" / "b.jsonl", jsonl([{"n": n} for n in range(8, 16)]), age=0)
    os.utime(tmp_path / "in" / "a.jsonl", (1, 1))  # a is older: read first

    def make() -> FileSource:
        return source(tmp_path, format="jsonl")

    async def bad_input() -> None:
        write(tmp_path / "in" / "c.jsonl", '{"n": 16}\nnot json\n')

    await testing.check_source(make, minimum=12, bad_input=bad_input)
    await testing.check_source_idle_read(make, drain=16)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        "a.jsonl",
        "b.jsonl",
        "c.jsonl",
    ], "a file moved before its records were acknowledged"


async def test_tail_lines_pass_the_conformance_suite(tmp_path: Path) -> None:
    log = write(tmp_path / "in" / "app.log", "".join(f"line {n}\n" for n in range(12)))

    def make() -> FileSource:
        return source(tmp_path, mode="tail", pattern="*.log")

    async def more() -> None:
        append(log, "line 12\n")

    await testing.check_source_resumes(make, minimum=10)
    await testing.check_source_replays(make, minimum=10)
    await testing.check_source_cancellation(make, more=more)
    await testing.check_source_idle_read(make, drain=13)


async def test_csv_passes_the_conformance_suite(tmp_path: Path) -> None:
    rows = "".join(f"{n},item {n},{n}.5\n" for n in range(12))
    write(tmp_path / "in" / "items.csv", "id,name,price\n" + rows)

    def make() -> FileSource:
        return source(tmp_path, format="csv", types={"id": "integer", "price": "number"}, key="id")

    async def bad_input() -> None:
        write(tmp_path / "in" / "more.csv", "id,name,price\n12,x,1.0\n13,too,many,fields\n")

    await testing.check_source(make, minimum=10, bad_input=bad_input)


# ----------------------------------------------------------------------------- spool


async def test_spool_moves_a_file_to_done_only_after_all_its_records_are_acked(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "orders.jsonl", jsonl([{"id": i} for i in range(5)]))
    src = source(tmp_path, format="jsonl", key="id")
    await src.open(None)
    try:
        records = await read_all(src, 5)
        assert [json.loads(r.value) for r in records] == [{"id": i} for i in range(5)]
        assert [r.key for r in records] == list(range(5))
        assert [headers(r)["file.line"] for r in records] == [b"1", b"2", b"3", b"4", b"5"]
        assert {headers(r)["file.name"] for r in records} == {b"orders.jsonl"}
        assert (inbox / "orders.jsonl").exists()
        await src.ack(records[3].position)  # not the last one: the file stays
        assert (inbox / "orders.jsonl").exists()
        await src.ack(records[4].position)
        assert not (inbox / "orders.jsonl").exists()
        assert (inbox / "done" / "orders.jsonl").read_text() == jsonl([{"id": i} for i in range(5)])
    finally:
        await src.close()


async def test_spool_done_dir_keeps_files_of_the_same_name(tmp_path: Path) -> None:
    write(tmp_path / "in" / "daily.csv", "a\n1\n")
    write(tmp_path / "done" / "daily.csv", "a\n0\n")
    src = source(tmp_path, format="csv", done_dir="done")
    await src.open(None)
    try:
        records = await read_all(src, 1)
        assert records[0].value == {"a": "1"}
        await ack_last(src, records)
    finally:
        await src.close()
    assert (tmp_path / "done" / "daily.csv").read_text() == "a\n0\n"
    assert (tmp_path / "done" / "daily.1.csv").read_text() == "a\n1\n"


async def test_spool_deletes_finished_files_with_on_done_delete(tmp_path: Path) -> None:
    write(tmp_path / "in" / "x.txt", "hello\n")
    src = source(tmp_path, on_done="delete")
    await src.open(None)
    try:
        records = await read_all(src, 1)
        assert records[0].value == b"hello"
        await ack_last(src, records)
    finally:
        await src.close()
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == []


async def test_an_empty_file_is_done_without_records(tmp_path: Path) -> None:
    write(tmp_path / "in" / "empty.jsonl", "\n\n")
    src = source(tmp_path, format="jsonl")
    await src.open(None)
    try:
        [only] = await testing.read_at_least(src, 1)
        assert not only.produce
        await src.ack(only.position)
    finally:
        await src.close()
    assert (tmp_path / "in" / "done" / "empty.jsonl").exists()


async def test_a_file_that_cannot_be_read_goes_to_the_error_folder(tmp_path: Path) -> None:
    write(tmp_path / "in" / "broken.csv", b"\xff\xfe\xfa,bad\n1,2\n", age=10)
    write(tmp_path / "in" / "good.csv", "a,b\n1,2\n")
    src = source(tmp_path, format="csv", error_dir="rejected")
    await src.open(None)
    try:
        records = await read_all(src, 1)
        assert [r.value for r in records] == [{"a": "1", "b": "2"}]
    finally:
        await src.close()
    assert (tmp_path / "rejected" / "broken.csv").read_bytes() == b"\xff\xfe\xfa,bad\n1,2\n"


async def test_min_age_leaves_young_files_alone(tmp_path: Path) -> None:
    write(tmp_path / "in" / "young.txt", "new\n")
    write(tmp_path / "in" / "old.txt", "old\n", age=120)
    src = source(tmp_path, min_age="60s")
    await src.open(None)
    try:
        records = await read_all(src, 1)
        assert [r.value for r in records] == [b"old"]
        assert produced(await src.read()) == []
        young = tmp_path / "in" / "young.txt"
        stamp = young.stat().st_mtime - 120
        os.utime(young, (stamp, stamp))  # now it is old enough
        records = await read_all(src, 1)
        assert [r.value for r in records] == [b"new"]
    finally:
        await src.close()


async def test_a_restart_moves_files_whose_records_were_acked_before_the_crash(
    tmp_path: Path,
) -> None:
    """The position was saved, then the process died before ``ack`` moved the file."""
    write(tmp_path / "in" / "a.txt", "1\n2\n", age=10)
    write(tmp_path / "in" / "b.txt", "3\n")
    first = source(tmp_path)
    await first.open(None)
    try:
        records = await read_all(first, 3)
    finally:
        await first.close()
    saved = records[1].position  # after a.txt's last line, never acked
    assert [f["name"] for f in saved["finished"]] == ["a.txt"]
    second = source(tmp_path)
    await second.open(saved)
    try:
        assert (tmp_path / "in" / "done" / "a.txt").exists()
        assert [r.value for r in await read_all(second, 1)] == [b"3"]
    finally:
        await second.close()


async def test_files_dropped_while_stopped_are_read_at_start(tmp_path: Path) -> None:
    write(tmp_path / "in" / "first.txt", "a\n", age=10)
    src = source(tmp_path)
    await src.open(None)
    try:
        records = await read_all(src, 1)
        await ack_last(src, records)
    finally:
        await src.close()
    write(tmp_path / "in" / "second.txt", "b\nc\n")
    again = source(tmp_path)
    await again.open(records[-1].position)
    try:
        assert [r.value for r in await read_all(again, 2)] == [b"b", b"c"]
    finally:
        await again.close()


async def test_a_resumed_spool_file_goes_on_after_the_acknowledged_line(tmp_path: Path) -> None:
    write(tmp_path / "in" / "big.csv", "id\n" + "".join(f"{n}\n" for n in range(10)))
    first = source(tmp_path, format="csv", types={"id": "integer"}, batch_size=4)
    await first.open(None)
    try:
        records = await read_all(first, 4)
    finally:
        await first.close()
    assert [r.value["id"] for r in records] == [0, 1, 2, 3]
    second = source(tmp_path, format="csv", types={"id": "integer"})
    await second.open(records[3].position)
    try:
        rest = await read_all(second, 6)
    finally:
        await second.close()
    assert [r.value["id"] for r in rest] == [4, 5, 6, 7, 8, 9]
    assert [headers(r)["file.line"] for r in rest] == [b"6", b"7", b"8", b"9", b"10", b"11"]


# ----------------------------------------------------------------------------- bad input


async def test_malformed_lines_become_error_records_naming_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "in" / "mixed.jsonl", '{"ok": 1}\n{broken\n\n{"ok": 2}\n')
    src = source(tmp_path, format="jsonl")
    await src.open(None)
    try:
        records = await read_all(src, 3)
    finally:
        await src.close()
    assert [r.error is None for r in records] == [True, False, True]
    bad = records[1]
    assert bad.value == b"{broken"
    assert bad.error is not None and bad.error.startswith("mixed.jsonl line 2: not JSON: ")
    assert headers(bad) == {"file.name": b"mixed.jsonl", "file.line": b"2"}
    assert headers(records[2])["file.line"] == b"4"


async def test_csv_rows_types_quotes_and_errors(tmp_path: Path) -> None:
    text = (
        "id;note;amount;paid;tags\r\n"
        '1;"two\nlines";12.5;yes;["a"]\r\n'
        "2;;;no;\r\n"
        "x;bad id;1;true;[]\r\n"
        "3;short\r\n"
    )
    write(tmp_path / "in" / "t.csv", text)
    src = source(
        tmp_path,
        format="csv",
        delimiter=";",
        types={"id": "integer", "amount": "number", "paid": "boolean", "tags": "json"},
    )
    await src.open(None)
    try:
        records = await read_all(src, 4)
    finally:
        await src.close()
    assert records[0].value == {
        "id": 1,
        "note": "two\nlines",
        "amount": 12.5,
        "paid": True,
        "tags": ["a"],
    }
    assert headers(records[0])["file.line"] == b"2"
    assert records[1].value == {"id": 2, "note": "", "amount": None, "paid": False, "tags": None}
    assert headers(records[1])["file.line"] == b"4"
    assert records[2].error == (
        "t.csv line 5: column 'id': 'x' is not integer (invalid literal for int() with base "
        "10: 'x')"
    )
    assert records[2].value == b"x;bad id;1;true;[]"
    assert records[3].error == "t.csv line 6: 2 fields, the header has 5"


async def test_a_line_longer_than_max_line_is_reported_and_skipped(tmp_path: Path) -> None:
    write(tmp_path / "in" / "long.txt", "short\n" + "x" * 5000 + "\nafter\n")
    src = source(tmp_path, max_line=1024)
    await src.open(None)
    try:
        records = await read_all(src, 3)
    finally:
        await src.close()
    assert records[0].value == b"short"
    assert records[1].error is not None and "longer than max_line (1024 bytes)" in records[1].error
    assert records[1].value == b"x" * 1024
    assert records[2].value == b"after"
    assert headers(records[2])["file.line"] == b"3"


# ----------------------------------------------------------------------------- tail


async def test_tail_waits_for_the_newline_of_a_growing_line(tmp_path: Path) -> None:
    log = write(tmp_path / "in" / "app.log", "one\ntw")
    src = source(tmp_path, mode="tail")
    await src.open(None)
    try:
        assert [r.value for r in await read_all(src, 1)] == [b"one"]
        assert await src.read() == []
        append(log, "o\n")
        assert [r.value for r in await read_all(src, 1)] == [b"two"]
    finally:
        await src.close()


async def test_tail_follows_a_rotation_and_a_truncation(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    log = write(folder / "app.log", "a1\na2\n")
    src = source(tmp_path, mode="tail", pattern="*.log")
    await src.open(None)
    try:
        assert [r.value for r in await read_all(src, 2)] == [b"a1", b"a2"]
        # rotation: the writer still appends to the renamed file, then a new one appears
        os.rename(log, folder / "app.log.1")
        append(folder / "app.log.1", "a3\n")
        write(folder / "app.log", "b1\n")
        got = await read_all(src, 2)
        assert sorted(r.value for r in got) == [b"a3", b"b1"]
        where = {r.value: (headers(r)["file.name"], headers(r)["file.line"]) for r in got}
        assert where[b"b1"] == (b"app.log", b"1")
        # a3 is line 3 of the old file, named as it was seen when read
        assert where[b"a3"] in {(b"app.log", b"3"), (b"app.log.1", b"3")}
        # truncation (copytruncate): the file starts over
        (folder / "app.log").write_text("c1\n")  # same size, new content
        got = await read_all(src, 1)
        assert [(r.value, headers(r)["file.line"]) for r in got] == [(b"c1", b"1")]
    finally:
        await src.close()


async def test_tail_resumes_a_rotated_file_by_inode_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    log = write(folder / "app.log", "a1\na2\na3\n")
    first = source(tmp_path, mode="tail", pattern="*.log")
    await first.open(None)
    try:
        records = await read_all(first, 3)
    finally:
        await first.close()
    saved = records[1].position  # a3 was never acknowledged
    os.rename(log, folder / "app.log.1")  # rotated while stopped
    write(folder / "app.log", "b1\n")
    second = source(tmp_path, mode="tail", pattern="*.log")
    await second.open(saved)
    try:
        got = await read_all(second, 2)
    finally:
        await second.close()
    assert sorted(r.value for r in got) == [b"a3", b"b1"]


async def test_tail_initial_end_skips_what_is_there(tmp_path: Path) -> None:
    log = write(tmp_path / "in" / "app.log", "old1\nold2\npart")
    src = source(tmp_path, mode="tail", initial="end")
    await src.open(None)
    try:
        assert await src.read() == []
        append(log, "ial\nnew\n")
        got = await read_all(src, 2)
    finally:
        await src.close()
    assert [(r.value, headers(r)["file.line"]) for r in got] == [(b"partial", b"3"), (b"new", b"4")]


async def test_the_key_can_be_the_file_name(tmp_path: Path) -> None:
    write(tmp_path / "in" / "host-1.log", "up\n")
    src = source(tmp_path, mode="tail", key="filename")
    await src.open(None)
    try:
        [record] = await read_all(src, 1)
    finally:
        await src.close()
    assert record.key == "host-1.log"


# ----------------------------------------------------------------------------- options


def test_options_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ValueError, match="header, delimiter only apply to format: csv"):
        FileSourceOptions(path="in", header=False, delimiter=";")
    with pytest.raises(ValueError, match="done_dir only apply to mode: spool"):
        FileSourceOptions(path="in", mode="tail", done_dir="done")
    with pytest.raises(ValueError, match="needs columns"):
        FileSourceOptions(path="in", format="csv", header=False)
    with pytest.raises(ValueError, match="format: lines has no fields"):
        FileSourceOptions(path="in", key="id")
    with pytest.raises(ValueError, match="single character"):
        FileSourceOptions(path="in", format="csv", delimiter=";;")


async def test_a_missing_folder_is_retried_and_reported_by_check(tmp_path: Path) -> None:
    src = source(tmp_path, path="nowhere")
    with pytest.raises(Exception, match=r"path: folder .*nowhere does not exist") as error:
        await src.check()
    assert type(error.value).__name__ == "FatalError"
    with pytest.raises(Exception, match=r"does not exist \(yet\)") as error:
        await src.open(None)
    assert type(error.value).__name__ == "RetriableError"
    await src.close()


async def test_without_file_system_events_the_rescan_finds_new_files(tmp_path: Path) -> None:
    """Events can be lost (inotify overflow) or never come (watch limit): the periodic
    listing is the fallback."""
    (tmp_path / "in").mkdir()
    src = source(tmp_path, rescan="200ms")
    await src.open(None)
    try:
        await src.watch.stop()  # as when the watch limit was reached: no events at all
        assert not src.watch.watching
        assert await src.read() == []
        write(tmp_path / "in" / "late.txt", "found\n")
        records = await read_all(src, 1)
    finally:
        await src.close()
    assert [r.value for r in records] == [b"found"]
