"""Test-only connector kinds, used from configs as ``type: "tests.core.plugins:NAME"``.

- ``LIST``: a source emitting the ``values`` option in order; position = how many
  values were emitted. ``error_at`` indexes become unparseable records (``error``
  set), ``unserializable_at`` indexes carry a value JSON cannot encode.
- ``FILE``: a sink appending one JSON line per record to ``path`` (fsynced before
  ``write`` returns). It can fail on purpose: ``fail_first`` retriable failures
  (with ``retry_after``), ``DataError`` for values with ``"bad": true``, and
  ``FatalError`` for values with ``"fatal": true``. Every ``write`` call appends
  ``<monotonic time> <batch size>`` to ``path + ".attempts"``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from backbone import (
    ConnectorKind,
    ConnectorOptions,
    DataError,
    FatalError,
    RetriableError,
    Sink,
    SinkRecord,
    Source,
    SourceRecord,
)


class ListOptions(ConnectorOptions):
    values: list[Any] = []
    """Values to emit, in order."""
    error_at: list[int] = []
    """Indexes emitted as records the source could not parse."""
    unserializable_at: list[int] = []
    """Indexes whose value cannot be encoded as JSON."""
    fail_reads: int = 0
    """Number of reads that raise RetriableError first."""


class ListSource(Source[ListOptions]):
    async def open(self, position: Any | None) -> None:
        self.next = position or 0
        self.closed = False
        self.failures = 0

    async def read(self) -> list[SourceRecord]:
        if self.failures < self.options.fail_reads:
            self.failures += 1
            raise RetriableError(f"source down ({self.failures})")
        values = self.options.values
        if self.next >= len(values):
            import asyncio

            await asyncio.sleep(0.05)
            return []
        out = []
        for index in range(self.next, len(values)):
            value = values[index]
            record = SourceRecord(value=value, key=f"k{index}", position=index + 1)
            if index in self.options.error_at:
                record = SourceRecord(
                    value=f"raw-{index}".encode(), position=index + 1, error="cannot parse line"
                )
            elif index in self.options.unserializable_at:
                record = SourceRecord(value={"x": {1, 2}}, key=f"k{index}", position=index + 1)
            out.append(record)
        self.next = len(values)
        return out

    async def close(self) -> None:
        self.closed = True


class FileOptions(ConnectorOptions):
    path: str
    """File the records are appended to (JSON lines)."""
    fail_first: int = 0
    """Number of write calls that fail with RetriableError first."""
    retry_after: float | None = None
    """retry_after of those failures."""


class FileSink(Sink[FileOptions]):
    async def open(self) -> None:
        self.calls = 0
        self.file = self.context.resolve(self.options.path)

    async def close(self) -> None:
        return None

    async def write(self, records: Sequence[SinkRecord]) -> None:
        self.calls += 1
        with open(str(self.file) + ".attempts", "a") as log:  # noqa: ASYNC230 - tiny test file
            log.write(f"{time.monotonic()} {len(records)}\n")
        if self.calls <= self.options.fail_first:
            raise RetriableError(
                f"scripted failure {self.calls}", retry_after=self.options.retry_after
            )
        values = [r.json() for r in records]
        for value in values:
            if isinstance(value, dict) and value.get("fatal"):
                raise FatalError("fatal record")
            if isinstance(value, dict) and value.get("bad"):
                raise DataError(f"bad record {value.get('n')}")
        lines = "".join(
            json.dumps(
                {
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key_json(),
                    "value": v,
                }
            )
            + "\n"
            for r, v in zip(records, values, strict=True)
        )
        fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


LIST = ConnectorKind(
    name="tests.core.plugins:LIST",
    summary="Test source emitting a fixed list.",
    source=ListSource,
    source_options=ListOptions,
)
FILE = ConnectorKind(
    name="tests.core.plugins:FILE",
    summary="Test sink appending JSON lines to a file.",
    sink=FileSink,
    sink_options=FileOptions,
)


class SecretOptions(ConnectorOptions):
    url: str
    """Where to connect."""
    password: SecretStr
    """The password (never printed)."""


class SecretSink(Sink[SecretOptions]):
    async def open(self) -> None:
        return None

    async def write(self, records: Sequence[SinkRecord]) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not self.options.url.startswith("ok:"):
            raise FatalError(f"cannot reach {self.options.url}")


SECRET = ConnectorKind(
    name="secret",
    summary="Test sink with a secret option.",
    sink=SecretSink,
    sink_options=SecretOptions,
)


class ReservedOptions(ConnectorOptions):
    retry: int = 1
    """Clashes with the runtime's retry block."""


RESERVED = ConnectorKind(
    name="reserved",
    summary="Broken on purpose.",
    sink=SecretSink,
    sink_options=ReservedOptions,
)


class BreaksOptions(ConnectorOptions):
    breaks: str
    """Which rule the source breaks: ``shared`` (two records, one position, no identity),
    ``none`` (position None without identity), ``data_error`` (read raises DataError);
    ``nothing``: a two-record change done right (None + identity, then position 5)."""


class BreaksContract(Source[BreaksOptions]):
    """A source that breaks one rule of the contract on its first read."""

    async def open(self, position: Any | None) -> None:
        self.done = False

    async def read(self) -> list[SourceRecord]:
        import asyncio

        if self.done:
            await asyncio.sleep(0.05)
            return []
        self.done = True
        if self.options.breaks == "data_error":
            raise DataError("line 3 is not JSON")
        if self.options.breaks == "none":
            return [SourceRecord(value={"n": 1}, position=None)]
        if self.options.breaks == "nothing":
            return [
                SourceRecord(value={"n": 1}, key="a", position=None, identity="a-delete"),
                SourceRecord(value=None, key="a", position=5, identity="a-tombstone"),
            ]
        return [SourceRecord(value={"n": 1}, position=7), SourceRecord(value={"n": 2}, position=7)]

    async def close(self) -> None:
        return None


BREAKS = ConnectorKind(
    name="tests.core.plugins:BREAKS",
    summary="Test source breaking one contract rule.",
    source=BreaksContract,
    source_options=BreaksOptions,
)
