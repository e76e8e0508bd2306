"""Time for the group coordinator: a small injected clock.

The coordinator never reads the wall clock or sleeps; it asks its :class:`Clock` for
``now()`` (seconds, monotonic) and schedules deadlines with ``call_at``. In production
the broker passes a :class:`LoopClock` (the asyncio loop's clock and timers); tests pass
a :class:`ManualClock` and move time with ``advance`` so session and rebalance timeouts
are exercised without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "LoopClock", "ManualClock", "Timer"]


class Timer(Protocol):
    """A scheduled callback; ``cancel()`` is idempotent and harmless after it fired."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the coordinator needs of time.

    ``now()`` returns monotonic seconds. ``call_at(when, callback)`` runs ``callback()``
    (synchronously, on the event loop thread) once ``now() >= when`` and returns a
    :class:`Timer` that can cancel it.
    """

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The real clock: the running asyncio loop's ``time()`` and ``call_at``.

    Created by the broker assembly; must be used from inside the running loop.
    """

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_at(when, callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that only moves when told to (tests; no sleeping).

    ``advance(seconds)`` moves time forward and fires every due callback in deadline
    order, setting ``now()`` to each callback's deadline while it runs, so a callback
    scheduled by another callback inside the window fires too.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and run every callback that became due."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds}))")
        target = self._now + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.cancelled = True
            timer.callback()
        self._now = target

    @property
    def pending(self) -> int:
        """How many scheduled callbacks have not fired or been cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)
