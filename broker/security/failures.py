"""Failed authentications: a growing delay per client host, and log lines without floods.

Kafka delays its answer to a failed authentication
(``connection.failed.authentication.delay.ms``) so that guessing passwords is slow.
Here the delay also grows with the failures of the same host in the last minute:
``base * 2**(n-1)``, capped at :data:`MAX_DELAY_S`. Each failure is logged at WARNING
with the peer, the mechanism, the user name and the reason, never the secret; past
:data:`LOG_BURST` lines per host and minute the rest are counted and reported in
one line when the minute is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LOG_BURST", "MAX_DELAY_S", "AuthFailures"]

logger = logging.getLogger("backbone.broker.security")

MAX_DELAY_S = 5.0
LOG_BURST = 5
_WINDOW_S = 60.0


@dataclass(slots=True)
class _Host:
    since: float
    failures: int = 0
    logged: int = 0
    suppressed: int = 0
    last: list[str] = field(default_factory=list)


class AuthFailures:
    """Per-host failure counts (see the module docstring); ``clock`` is monotonic seconds."""

    def __init__(self, base_delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_delay_s = base_delay_s
        self.clock = clock
        self._hosts: dict[str, _Host] = {}
        self.total = 0

    def record(self, peer: str, host: str, mechanism: str, user: str | None, reason: str) -> float:
        """Log one failure; returns the delay (seconds) before answering it."""
        now = self.clock()
        self.total += 1
        entry = self._hosts.get(host)
        if entry is None or now - entry.since >= _WINDOW_S:
            if entry is not None and entry.suppressed:
                logger.warning(
                    "%d more failed authentications from %s in the last minute (not logged)",
                    entry.suppressed,
                    host,
                )
            entry = self._hosts[host] = _Host(now)
        if len(self._hosts) > 10_000:  # forget quiet hosts
            for name in [h for h, e in self._hosts.items() if now - e.since >= _WINDOW_S]:
                del self._hosts[name]
        entry.failures += 1
        if entry.logged < LOG_BURST:
            entry.logged += 1
            logger.warning(
                "failed authentication from %s (%s, user %s): %s",
                peer,
                mechanism,
                repr(user) if user is not None else "unknown",
                reason,
                extra={"peer": peer, "mechanism": mechanism},
            )
        else:
            entry.suppressed += 1
        if self.base_delay_s <= 0:
            return 0.0
        return min(self.base_delay_s * float(1 << min(entry.failures - 1, 16)), MAX_DELAY_S)
