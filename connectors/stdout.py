"""The ``stdout`` sink: one JSON line per event on standard output.

Each line is ``{"topic", "partition", "offset", "timestamp", "key", "value",
"headers"}``, compact (no spaces), UTF-8. Key and value are decoded as JSON
when they are JSON (RFC 8259: a value with ``NaN`` in it is not, and prints as
text), as text when they are UTF-8, else base64 (``{"base64": "..."}``);
header values as text. ``write`` returns after the lines were flushed to the
file descriptor.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from backbone.sdk import (
    ConnectorContext,
    ConnectorKind,
    ConnectorOptions,
    FatalError,
    Sink,
    SinkRecord,
    json_loads,
    maybe_json,
)

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
    if maybe_json(data):  # keys like ``key-5`` skip a decode that would only fail
        try:
            return json_loads(data, strict=True)
        except ValueError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _line(record: SinkRecord, headers: bool) -> dict[str, Any]:
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
    return line


def _dumps(line: dict[str, Any], indent: int | None) -> bytes:
    if indent in (None, 2):
        try:
            return orjson.dumps(line, option=orjson.OPT_INDENT_2 if indent else 0)
        except TypeError:
            pass  # an integer beyond 64 bits: the standard library writes it exactly
    separators = (",", ":") if indent is None else None
    return json.dumps(line, ensure_ascii=False, indent=indent, separators=separators).encode()


def render(record: SinkRecord, *, headers: bool = True, indent: int | None = None) -> str:
    """The JSON text of one record as the stdout sink prints it."""
    return _dumps(_line(record, headers), indent).decode()


class StdoutSink(Sink[StdoutOptions]):
    """Prints each record as JSON; the stream is the process's standard output."""

    def __init__(
        self, options: StdoutOptions, context: ConnectorContext, stream: TextIO | None = None
    ) -> None:
        super().__init__(options, context)
        self._stream = stream

    async def open(self) -> None:
        return None

    async def write(self, records: Sequence[SinkRecord]) -> None:
        stream = self._stream or sys.stdout
        indent = 2 if self.options.pretty else None
        headers = self.options.headers
        lines = [_dumps(_line(r, headers), indent) for r in records]
        lines.append(b"")
        data = b"\n".join(lines)
        binary = getattr(stream, "buffer", None)
        try:
            if binary is None:  # a text-only stream (io.StringIO)
                stream.write(data.decode())
                stream.flush()
                return
            stream.flush()  # text written to the stream before goes first
            binary.write(data)
            binary.flush()
        except (OSError, ValueError) as exc:  # closed or broken pipe: nobody reads any more
            raise FatalError(f"cannot write to standard output: {exc}") from exc

    async def close(self) -> None:
        return None


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
