"""Test-only connector kinds of the operator tests, as ``type: "tests.core.ops_plugins:NAME"``.

- ``JOURNAL``: a sink appending one JSON line per record (topic, partition, offset,
  key, value, headers) to ``path``, fsynced before ``write`` returns. While the file
  named by ``refuse`` exists and holds a JSON list, values in that list are refused
  with ``DataError`` (bad data); deleting or editing the file is "fixing the sink".
- ``COUNT``: a source emitting ``count`` records ``{"n": i}`` with keys ``k<i % keys>``
  (position = how many were emitted); ``timestamps_ms`` gives the first record's time
  and ``step_ms`` the spacing (else now).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from backbone import (
    ConnectorKind,
    ConnectorOptions,
    DataError,
    Sink,
    SinkRecord,
    Source,
    SourceRecord,
)


class JournalOptions(ConnectorOptions):
    path: str
    """File the records are appended to (JSON lines)."""
    refuse: str | None = None
    """A file holding a JSON list of values to refuse (while it exists)."""


class JournalSink(Sink[JournalOptions]):
    async def open(self) -> None:
        self.file = self.context.resolve(self.options.path)

    async def close(self) -> None:
        return None

    def _refused(self) -> list[Any]:
        if self.options.refuse is None:
            return []
        path = self.context.resolve(self.options.refuse)
        try:
            return list(json.loads(path.read_text()))
        except FileNotFoundError:
            return []

    async def write(self, records: Sequence[SinkRecord]) -> None:
        refused = self._refused()
        lines = []
        for r in records:
            value = r.json()
            if value in refused:
                raise DataError(f"refused value {json.dumps(value)}")
            lines.append(
                json.dumps(
                    {
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key_json(),
                        "value": value,
                        "headers": {k: v.decode("utf-8", "replace") for k, v in r.headers},
                    }
                )
                + "\n"
            )
        with open(self.file, "a") as out:  # noqa: ASYNC230 - a small test file
            out.write("".join(lines))
            out.flush()
            os.fsync(out.fileno())


class CountOptions(ConnectorOptions):
    count: int
    """How many records."""
    keys: int = 1
    """Distinct keys (k0..k<keys-1>)."""
    timestamp_ms: int | None = None
    """Timestamp of record 0 (default: now)."""
    step_ms: int = 1000
    """Spacing of the timestamps when timestamp_ms is given."""


class CountSource(Source[CountOptions]):
    async def open(self, position: Any | None) -> None:
        self.next = int(position or 0)

    async def read(self) -> list[SourceRecord]:
        options = self.options
        if self.next >= options.count:
            await asyncio.sleep(0.05)
            return []
        end = min(self.next + 5000, options.count)
        out = []
        for n in range(self.next, end):
            stamp = None
            if options.timestamp_ms is not None:
                stamp = options.timestamp_ms + n * options.step_ms
            out.append(
                SourceRecord(
                    value={"n": n}, key=f"k{n % options.keys}", position=n + 1, timestamp_ms=stamp
                )
            )
        self.next = end
        return out

    async def close(self) -> None:
        return None


JOURNAL = ConnectorKind(
    name="tests.core.ops_plugins:JOURNAL",
    summary="Test sink: JSON lines in a file, refusing listed values.",
    sink=JournalSink,
    sink_options=JournalOptions,
)
COUNT = ConnectorKind(
    name="tests.core.ops_plugins:COUNT",
    summary="Test source: count records {n: i}.",
    source=CountSource,
    source_options=CountOptions,
)
