"""A wall clock that moves only when a test says so (:class:`ManualClock`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time

from backbone.clock import Clock

__all__ = ["ManualClock"]


class ManualClock(Clock):
    """A :class:`~backbone.clock.Clock` for tests: time stands still until moved.

    ``ManualClock("2024-05-01T01:59:00+02:00")`` (an ISO text, an aware
    ``datetime`` or epoch seconds) starts there. :meth:`advance` and :meth:`set`
    move time forward and wake every ``sleep_until`` whose moment came, in order.
    With ``autojump=True`` time jumps to the moment of every ``sleep_until`` at once
    (as trio's ``MockClock(autojump_threshold=0)``): a schedule runs through its
    fires as fast as the code can go, for checks that just need many of them.
    :attr:`sleepers` tells how many sleeps are pending, and :meth:`wait_for_sleeper`
    waits (in real time) until the code under test sleeps on the clock -- something
    observable to wait on instead of a fixed sleep. Pass it to
    :func:`backbone.testing.context` (``clock=``).
    """

    def __init__(
        self, start: float | str | dt.datetime = 1_700_000_000.0, *, autojump: bool = False
    ) -> None:
        self._now = _seconds(start)
        self.autojump = autojump
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if self.autojump and when > self._now:
            self._move(when)
        if when <= self._now:
            await asyncio.sleep(0)  # a sleep is always a suspension point
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (when, next(self._seq), future))
        try:
            await future
        finally:
            future.cancel()  # harmless when done; marks a cancelled sleep as gone

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; wake the sleeps that became due."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds}))")
        self._move(self._now + seconds)

    def set(self, when: float | str | dt.datetime) -> None:
        """Move time forward to ``when``; wake the sleeps that became due."""
        target = _seconds(when)
        if target < self._now:
            raise ValueError(f"cannot move a clock backwards (set({when!r}) is before now)")
        self._move(target)

    def _move(self, target: float) -> None:
        self._now = target
        while self._heap and self._heap[0][0] <= target:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many ``sleep_until`` calls are waiting for this clock."""
        return sum(1 for _, _, future in self._heap if not future.done())

    async def wait_for_sleeper(self, *, within: float = 10.0) -> None:
        """Wait (real time, polling every 10 ms) until something sleeps on this clock."""
        deadline = time.monotonic() + within
        while not self.sleepers:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing slept on the clock within {within}s")
            await asyncio.sleep(0.01)

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()!r})"


def _seconds(value: float | str | dt.datetime) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"give the clock an aware datetime (with a zone): {value!r}")
        return value.timestamp()
    return float(value)
