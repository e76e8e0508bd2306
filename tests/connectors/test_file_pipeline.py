"""The file connectors inside the real runtime and a real broker: dead-letter topics, a
drop folder into a topic and on into files, offsets committed only for published files,
a replayed range rewriting identical files, and ``backbone run`` SIGKILLed mid-file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from backbone import testing
from backbone.runner import ConnectorState

pytestmark = [pytest.mark.timeout(120)]


def broker(tmp_path: Path) -> str:
    return testing.broker_yaml("embedded", data_dir=tmp_path / "broker")


def published(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def file_lines(folder: Path) -> list[Any]:
    return [json.loads(line) for p in published(folder) for line in p.read_text().splitlines()]


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def test_malformed_lines_reach_the_dead_letter_topic_naming_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "in").mkdir()

    async def inject() -> None:
        (tmp_path / "in" / "feed.jsonl").write_text('{"ok": 1}\n{"oops"\n{"ok": 2}\n')

    [dead] = await testing.check_source_dead_letters(
        broker=broker(tmp_path),
        tmp_path=tmp_path,
        source="{type: file, path: in, format: jsonl}",
        inject=inject,
        count=1,
    )
    headers = dict(dead.headers)
    assert dead.value == b'{"oops"'
    assert headers["file.name"] == b"feed.jsonl"
    assert headers["file.line"] == b"2"
    assert headers["backbone.error.message"].startswith(b"feed.jsonl line 2: not JSON:")


async def test_the_sink_dead_letters_values_that_are_not_json_objects(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    async def read_back() -> list[Any]:  # the rows, without each file's header row
        return [row for p in published(out) for row in p.read_text().splitlines()[1:]]

    await testing.check_sink_dead_letters(
        broker=broker(tmp_path),
        tmp_path=tmp_path,
        sink=f'{{type: file, path: "{out}", format: csv, columns: [a], '
        "rotate: {interval: 100ms}}",
        values=[{"a": 1}, [1, 2], {"a": 3}],
        bad=[1],
        read_back=read_back,
        expected=["1", "3"],
    )


async def test_a_drop_folder_through_a_topic_into_files(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    config = tmp_path / "drop.yaml"
    config.write_text(
        broker(tmp_path)
        + testing.FAST_RUNTIME
        + "sources:\n  partner: {type: file, topic: orders, path: inbox, format: csv,"
        " types: {qty: integer}, key: id}\n"
        + "sinks:\n  archive: {type: file, topics: [orders], path: out, rotate: {records: 3}}\n"
    )
    (inbox / "day1.csv").write_text("id,qty\na,1\nb,2\n")
    async with testing.running(config) as runner:
        await testing.wait_until(
            lambda: (inbox / "done" / "day1.csv").exists(), what="day1.csv in done"
        )
        (inbox / "day2.csv").write_text("id,qty\nc,3\n")
        await testing.wait_until(lambda: len(file_lines(out)) == 3, what="a published file")
        assert runner.status["partner"].state is ConnectorState.RUNNING
    # the runner stopped: the open file (nothing left) was flushed
    assert file_lines(out) == [{"id": "a", "qty": 1}, {"id": "b", "qty": 2}, {"id": "c", "qty": 3}]
    assert [p.name for p in published(out)] == ["orders-0-00000000000000000000.jsonl"]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["day1.csv", "day2.csv"]


async def test_offsets_are_committed_only_for_published_files_and_a_replay_rewrites_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    values = [{"n": n} for n in range(25)]
    config = tmp_path / "replay.yaml"
    source = (
        f'  feed: {{type: "{testing.VALUES_SOURCE}", topic: nums, values: {json.dumps(values)}}}\n'
    )
    config.write_text(
        broker(tmp_path)
        + testing.FAST_RUNTIME
        + "sources:\n"
        + source
        + "sinks:\n  first: {type: file, topics: [nums], path: out,"
        " rotate: {records: 10, interval: 1h}}\n"
    )
    async with testing.running(config) as runner:
        assert runner.bootstrap is not None
        await testing.wait_until(lambda: len(published(out)) == 2, what="two published files")
        tmp = [p.name for p in out.iterdir() if p.name.startswith(".")]
        assert tmp == [".nums-0-00000000000000000020.jsonl.tmp"]

        async def at_20() -> bool:
            return await committed(runner.bootstrap or "", "backbone.first", "nums") == 20

        # 20..24 sit in the open file: the commit stays at its first offset
        await testing.wait_until(at_20, what="a commit at 20")
    assert [p.name for p in published(out)] == [
        "nums-0-00000000000000000000.jsonl",
        "nums-0-00000000000000000010.jsonl",
        "nums-0-00000000000000000020.jsonl",  # flushed at the stop
    ]
    before = {p.name: (p.read_bytes(), p.stat().st_ino) for p in published(out)}
    assert file_lines(out) == values

    # a second sink (a new group) replays the topic from the start into the same folder
    config.write_text(
        broker(tmp_path)
        + testing.FAST_RUNTIME
        + "sources:\n"
        + source
        + "sinks:\n  again: {type: file, topics: [nums], path: out, start: earliest,"
        " rotate: {records: 10, interval: 1h}}\n"
    )
    async with testing.running(config) as runner:
        assert runner.bootstrap is not None
        # the stop published the open file, then committed it
        assert await committed(runner.bootstrap, "backbone.first", "nums") == 25

        def rewritten() -> bool:
            return all(
                (out / name).stat().st_ino != inode for name, (_, inode) in list(before.items())[:2]
            )

        await testing.wait_until(rewritten, what="the first two files rewritten")
    after = {p.name: p.read_bytes() for p in published(out)}
    assert after == {name: data for name, (data, _) in before.items()}


class Printed:
    """The stdout sink's JSON lines of one topic, read incrementally (a long output is not
    parsed again on every poll)."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path, self.topic = path, topic
        self.offset = 0
        self.numbers: list[int] = []
        self.lines: list[dict[str, Any]] = []

    def poll(self) -> list[int]:
        if self.path.exists():
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
            end = data.rfind(b"\n") + 1
            self.offset += end
            for raw in data[:end].splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # torn by the kill
                if line.get("topic") == self.topic:
                    self.lines.append(line)
                    self.numbers.append(line["value"]["n"])
        return self.numbers


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_mid_file_resumes_after_the_acknowledged_line(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    count = 100_000
    big = inbox / "big.jsonl"
    big.write_text("".join(f'{{"n": {n}}}\n' for n in range(count)))
    config = tmp_path / "crash.yaml"
    config.write_text(
        broker(tmp_path)
        + testing.FAST_RUNTIME
        + f'sources:\n  drop: {{type: file, topic: big, path: "{inbox}", format: jsonl,'
        " batch_size: 500}\n" + "sinks:\n  print: {type: stdout, topics: [big]}\n"
    )
    gateway = testing.Gateway(config, tmp_path / "out.jsonl", tmp_path / "gateway.log")
    printed = Printed(tmp_path / "out.jsonl", "big")
    try:
        gateway.start()
        await testing.wait_until(lambda: len(printed.poll()) >= 2000, within=60, what="2000 lines")
        gateway.kill()
        assert big.exists(), "the file was finished before the kill: nothing was tested"
        gateway.start()
        await testing.wait_until(
            lambda: len(set(printed.poll())) == count and (inbox / "done" / "big.jsonl").exists(),
            within=180,
            what="every line, and the file in done",
        )
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    printed.poll()
    # Two at-least-once replays meet here: the source writes again the lines after its last
    # acknowledged one, and the sink prints again the records after its last commit. The
    # printed (partition, offset) pairs tell them apart: each names one record of the topic.
    topic: dict[tuple[int, int], int] = {}
    prints: dict[tuple[int, int], int] = {}
    for line in printed.lines:
        at = (line["partition"], line["offset"])
        assert topic.setdefault(at, line["value"]["n"]) == line["value"]["n"]
        prints[at] = prints.get(at, 0) + 1
    assert max(prints.values()) <= 2, "the sink printed a record more than twice"
    counts: dict[int, int] = {}
    for n in topic.values():
        counts[n] = counts.get(n, 0) + 1
    assert sorted(counts) == list(range(count))
    assert max(counts.values()) <= 2
    # what the topic holds twice is one run of lines (in flight at the kill), not the file again
    again = sorted(n for n, c in counts.items() if c > 1)
    if again:
        assert again == list(range(again[0], again[-1] + 1))
        assert again[0] > 0, "the restart read the file from its start"
    # every line kept its file.line header and its ce_id across the restart
    ids: dict[int, str] = {}
    for line in printed.lines:
        n = line["value"]["n"]
        assert line["headers"]["file.line"] == str(n + 1)
        assert ids.setdefault(n, line["headers"]["ce_id"]) == line["headers"]["ce_id"]
    assert not big.exists()


async def test_a_rebalance_publishes_the_open_files_and_commits_them_first(
    tmp_path: Path,
) -> None:
    """Partitions taken away by a rebalance: the sink's flush publishes their open files
    and the runtime commits them before letting go (on_partitions_revoked)."""
    out = tmp_path / "out"
    out.mkdir()
    values = [{"n": n} for n in range(20)]
    config = tmp_path / "rebalance.yaml"
    config.write_text(
        broker(tmp_path)
        + testing.FAST_RUNTIME
        + "topics: {nums: {partitions: 2}}\n"
        + f'sources:\n  feed: {{type: "{testing.VALUES_SOURCE}", topic: nums, '
        f"values: {json.dumps(values)}}}\n"
        + "sinks:\n  archive: {type: file, topics: [nums], path: out,"
        " rotate: {records: 1000, interval: 1h}}\n"
    )

    def hidden() -> list[str]:
        return sorted(p.name for p in out.iterdir() if p.name.startswith("."))

    async with testing.running(config) as runner:
        assert runner.bootstrap is not None
        await testing.wait_until(lambda: len(hidden()) == 2, what="an open file per partition")
        assert published(out) == []
        intruder = AIOKafkaConsumer(
            "nums", bootstrap_servers=runner.bootstrap, group_id="backbone.archive"
        )
        await intruder.start()  # joins the group: a rebalance revokes the sink's partitions
        try:
            await testing.wait_until(lambda: len(published(out)) == 2, what="published files")

            async def all_committed() -> bool:
                counts = [0, 0]
                for path in published(out):
                    counts[int(path.name.split("-")[1])] += len(path.read_text().splitlines())
                tps = [TopicPartition("nums", p) for p in (0, 1)]
                done = [await intruder.committed(tp) for tp in tps]
                return done == counts

            await testing.wait_until(all_committed, what="the commits of the published files")
        finally:
            await intruder.stop()
    assert sorted(line["n"] for line in file_lines(out)) == list(range(20))


class Unwritable:
    """Makes a folder refuse new files: mode 0555, and for root (who ignores the mode)
    the immutable attribute (``chattr +i``); skips the test where neither works."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.immutable = False

    def _writable(self) -> bool:
        probe = self.folder / ".probe"
        try:
            probe.touch()
        except OSError:
            return False
        probe.unlink()
        return True

    def _chattr(self, flag: str) -> bool:  # instant: no need for a thread
        return subprocess.run(["chattr", flag, str(self.folder)]).returncode == 0

    async def breaks(self) -> None:
        self.folder.chmod(0o555)
        if self._writable() and shutil.which("chattr"):
            self.immutable = self._chattr("+i")
        if self._writable():
            await self.repairs()
            pytest.skip("cannot make a folder unwritable here")

    async def repairs(self) -> None:
        if self.immutable:
            assert self._chattr("-i")
            self.immutable = False
        self.folder.chmod(0o755)


async def test_a_folder_the_sink_may_not_write_stops_it_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    folder = Unwritable(out)

    async def read_back() -> list[Any]:
        return file_lines(out)

    try:
        error = await testing.check_sink_stops_when_retries_run_out(
            broker=broker(tmp_path),
            tmp_path=tmp_path,
            sink=f'{{type: file, path: "{out}", rotate: {{interval: 100ms}}}}',
            values=[{"n": n} for n in range(5)],
            breaks=folder.breaks,
            repairs=folder.repairs,
            read_back=read_back,
            expected=[{"n": n} for n in range(5)],
        )
    finally:
        await folder.repairs()
    assert error.startswith(f"FatalError: cannot create a file in {out}: [Errno "), error
    assert error.endswith(
        "(still failing after 3 attempts); stopped without committing: the records are "
        "delivered again after a restart"
    ), error
    assert "Permission denied" in error or "Operation not permitted" in error, error
