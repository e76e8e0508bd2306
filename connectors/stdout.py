"""The ``stdout`` sink: one JSON line per event on standard output.

Each line is ``{"topic", "partition", "offset", "timestamp", "key", "value",
"headers"}``. Key and value are decoded as JSON when they are JSON, as text
when they are UTF-8, else base64 (``{"base64": "..."}``); header values as text.
``write`` returns after the lines were flushed to the file descriptor.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from backbone import ConnectorContext, ConnectorKind, ConnectorOptions, Sink, SinkRecord

__all__ = ["CONNECTOR", "StdoutOptions", "StdoutSink", "render"]


class StdoutOptions(ConnectorOptions):
    """Options of the stdout sink."""

    headers: bool = True
    """Include the record headers in each line."""
    pretty: bool = False
    """Indent the JSON (several lines per event) instead of one line per event."""


def _decode(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def render(record: SinkRecord, *, headers: bool = True, indent: int | None = None) -> str:
    """The JSON text of one record as the stdout sink prints it."""
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "key": _decode(record.key),
        "value": _decode(record.value),
    }
    if headers:
        line["headers"] = {name: value.decode("utf-8", "replace") for name, value in record.headers}
    return json.dumps(line, ensure_ascii=False, indent=indent)


class StdoutSink(Sink[StdoutOptions]):
    """Prints each record as JSON; the stream is the process's standard output."""

    def __init__(
        self, options: StdoutOptions, context: ConnectorContext, stream: TextIO | None = None
    ) -> None:
        super().__init__(options, context)
        self._stream = stream

    async def write(self, records: Sequence[SinkRecord]) -> None:
        stream = self._stream or sys.stdout
        indent = 2 if self.options.pretty else None
        text = "".join(
            render(r, headers=self.options.headers, indent=indent) + "\n" for r in records
        )
        stream.write(text)
        stream.flush()


CONNECTOR = ConnectorKind(
    name="stdout",
    summary="Print every event as one JSON line on standard output.",
    sink=StdoutSink,
    sink_options=StdoutOptions,
    example="""\
sinks:
  console:
    type: stdout
    topics: [demo.events]
    start: earliest
""",
)
