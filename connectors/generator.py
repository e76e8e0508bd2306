"""The ``generator`` source: synthetic JSON events at a steady rate.

Useful for trying a pipeline and for tests. Each event is
``{"seq": N, "time": "<ISO-8601>", "message": "event N"}`` (plus the ``fields``
option merged in); the source position is the sequence number of the last event,
so a restarted generator goes on with ``N + 1``. With ``count`` it stops after that
many events in total (across restarts).

``vary`` gives fields values that change from event to event (a number in a range,
or one of a list, optionally weighted), so filters drop some events and routes fire;
``malformed`` reports a share of the events as unparsable input, so the source's
dead-letter topic fills. Both are drawn from a random generator seeded with ``seed``
and the sequence number: event N has the same values in every run and after a
restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backbone.sdk import ConnectorContext, ConnectorKind, ConnectorOptions, Source, SourceRecord

__all__ = ["CONNECTOR", "Choice", "GeneratorOptions", "GeneratorSource", "Range"]


class Range(BaseModel):
    """A number drawn uniformly from ``min`` to ``max`` (integers if both are integers,
    else rounded to ``decimals``)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    min: int | float
    """Smallest value."""
    max: int | float
    """Largest value."""
    decimals: int = Field(default=2, ge=0, le=6)
    """Digits after the point when ``min`` or ``max`` is a float."""

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self

    def draw(self, rng: random.Random) -> int | float:
        if isinstance(self.min, int) and isinstance(self.max, int):
            return rng.randint(self.min, self.max)
        return round(rng.uniform(self.min, self.max), self.decimals)


class Choice(BaseModel):
    """One of ``choice``, with ``weights`` (relative, one per value) or evenly."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    choice: list[Any] = Field(min_length=1)
    """The values (any JSON)."""
    weights: list[float] | None = None
    """Relative weight of each value (default: all equal)."""

    @model_validator(mode="after")
    def _weights(self) -> Choice:
        if self.weights is not None:
            if len(self.weights) != len(self.choice):
                raise ValueError(
                    f"weights has {len(self.weights)} value(s) for {len(self.choice)} choice(s)"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be zero or more, and not all zero")
        return self

    def draw(self, rng: random.Random) -> Any:
        if self.weights is None:
            return rng.choice(self.choice)
        return rng.choices(self.choice, self.weights)[0]


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
    vary: dict[str, Range | Choice] = Field(
        default_factory=dict,
        examples=[{"amount": {"min": 5, "max": 500}, "country": {"choice": ["DE", "AT", "FR"]}}],
    )
    """Fields whose value changes per event: ``{min: 1, max: 500}`` (a number in that
    range) or ``{choice: [DE, AT, FR], weights: [5, 2, 1]}`` (one of the values)."""
    malformed: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of events (0 to 1) reported as unparsable input instead of produced: they
    go to the source's ``dead_letter_topic`` (without one, the source stops FAILED)."""
    seed: int = 0
    """Seed of ``vary`` and ``malformed``: event N gets the same values in every run."""
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
        vary = options.vary
        if not vary and options.malformed <= 0:  # the fast path: no per-event randomness
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
        else:
            records = []
            for seq in range(self._next, self._next + n):
                value = {"seq": seq, "time": stamp, "message": f"event {seq}", **fields}
                error = None
                raw: Any = value
                rng = random.Random(options.seed * 1_000_003 + seq)
                for name, spec in vary.items():
                    value[name] = spec.draw(rng)
                if options.malformed and rng.random() < options.malformed:
                    raw = json.dumps(value)[: rng.randint(1, 20)]  # cut short, as a torn line
                    error = (
                        f"generator event {seq} is not valid JSON (malformed: {options.malformed})"
                    )
                records.append(
                    SourceRecord(
                        value=raw,
                        key=keys[seq % count] if count else None,
                        timestamp_ms=millis,
                        position=seq,
                        event_type=event_type,
                        error=error,
                    )
                )
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
    vary:            # per-event values: a range, or one of a list (weighted)
      amount: {min: 5, max: 500}
      country: {choice: [DE, AT, FR], weights: [5, 2, 1]}
""",
)
