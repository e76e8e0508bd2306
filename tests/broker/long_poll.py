"""Observing Fetch long polls from the outside: when the broker parks and answers them.

``FetchResponses`` is installed as the running broker's response filter (the server reads
``broker.server.response_filter`` before every response it writes) and records when each
Fetch response leaves; ``fetch_parked`` waits until a Fetch is long-polling on a
partition (the partition log has a watcher). Neither changes what the broker does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from backbone.broker import Broker
from backbone.broker.server import ResponseInfo

FETCH = 1


class FetchResponses:
    """A response filter recording the time (``time.monotonic``) of every Fetch response."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._written = asyncio.Event()

    def __call__(self, info: ResponseInfo) -> bool:
        if info.api_key == FETCH:
            self.times.append(time.monotonic())
            self._written.set()
        return True

    def install(self, broker: Broker) -> FetchResponses:
        broker.server.response_filter = self
        return self

    async def wait_for(self, count: int, limit: float = 30.0) -> list[float]:
        """The times of the first ``count`` Fetch responses, once they were written."""
        async with asyncio.timeout(limit):
            while len(self.times) < count:
                self._written.clear()
                await self._written.wait()
        return self.times[:count]


async def fetch_parked(broker: Broker, topic: str, consumer: asyncio.Future[Any]) -> None:
    """Return once a Fetch is long-polling on ``topic``-0; fails if ``consumer`` ends first."""
    log = broker.logs.partition(topic, 0)
    async with asyncio.timeout(30):
        while not log.watcher_count:
            assert not consumer.done(), f"the consumer ended before its fetch parked: {consumer}"
            await asyncio.sleep(0.02)


def assert_each_fetch_waited(times: list[float], max_wait_ms: int) -> None:
    """Consecutive Fetch responses on an empty partition are at least ``max_wait_ms`` apart
    (less 20 % for timer granularity): each fetch was held until its max wait, not
    answered empty at once (the client sends the next fetch after each answer)."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps, times
    assert min(gaps) >= 0.8 * max_wait_ms / 1000, f"Fetch answered early: gaps {gaps}"
