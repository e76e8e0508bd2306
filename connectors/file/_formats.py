"""Lines of a file to records: ``lines``, ``jsonl`` and ``csv`` (the file source's parser).

A :class:`Cursor` is how far one file was read: ``offset`` (bytes consumed: the
end of the last complete line handed out or skipped) and ``line`` (lines
consumed). :meth:`Parser.parse` takes the bytes read at ``cursor.offset`` and
returns the records of the complete lines in them (at most ``limit``), moving the
cursor past exactly those lines; a line without its newline waits for the next
read, unless ``eof`` says the file is complete. Every record carries the headers
``file.name`` and ``file.line`` (1-based; a CSV row spanning lines is numbered by
its first line), the identity ``[dev, ino, offset]`` (its CloudEvents id) and the
position the source's ``position(offset, line)`` makes. Bad input becomes a record
with ``error`` and the raw line as its value (the contract's rule 4).
"""

from __future__ import annotations

import csv
import json
import json.scanner
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from backbone.sdk import SourceRecord

from ._options import ColumnType, FileSourceOptions

__all__ = ["Cursor", "Parser"]

_JSON = b"application/json"


@dataclass
class Cursor:
    """How far one file was read (see the module docstring)."""

    dev: int
    ino: int
    name: str
    offset: int = 0
    line: int = 0
    header: list[str] | None = None
    """``csv``: the column names once the header row was read."""
    overlong: bytes | None = None
    """The start of a line longer than ``max_line`` whose end is still being skipped."""
    overlong_line: int = 0
    name_header: tuple[str, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.rename(self.name)

    def rename(self, name: str) -> None:
        """The file is now called ``name`` (after a rotation)."""
        self.name = name
        self.name_header = ("file.name", name.encode("utf-8", "surrogateescape"))

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)


Position = Callable[[int, int], Any]
"""``position(offset, line)``: the source position after a record ending there."""


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


_CONVERT: dict[ColumnType, Callable[[str], Any]] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": _boolean,
    "json": json.loads,
}


class Parser:
    """Turns the bytes of one file into records (see the module docstring)."""

    def __init__(self, options: FileSourceOptions) -> None:
        self.options = options
        self.format = options.format
        self.key = options.key
        self.event_type = options.event_type or None
        self.max_line = options.max_line
        self._types = {name: _CONVERT[kind] for name, kind in options.types.items()}
        self._scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))

    # ------------------------------------------------------------------ entry points

    def parse(
        self, cursor: Cursor, data: bytes, *, eof: bool, limit: int, position: Position
    ) -> list[SourceRecord]:
        """Records of the complete lines in ``data`` (read at ``cursor.offset``)."""
        records: list[SourceRecord] = []
        if cursor.overlong is not None:
            data = self._skip_overlong(cursor, data, eof, records, position)
            if cursor.overlong is not None:
                return records
        lines = data.split(b"\n")
        tail = lines.pop()  # the bytes after the last newline: a line still growing
        if eof and tail:
            lines.append(tail)
            tail = b""
        elif not lines and len(tail) > self.max_line:
            cursor.overlong, cursor.overlong_line = tail[: self.max_line], cursor.line + 1
            cursor.offset += len(tail)
            return records
        if self.format == "csv":
            self._csv(cursor, lines, eof, limit, records, position)
        elif self.format == "jsonl":
            self._jsonl(cursor, lines[:limit], records, position)
        else:
            self._lines(cursor, lines[:limit], records, position)
        return records

    def read_header(self, cursor: Cursor, data: bytes, *, complete: bool) -> str | None:
        """``csv`` with ``header``: take the column names from the first row of ``data``
        (the file's first bytes); a cursor at the file's start moves past that row.

        Returns why the header cannot be read (the file cannot be read at all), or None
        -- also when the first row is not complete yet (it is read with the records).
        """
        offset = line = 0
        for raw in data.split(b"\n"):
            end = offset + len(raw) + 1
            if end > len(data) and not complete:
                return None  # the first row is still being written
            line += 1
            offset = min(end, len(data))
            text = raw.rstrip(b"\r")
            if not text.strip():
                continue
            try:
                row = self._row(text.decode(self.options.encoding))
            except (UnicodeDecodeError, csv.Error, LookupError) as exc:
                return f"its header row cannot be read: {exc}"
            cursor.header = list(self.options.columns or row)
            if cursor.offset == 0:
                cursor.offset, cursor.line = offset, line
            return None
        return None

    # ------------------------------------------------------------------ lines and JSON

    def _lines(
        self,
        cursor: Cursor,
        lines: list[bytes],
        records: list[SourceRecord],
        position: Position,
    ) -> None:
        """``lines``: each line's bytes are a record."""
        offset, number = cursor.offset, cursor.line
        dev, ino = cursor.dev, cursor.ino
        name_header = cursor.name_header
        event_type = self.event_type
        key = cursor.name if self.key == "filename" else None
        max_line = self.max_line
        append = records.append
        for raw in lines:
            offset += len(raw) + 1
            number += 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > max_line:
                why = f"line longer than max_line ({max_line} bytes); its start is the value"
                append(self._error(raw[:max_line], why, cursor, offset, number, position))
                continue
            append(SourceRecord(raw, key, [name_header, ("file.line", b"%d" % number)], None,
                                position(offset, number), None, event_type, None,
                                (dev, ino, offset)))  # fmt: skip
        cursor.offset, cursor.line = offset, number

    def _jsonl(
        self,
        cursor: Cursor,
        lines: list[bytes],
        records: list[SourceRecord],
        position: Position,
    ) -> None:
        """``jsonl``: each line must be one JSON value; its bytes are the record value.

        The lines are decoded as one text and each is parsed in place with the JSON
        scanner (one call per line, no copy per line); a line that fails is parsed
        again alone for the error message.
        """
        try:
            text = b"\n".join(lines).decode("utf-8")
            texts = text.split("\n")
        except UnicodeDecodeError:
            text, texts = "", []  # some line is not UTF-8: check them one by one
        scan = self._scan
        offset, number, index = cursor.offset, cursor.line, 0
        dev, ino = cursor.dev, cursor.ino
        name_header = cursor.name_header
        event_type = self.event_type
        key_field = self.key
        file_key = cursor.name if key_field == "filename" else None
        field_key = key_field is not None and file_key is None
        max_line = self.max_line
        append = records.append
        for at, raw in enumerate(lines):
            offset += len(raw) + 1
            number += 1
            start = index
            if texts:
                index += len(texts[at]) + 1
                line = texts[at]
            else:
                line = ""
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > max_line:
                why = f"line longer than max_line ({max_line} bytes); its start is the value"
                append(self._error(raw[:max_line], why, cursor, offset, number, position))
                continue
            if texts and (not line or line.isspace()):
                continue
            value = None
            try:
                if not texts or line[0] in " \t":
                    raise ValueError
                value, end = scan(text, start)
                if end != index - 1 and not text[end : index - 1].isspace():
                    raise ValueError
            except (ValueError, StopIteration):
                if not raw.strip():
                    continue  # a blank line in a chunk that is not all UTF-8
                try:
                    value = json.loads(raw)
                except ValueError as exc:
                    why = f"not JSON: {exc}"
                    append(self._error(raw, why, cursor, offset, number, position))
                    continue
            key = file_key
            if field_key and isinstance(value, dict):
                key = value.get(key_field)
            append(SourceRecord(raw, key, [name_header, ("file.line", b"%d" % number),
                                           ("content-type", _JSON)],
                                None, position(offset, number), None, event_type, None,
                                (dev, ino, offset)))  # fmt: skip
        cursor.offset, cursor.line = offset, number

    def _error(
        self,
        raw: bytes,
        why: str,
        cursor: Cursor,
        offset: int,
        number: int,
        position: Position,
        *,
        shown: int | None = None,
    ) -> SourceRecord:
        """A bad-input record for ``raw``; ``number`` lines consumed after it, ``shown``
        the line number it is reported at (default ``number``)."""
        shown = number if shown is None else shown
        headers = [cursor.name_header, ("file.line", b"%d" % shown)]
        return SourceRecord(
            raw,
            headers=headers,
            position=position(offset, number),
            error=f"{cursor.name} line {shown}: {why}",
            identity=(cursor.dev, cursor.ino, offset),
        )

    def _skip_overlong(
        self,
        cursor: Cursor,
        data: bytes,
        eof: bool,
        records: list[SourceRecord],
        position: Position,
    ) -> bytes:
        """Drop the rest of an overlong line; report it once its end is found."""
        end = data.find(b"\n")
        if end < 0 and not eof:
            cursor.offset += len(data)
            return b""
        skipped = len(data) if end < 0 else end + 1
        cursor.offset += skipped
        cursor.line = cursor.overlong_line
        head, cursor.overlong = cursor.overlong or b"", None
        records.append(
            self._error(
                head,
                f"line longer than max_line ({self.max_line} bytes); its start is the value",
                cursor,
                cursor.offset,
                cursor.line,
                position,
            )
        )
        return data[skipped:]

    # ------------------------------------------------------------------ CSV

    def _row(self, text: str) -> list[str]:
        reader = csv.reader([text], delimiter=self.options.delimiter, strict=True)
        return next(reader, [])

    def _csv(
        self,
        cursor: Cursor,
        lines: list[bytes],
        eof: bool,
        limit: int,
        records: list[SourceRecord],
        position: Position,
    ) -> None:
        encoding = self.options.encoding
        offset, number = cursor.offset, cursor.line
        pending: list[str] = []  # the lines of a quoted field spanning lines
        pending_raw: list[bytes] = []
        start_offset, start_line = offset, number
        for raw in lines:
            if len(records) >= limit and not pending:
                break
            if not pending:
                start_offset, start_line = offset, number
            offset += len(raw) + 1
            number += 1
            line = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as exc:
                if pending:  # the broken line ends the pending record too
                    pending_raw.append(line)
                    line, pending, pending_raw = b"\n".join(pending_raw), [], []
                why = f"not {encoding}: {exc}"
                records.append(
                    self._error(line, why, cursor, offset, number, position, shown=start_line + 1)
                )
                continue
            pending.append(text)
            pending_raw.append(line)
            joined = "\n".join(pending)
            if joined.count('"') % 2:
                continue  # a quoted field goes on on the next line
            raw_record = b"\n".join(pending_raw)
            pending, pending_raw = [], []
            if not joined.strip():
                continue
            record = self._csv_record(
                cursor, joined, raw_record, offset, number, start_line + 1, position
            )
            if record is not None:
                records.append(record)
        if pending:
            if eof:
                raw_record = b"\n".join(pending_raw)
                why = "unclosed quote at the end of the file"
                records.append(
                    self._error(
                        raw_record, why, cursor, offset, number, position, shown=start_line + 1
                    )
                )
            else:  # wait for the rest of the quoted field
                offset, number = start_offset, start_line
        cursor.offset, cursor.line = offset, number

    def _csv_record(
        self,
        cursor: Cursor,
        text: str,
        raw: bytes,
        offset: int,
        number: int,
        first_line: int,
        position: Position,
    ) -> SourceRecord | None:
        """The record of one CSV row (text ``text``) ending at ``offset`` after ``number``
        lines; reported at ``first_line``. None for the header row."""

        def error(why: str) -> SourceRecord:
            return self._error(raw, why, cursor, offset, number, position, shown=first_line)

        try:
            row = self._row(text)
        except csv.Error as exc:
            return error(f"not CSV: {exc}")
        if cursor.header is None:
            if self.options.header:
                cursor.header = list(self.options.columns or row)
                return None
            cursor.header = list(self.options.columns or ())
        header = cursor.header
        if len(row) != len(header):
            return error(f"{len(row)} fields, the header has {len(header)}")
        value: dict[str, Any] = {}
        types = self._types
        for name, field_text in zip(header, row, strict=True):
            convert = types.get(name)
            if convert is None or convert is str:
                value[name] = field_text
            elif field_text == "":
                value[name] = None
            else:
                try:
                    value[name] = convert(field_text)
                except ValueError as exc:
                    kind = self.options.types[name]
                    return error(f"column {name!r}: {field_text!r} is not {kind} ({exc})")
        key_field = self.key
        if key_field == "filename":
            key: Any = cursor.name
        else:
            key = value.get(key_field) if key_field else None
        return SourceRecord(
            value,
            key,
            [cursor.name_header, ("file.line", b"%d" % first_line)],
            None,
            position(offset, number),
            None,
            self.event_type,
            None,
            (cursor.dev, cursor.ino, offset),
        )
