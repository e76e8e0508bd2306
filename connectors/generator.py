"""The ``generator`` source: synthetic JSON events at a steady rate.

Useful for trying a pipeline and for tests. Each event is
``{"seq": N, "time": "<ISO-8601>", "message": "event N"}`` (plus the ``fields``
option merged in); the source position is the sequence number of the last event,
so a restarted generator goes on with ``N + 1``. With ``count`` it stops after that
many events in total (across restarts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from pydantic import Field

from backbone.sdk import ConnectorContext, ConnectorKind, ConnectorOptions, Source, SourceRecord

__all__ = ["CONNECTOR", "GeneratorOptions", "GeneratorSource"]


class GeneratorOptions(ConnectorOptions):
    """Options of the generator source."""

    rate: float = Field(default=10.0, gt=0)
    """Events per second."""
    count: int | None = Field(default=None, ge=0)
    """Stop after this many events in total (default: never stop)."""
    keys: int | None = Field(default=None, ge=1)
    """Give events the key ``key-<seq % keys>`` (default: no key)."""
    batch_size: int = Field(default=500, ge=1)
    """Most events returned by one read."""
    fields: dict[str, Any] = Field(default_factory=dict)
    """Extra fields merged into every event's value."""
    event_type: str = "backbone.generator.event"
    """The CloudEvents ``ce_type`` of the events."""


class GeneratorSource(Source[GeneratorOptions]):
    """Emits ``rate`` events per second, numbered from 1; position = last sequence number."""

    def __init__(self, options: GeneratorOptions, context: ConnectorContext) -> None:
        super().__init__(options, context)
        self._next = 1
        self._started = 0.0
        self._emitted_since_start = 0
        # the key of event N is keys[N % len(keys)], made once
        self._keys = [f"key-{i}" for i in range(options.keys or 0)]

    async def open(self, position: Any | None) -> None:
        if position is not None and not isinstance(position, int):
            raise ValueError(f"generator position must be an integer (got {position!r})")
        self._next = (position or 0) + 1
        self._started = time.monotonic()
        self._emitted_since_start = 0

    async def read(self) -> list[SourceRecord]:
        options = self.options
        remaining = None if options.count is None else options.count - self._next + 1
        if remaining is not None and remaining <= 0:
            await asyncio.sleep(0.5)
            return []
        due = int((time.monotonic() - self._started) * options.rate) - self._emitted_since_start
        if due <= 0:
            wait = (self._emitted_since_start + 1) / options.rate - (
                time.monotonic() - self._started
            )
            await asyncio.sleep(min(max(wait, 0.001), 1.0))
            return []
        n = min(due, options.batch_size, remaining if remaining is not None else due)
        now = dt.datetime.now(dt.UTC)
        stamp = now.isoformat().replace("+00:00", "Z")
        millis = int(now.timestamp() * 1000)
        fields, event_type, keys = options.fields, options.event_type, self._keys
        count = len(keys)
        records = [
            SourceRecord(
                value={"seq": seq, "time": stamp, "message": f"event {seq}", **fields},
                key=keys[seq % count] if count else None,
                timestamp_ms=millis,
                position=seq,
                event_type=event_type,
            )
            for seq in range(self._next, self._next + n)
        ]
        self._next += n
        self._emitted_since_start += n
        return records

    async def close(self) -> None:
        pass


CONNECTOR = ConnectorKind(
    name="generator",
    summary="Synthetic JSON events at a steady rate (for trying pipelines and tests).",
    source=GeneratorSource,
    source_options=GeneratorOptions,
    example="""\
sources:
  demo:
    type: generator
    topic: demo.events
    rate: 5          # events per second
    count: 1000      # stop after 1000 events (omit to run forever)
    keys: 10         # keys key-0 .. key-9
""",
)
