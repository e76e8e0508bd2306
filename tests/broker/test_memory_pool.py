"""The counters behind the connection limits, without sockets: the memory pool's pause and
resume rules, connection admission, the rate-limited peer-fault log (with a fake clock)."""

from __future__ import annotations

import logging

import pytest

from backbone.broker.limits import ConnectionCounter, ConnectionLimits, MemoryPool
from backbone.broker.peer_faults import PeerFaultLog


class Reader:
    """A pool member as the frame reader is one: paused or reading."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False

    def pool_pause(self) -> None:
        self.paused = True

    def pool_resume(self) -> None:
        self.paused = False


def paused(*readers: Reader) -> list[str]:
    return [r.name for r in readers if r.paused]


def test_an_exhausted_pool_pauses_all_but_the_oldest_incomplete_frame() -> None:
    pool = MemoryPool(1000)
    a, b, c = Reader("a"), Reader("b"), Reader("c")
    for reader in (a, b, c):
        pool.join(reader)
    pool.frame_started(b)  # b's frame began first, then a's
    pool.frame_started(a)
    pool.reserve(600)
    assert (pool.exhausted, paused(a, b, c)) == (False, [])
    pool.reserve(400)
    assert pool.exhausted and paused(a, b, c) == ["a", "c"]  # b may finish its frame
    pool.reserve(300)  # b reads on, beyond the capacity
    assert pool.peak == 1300
    pool.frame_ended(b)  # b's frame is complete: b waits, a goes on
    assert paused(a, b, c) == ["b", "c"]
    pool.leave(a)  # a's connection closes mid-frame: nobody is exempt any more
    assert paused(b, c) == ["b", "c"]
    pool.release(300)
    assert pool.exhausted  # 1000 held: not under the low-water mark (875)
    pool.release(200)
    assert (pool.exhausted, pool.used, paused(b, c)) == (False, 800, [])
    late = Reader("late")
    pool.reserve(200)
    pool.join(late)  # a reader that joins an exhausted pool waits at once
    assert paused(b, c, late) == ["b", "c", "late"]


def test_connection_admission_in_all_and_per_address() -> None:
    counter = ConnectionCounter(max_connections=3, max_per_host=2)
    assert counter.admit("10.0.0.1") is None
    assert counter.admit("10.0.0.1") is None
    assert counter.admit("10.0.0.1") == (
        "2 connections from 10.0.0.1 are open (max_connections_per_ip is 2)"
    )
    assert counter.admit("10.0.0.2") is None
    assert counter.admit("10.0.0.3") == "3 connections are open (max_connections is 3)"
    counter.leave("10.0.0.1")
    assert (counter.total, counter.count("10.0.0.1")) == (2, 1)
    assert counter.admit("10.0.0.3") is None
    counter.leave("10.0.0.9")  # never admitted: nothing changes
    assert counter.total == 3


def test_limits_refuse_a_pool_smaller_than_a_frame() -> None:
    with pytest.raises(ValueError) as info:
        ConnectionLimits(max_frame_bytes=4096, queued_max_request_bytes=1024)
    assert str(info.value) == (
        "queued_max_request_bytes (1024) must be at least max_frame_bytes (4096): a request "
        "of the largest size must fit in it"
    )
    with pytest.raises(ValueError, match=r"^request_read_timeout_s must be positive \(got 0\)$"):
        ConnectionLimits(request_read_timeout_s=0)


def test_peer_fault_warnings_are_rate_limited_and_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    faults = PeerFaultLog(limit=2, window_s=10.0, clock=lambda: now[0])
    log = logging.getLogger("backbone.broker.test")
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            faults.warning(log, "bad connection %d", i)
        now[0] += 10.0  # the next window: the summary of the last one comes first
        faults.warning(log, "bad connection %d", 5)
        faults.close()  # nothing left out in this window: no summary
    assert caplog.messages == [
        "bad connection 0",
        "bad connection 1",
        "3 more warnings about misbehaving connections were not logged in the last 10s "
        "(at most 2 are logged per 10s)",
        "bad connection 5",
    ]
    assert (faults.logged, faults.suppressed) == (3, 3)
