"""A complete connector: JSON lines from a file to a topic, and from topics to a file."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from backbone.sdk import (
    ConnectorKind,
    ConnectorOptions,
    Offload,
    RetriableError,
    Sink,
    SinkRecord,
    Source,
    SourceRecord,
)


class LinesOptions(ConnectorOptions):
    path: str
    """The JSON-lines file (relative to the config file)."""


class LinesSource(Source[LinesOptions]):
    """Each complete line becomes a record; the position is the byte offset after it."""

    async def open(self, position: Any | None) -> None:
        self.path = self.context.resolve(self.options.path)
        self.offset, self.call = position or 0, Offload()

    def _tail(self, offset: int) -> bytes:
        if not self.path.exists():
            return b""
        with open(self.path, "rb") as file:
            file.seek(offset)
            return file.read(1 << 20)

    async def read(self) -> list[SourceRecord]:
        data = await self.call(self._tail, self.offset)
        if b"\n" not in data:
            await asyncio.sleep(0.1)  # idle: return soon, never block
            return []
        records: list[SourceRecord] = []
        for line in data[: data.rindex(b"\n")].split(b"\n"):
            self.offset += len(line) + 1
            try:
                records.append(SourceRecord(value=json.loads(line), position=self.offset))
            except ValueError as exc:  # bad input: a record with error, raw line as value
                records.append(
                    SourceRecord(value=line, error=f"not JSON: {exc}", position=self.offset)
                )
        return records

    async def close(self) -> None:
        await self.call.settle()


class LinesSink(Sink[LinesOptions]):
    """Appends each value as a JSON line; ``write`` returns once the lines are fsynced."""

    async def open(self) -> None:
        self.path, self.call = self.context.resolve(self.options.path), Offload()

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    async def write(self, records: Sequence[SinkRecord]) -> None:
        # r.json() raises DataError for a value that is not JSON: nothing is written
        data = b"".join(json.dumps(r.json()).encode() + b"\n" for r in records)
        try:
            await self.call(self._append, data)
        except OSError as exc:
            raise RetriableError(f"cannot append to {self.path}: {exc}") from exc

    async def close(self) -> None:
        await self.call.settle()


CONNECTOR = ConnectorKind(
    name="lines",
    summary="JSON lines from a file to a topic, and from topics to a file.",
    source=LinesSource,
    source_options=LinesOptions,
    sink=LinesSink,
    sink_options=LinesOptions,
)
