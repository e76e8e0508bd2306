"""A group coordinator on a real log in a folder: what the coordinator tests open.

``coordinator_on_disk(data_dir, **options)`` = a LogManager on ``data_dir`` plus the
coordinator on its ``__consumer_offsets`` topic, as the broker wires them
(``backbone.broker.broker.group_coordinator``), with a ManualClock for its timers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from backbone.broker.broker import group_coordinator
from backbone.broker.groups import GroupCoordinator, ManualClock
from backbone.broker.log import LogManager


@contextlib.asynccontextmanager
async def coordinator_on_disk(
    data_dir: Path, *, clock: ManualClock | None = None, **options: Any
) -> AsyncIterator[GroupCoordinator]:
    async with (
        LogManager(data_dir) as logs,
        group_coordinator(
            logs, data_dir, group_clock=clock or ManualClock(), **options
        ) as coordinator,
    ):
        yield coordinator


@contextlib.asynccontextmanager
async def coordinator_on_disk_of(
    logs: LogManager, data_dir: Path, *, clock: ManualClock | None = None, **options: Any
) -> AsyncIterator[GroupCoordinator]:
    """The same on a LogManager the test opened itself."""
    async with group_coordinator(
        logs, data_dir, group_clock=clock or ManualClock(), **options
    ) as coordinator:
        yield coordinator
