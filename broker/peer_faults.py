"""PeerFaultLog: WARNING lines about misbehaving connections, rate-limited.

A peer fault (malformed frame, oversized or negative frame size, a request not sent in
time, a connection refused over a limit) is the peer's problem, not the broker's: the
server logs one line per bad connection, naming the peer. A flood of bad connections
(a scanner, a misconfigured client in a reconnect loop) must not turn into megabytes of
log, so at most ``limit`` such lines are written per ``window_s``; the others are
counted, and one summary line says how many were left out once the window is over::

    WARNING ... closing connection 127.0.0.1:40112 (api key -1 v-1, correlation id -1): ...
    WARNING ... 1980 more warnings about misbehaving connections were not logged in the
                last 10s (at most 20 are logged per 10s)

Owned by the server (one per ``KafkaServer``), used by its frame readers; the summary is
written from a loop timer, or by :meth:`PeerFaultLog.close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["PeerFaultLog"]

logger = logging.getLogger("backbone.broker.server")


class PeerFaultLog:
    """At most ``limit`` peer-fault WARNINGs per ``window_s``, then a summary of the rest."""

    def __init__(
        self,
        limit: int = 20,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.logged = 0  # lines written (all windows)
        self.suppressed = 0  # lines left out (all windows)
        self._window_start = -float("inf")
        self._in_window = 0
        self._left_out = 0
        self._timer: asyncio.TimerHandle | None = None

    def warning(self, log: logging.Logger, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING on ``log``, unless this window's quota is used."""
        now = self.clock()
        if now - self._window_start >= self.window_s:
            self._summarise()
            self._window_start = now
            self._in_window = 0
        if self._in_window < self.limit:
            self._in_window += 1
            self.logged += 1
            log.warning(message, *args)
            return
        self._left_out += 1
        self.suppressed += 1
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            delay = max(0.0, self._window_start + self.window_s - now)
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._summarise()

    def _summarise(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._left_out:
            return
        logger.warning(
            "%d more warnings about misbehaving connections were not logged in the last "
            "%.0fs (at most %d are logged per %.0fs)",
            self._left_out,
            self.window_s,
            self.limit,
            self.window_s,
        )
        self._left_out = 0

    def close(self) -> None:
        """Write the pending summary now (server shutdown)."""
        self._summarise()
