"""Test-only connector kinds for tests/core/test_runtime_behaviour.py.

- ``HANG``: a sink whose ``write`` never returns until cancelled. It appends one
  line per event to ``path``: ``write <batch size>`` when a write starts,
  ``cancelled`` when the write is cancelled (then re-raises), ``closed`` on close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from backbone import ConnectorKind, ConnectorOptions, Sink, SinkRecord


class HangOptions(ConnectorOptions):
    path: str
    """File the sink logs its calls to."""


class HangSink(Sink[HangOptions]):
    def _log(self, line: str) -> None:
        with open(self.context.resolve(self.options.path), "a") as log:
            log.write(line + "\n")

    async def open(self) -> None:
        return None

    async def write(self, records: Sequence[SinkRecord]) -> None:
        self._log(f"write {len(records)}")
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends this write
        except asyncio.CancelledError:
            self._log("cancelled")
            raise

    async def close(self) -> None:
        self._log("closed")


HANG = ConnectorKind(
    name="tests.core.runtime_plugins:HANG",
    summary="Test sink whose write hangs until cancelled.",
    sink=HangSink,
    sink_options=HangOptions,
)
