"""The durable dedupe window: once per key, across restarts, torn tails, expiry, locking."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backbone.sdk import DedupeWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_once_runs_produce_once_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    calls: list[str] = []

    async def produce(key: str) -> dict[str, int]:
        calls.append(key)
        return {"offset": len(calls)}

    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        assert await window.once("a", lambda: produce("a")) == ({"offset": 1}, True)
        assert await window.once("a", lambda: produce("a")) == ({"offset": 1}, False)
        assert await window.once("b", lambda: produce("b")) == ({"offset": 2}, True)
    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        assert len(window) == 2
        assert await window.once("a", lambda: produce("a")) == ({"offset": 1}, False)
        clock.now += 61  # expired: produced again
        assert await window.once("a", lambda: produce("a")) == ({"offset": 3}, True)
    assert calls == ["a", "b", "a"]


async def test_concurrent_duplicates_share_one_produce(tmp_path: Path) -> None:
    release = asyncio.Event()
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    async with DedupeWindow(tmp_path, window=60) as window:
        tasks = [asyncio.create_task(window.once("k", produce)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(fresh for _, fresh in results) == [False, False, False, False, True]
    assert {value for value, _ in results} == {42}


async def test_a_failed_produce_is_not_remembered(tmp_path: Path) -> None:
    async def fail() -> int:
        raise RuntimeError("broker down")

    async def succeed() -> int:
        return 7

    async with DedupeWindow(tmp_path, window=60) as window:
        with pytest.raises(RuntimeError, match="broker down"):
            await window.once("k", fail)
        assert await window.once("k", succeed) == (7, True)


async def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    clock = Clock()
    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        for key in "abc":
            await window.add(key, key.upper())
    log = tmp_path / "dedupe.log"
    log.write_bytes(log.read_bytes() + b'[1000000.0,"d","D"')  # a crash mid-append
    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        assert [window.get(k) for k in "abcd"] == ["A", "B", "C", None]
        await window.add("e", "E")
    assert log.read_bytes().count(b"\n") == 4
    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        assert window.get("e") == "E"


async def test_expired_entries_are_dropped_from_the_file(tmp_path: Path) -> None:
    clock = Clock()
    async with DedupeWindow(tmp_path, window=10, clock=clock) as window:
        for n in range(1500):
            await window.add(f"old-{n}", n)
    clock.now += 11
    async with DedupeWindow(tmp_path, window=10, clock=clock) as window:
        assert len(window) == 0
    assert (tmp_path / "dedupe.log").read_bytes() == b""


async def test_processes_sharing_a_folder_write_their_own_logs_and_read_all(
    tmp_path: Path,
) -> None:
    clock = Clock()

    async def fresh() -> str:
        return "new"

    first = DedupeWindow(tmp_path, window=60, clock=clock)
    await first.open()
    try:
        second = DedupeWindow(tmp_path, window=60, clock=clock)  # the lock is taken
        await second.open()
        try:
            await first.add("a", "A")
            await second.add("b", "B")
            assert second.path.name == "dedupe.1.log"
            assert second.get("a") is None  # while both run, each knows its own
        finally:
            await second.close()
    finally:
        await first.close()
    async with DedupeWindow(tmp_path, window=60, clock=clock) as window:
        assert (window.get("a"), window.get("b")) == ("A", "B")
        assert await window.once("b", fresh) == ("B", False)
