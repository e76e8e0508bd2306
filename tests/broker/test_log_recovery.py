"""Recovery of the segment log: torn tails, corrupt batches, lost indexes, SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backbone.broker.log import LogManager
from tests.broker.test_log_support import decode, make_batch, read_all, read_bytes


async def _fill(data: Path, batches: int, configs: dict[str, str] | None = None) -> list[bytes]:
    values = []
    async with LogManager(data) as logs:
        await logs.create_topic("t", 1, configs)
        log = logs.partition("t", 0)
        for i in range(batches):
            batch_values = [f"{i}-{j}".encode() * 20 for j in range(2)]
            values += batch_values
            await log.append(make_batch(batch_values), acks=-1)
    return values


async def test_recovery_truncates_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    values = await _fill(data, 5)
    segment = data / "t-0" / "00000000000000000000.log"
    good_size = segment.stat().st_size
    torn = make_batch([b"never acknowledged"] * 3)
    with segment.open("ab") as f:
        f.write(torn[: len(torn) // 2])
    with caplog.at_level(logging.WARNING, logger="backbone.broker.log"):
        async with LogManager(data) as logs:
            log = logs.partition("t", 0)
            assert log.high_watermark == 10
            assert [r.value for r in read_all(log)] == values
            assert segment.stat().st_size == good_size
            result = await log.append(make_batch([b"after"]), acks=-1)
            assert result.base_offset == 10
    cut = len(torn) // 2
    assert (
        f"recovery truncated {segment} at byte {good_size}: cut {cut} bytes of torn or corrupt "
        "data after offset 9"
    ) in caplog.messages
    async with LogManager(data) as logs:
        assert [r.value for r in read_all(logs.partition("t", 0))][-1] == b"after"


async def test_recovery_cuts_at_the_first_corrupt_batch(tmp_path: Path) -> None:
    data = tmp_path / "data"
    values = await _fill(data, 6)
    segment = data / "t-0" / "00000000000000000000.log"
    raw = bytearray(segment.read_bytes())
    sizes = [b.size_in_bytes for b, _ in decode(bytes(raw))]
    flip = sizes[0] + sizes[1] + sizes[2] - 5  # inside the third batch's records
    raw[flip] ^= 0x55
    segment.write_bytes(bytes(raw))
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        assert log.high_watermark == 4
        assert [r.value for r in read_all(log)] == values[:4]
        assert segment.stat().st_size == sizes[0] + sizes[1]


async def test_closed_segment_indexes_are_rebuilt_when_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    values = await _fill(data, 20, {"segment.bytes": "400", "index.interval.bytes": "0"})
    folder = data / "t-0"
    closed = sorted(folder.glob("*.index"))[0]
    original = closed.read_bytes()
    assert original  # sealed segments have their index on disk
    closed.unlink()
    timeindex = sorted(folder.glob("*.timeindex"))[1]
    timeindex.write_bytes(b"\x00" * 5)  # not a whole entry: invalid
    with caplog.at_level(logging.WARNING, logger="backbone.broker.log"):
        async with LogManager(data) as logs:
            log = logs.partition("t", 0)
            assert [r.value for r in read_all(log)] == values
            assert log.offset_for_timestamp(1_700_000_000_001) == (1, 1_700_000_000_001)
    assert closed.read_bytes() == original
    assert len(timeindex.read_bytes()) % 12 == 0 and timeindex.stat().st_size > 0
    assert any("rebuilding the offset index" in m for m in caplog.messages)
    assert any("rebuilding the time index" in m for m in caplog.messages)


async def test_index_entries_lead_to_the_right_batches(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _fill(data, 30, {"index.interval.bytes": "200"})
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        for offset in range(0, 60, 7):
            (first, _recs), *_ = decode(read_bytes(log, offset, 1))
            assert first.base_offset <= offset <= first.last_offset


_ROOT = Path(__file__).resolve().parents[2]

_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from backbone.broker.log import LogManager
    from tests.broker.test_log_support import make_batch

    async def producer(log, task):
        n = 0
        while True:
            values = [b"%d:%d:%d:" % (task, n, j) + b"x" * 20000 for j in range(10)]
            result = await log.append(make_batch(values), acks=-1)
            sys.stdout.write("ACK %d %d %d\\n" % (result.base_offset, task, n))
            sys.stdout.flush()
            n += 1

    async def main():
        async with LogManager(Path(sys.argv[1])) as logs:
            if "t" not in logs.topics:
                await logs.create_topic("t", 1, {"segment.bytes": "3000000"})
            log = logs.partition("t", 0)
            await asyncio.gather(*(producer(log, t) for t in range(4)))

    asyncio.run(main())
    """
)


async def test_sigkill_mid_produce_loses_no_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked: list[tuple[int, int, int]] = []
    for _round in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            str(data),
            stdout=subprocess.PIPE,
            cwd=str(_ROOT),
        )
        assert proc.stdout is not None
        seen = 0
        try:
            while seen < 60:
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line, "the writer exited early"
                _, base, task, n = line.split()
                acked.append((int(base), int(task), int(n)))
                seen += 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        # acknowledgements already written to the pipe count too
        rest = await proc.stdout.read()
        for line in rest.splitlines():
            parts = line.split()
            if len(parts) == 4:
                acked.append((int(parts[1]), int(parts[2]), int(parts[3])))
    async with LogManager(data) as logs:
        log = logs.partition("t", 0)
        assert len(log.segments) > 1
        by_offset = {r.offset: r.value for r in read_all(log)}
        assert len(by_offset) == log.high_watermark  # contiguous, every batch CRC-valid
    for base, task, n in acked:
        for j in range(10):
            assert by_offset[base + j].startswith(b"%d:%d:%d:" % (task, n, j))
