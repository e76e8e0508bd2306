"""The one ``broker`` fixture of the broker tests: a real broker on a free loopback port.

A module changes what it gets by overriding the small fixtures it is built from:
``broker_config`` (e.g. a smaller ``max_frame_bytes``), ``broker_clock`` (a fake clock)
and ``broker_topics`` (topics created before the test starts).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backbone.broker import Broker, BrokerConfig


@pytest.fixture
def broker_config(tmp_path: Path) -> BrokerConfig:
    """The config of the ``broker`` fixture: data in ``tmp_path``, any free port."""
    return BrokerConfig(data_dir=tmp_path, port=0)


@pytest.fixture
def broker_clock() -> Callable[[], float]:
    """The clock injected into the ``broker`` fixture (its log manager and groups)."""
    return time.time


@pytest.fixture
def broker_topics() -> dict[str, int]:
    """Topics (name -> partition count) the ``broker`` fixture creates before the test."""
    return {}


@pytest.fixture
async def broker(
    broker_config: BrokerConfig,
    broker_clock: Callable[[], float],
    broker_topics: dict[str, int],
) -> AsyncIterator[Broker]:
    """A running broker; stopped (cleanly) after the test."""
    async with Broker(broker_config, clock=broker_clock) as running:
        for name, partitions in broker_topics.items():
            await running.logs.create_topic(name, partitions)
        yield running
