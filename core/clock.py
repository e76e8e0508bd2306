"""Wall-clock time for connectors: an injected clock (``context.clock``).

A connector that acts at times of day (a cron schedule, a file's age) asks its
:class:`Clock` instead of calling ``time.time()`` and ``asyncio.sleep()``, so a
test drives time with :class:`backbone.testing.ManualClock` (``advance``/``set``)
instead of waiting for it, and a schedule is tested for a whole night in
milliseconds.

- :meth:`Clock.time` is seconds since the Unix epoch (UTC), like ``time.time()``;
  :meth:`Clock.now` the same instant as an aware UTC ``datetime``.
- :meth:`Clock.sleep_until` returns once :meth:`Clock.time` reached a moment;
  :meth:`Clock.sleep` waits a number of seconds of this clock. Both are
  cancellable (they let ``CancelledError`` through and leave nothing behind).

The runtime gives every connector a :class:`SystemClock` (the real wall clock).
A read that waits on the clock must still return within a second or two (the
contract of ``read()``): bound the wait with ``asyncio.wait_for`` or
``asyncio.wait(..., timeout=...)`` in real seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from abc import ABC, abstractmethod

__all__ = ["Clock", "SystemClock"]


class Clock(ABC):
    """What a connector needs of wall-clock time (see the module docstring)."""

    @abstractmethod
    def time(self) -> float:
        """Seconds since the Unix epoch (UTC)."""

    def now(self) -> dt.datetime:
        """:meth:`time` as an aware UTC ``datetime``."""
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    @abstractmethod
    async def sleep_until(self, when: float) -> None:
        """Return once :meth:`time` >= ``when`` (at once if it already is)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        await self.sleep_until(self.time() + seconds)


class SystemClock(Clock):
    """The real wall clock (``time.time()``); sleeps with ``asyncio.sleep``."""

    MAX_STEP = 30.0
    """Longest single ``asyncio.sleep`` (seconds): the wall clock may be set meanwhile
    (NTP, suspend), so a long wait re-reads it at least this often."""

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        while (delay := when - time.time()) > 0:  # noqa: ASYNC110 - polls the wall clock
            await asyncio.sleep(min(delay, self.MAX_STEP))

    def __repr__(self) -> str:
        return "SystemClock()"
