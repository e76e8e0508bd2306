"""Progress of a running gateway: rates, a short history, and periodic log lines.

The runner owns one :class:`Reporter` task. Every ``sample_every`` seconds (5 s,
or less when lines are wanted more often) it takes each connector's totals from
its :class:`~backbone.worker.ConnectorStatus` (a few integers: nothing is counted
per record here); the admin API reads rates over the last minute and the last 10
minutes of samples. Every ``runtime.progress_interval`` (30 s; 0 = off) it logs
one INFO line per connector, so a plain log shows progress::

    sink warehouse RUNNING: 812.4/s in, 812.4/s out; totals 48770 in, 48770 out,
    0 dead-lettered; lag 12

(one line in the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping

from backbone.worker import ConnectorStatus

__all__ = ["Reporter", "Sample"]

logger = logging.getLogger("backbone.progress")

Sample = tuple[float, int, int]
"""(epoch seconds, records in, records out)."""

RATE_WINDOW = 60.0
"""Seconds the rates are measured over."""


class Reporter:
    """Samples connector totals and logs progress lines (see the module docstring).

    ``lag(name)`` gives a sink's or processor's current lag (``None`` if unknown).
    """

    def __init__(
        self,
        statuses: Mapping[str, ConnectorStatus],
        lag: Callable[[str], int | None],
        *,
        interval: float,
        sample_every: float = 5.0,
        keep: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.statuses = statuses
        self.lag = lag
        self.interval = interval
        self.sample_every = min(sample_every, interval) if interval > 0 else sample_every
        self.clock = clock
        size = int(keep / self.sample_every) + 1
        self.samples: dict[str, deque[Sample]] = {name: deque(maxlen=size) for name in statuses}

    def sample(self) -> None:
        """Take one sample of every connector's totals."""
        now = self.clock()
        for name, status in self.statuses.items():
            self.samples[name].append((now, status.records_in, status.records_out))

    def rates(self, name: str) -> tuple[float, float]:
        """Records in and out per second over the last minute (now against the oldest
        sample inside the window)."""
        status = self.statuses[name]
        now = self.clock()
        history = self.samples.get(name) or ()
        oldest = next((s for s in history if now - s[0] <= RATE_WINDOW), None)
        if oldest is None or now - oldest[0] <= 0:
            return 0.0, 0.0
        elapsed = now - oldest[0]
        return (
            (status.records_in - oldest[1]) / elapsed,
            (status.records_out - oldest[2]) / elapsed,
        )

    def history(self, name: str) -> list[Sample]:
        """The samples kept for ``name`` (oldest first)."""
        return list(self.samples.get(name) or ())

    def line(self, name: str) -> str:
        """The progress line of one connector."""
        status = self.statuses[name]
        rate_in, rate_out = self.rates(name)
        text = (
            f"{status.role} {name} {status.state.value}: {rate_in:.1f}/s in, "
            f"{rate_out:.1f}/s out; totals {status.records_in} in, {status.records_out} out, "
            f"{status.dead_lettered} dead-lettered"
        )
        lag = self.lag(name)
        if lag is not None:
            text += f"; lag {lag}"
        if status.error:
            text += f"; error: {status.error}"
        return text

    async def run(self) -> None:
        """Sample (and log) until cancelled."""
        self.sample()
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(self.sample_every)
            self.sample()
            if self.interval > 0 and time.monotonic() - last_line >= self.interval - 1e-3:
                last_line = time.monotonic()
                for name in self.statuses:
                    logger.info(self.line(name), extra={"connector": name})
