"""The ``file`` sink: records to files ``<topic>-<partition>-<first offset>.<ext>``.

One open file per partition, written under ``.<name>.tmp`` in the target folder
(:class:`~backbone.sdk.StagedFile`). A file closes when ``rotate`` says (size,
records, or time: record timestamps spanning ``interval``, or open that long), on
``flush`` (the runner stops, or a rebalance takes the partition away) -- and is
then fsynced, renamed to its final name and the folder fsynced. ``precommit``
reports a partition durable only up to the first offset of its open file: offsets
are committed only for records in published files. ``close`` without ``flush``
(or a crash) drops the open file; its records are delivered again and rewritten
under the same name, so a replayed range rewrites the same files (names come
from offsets; cuts by size, records and record time are the same on a re-run).

``write`` encodes the whole batch before writing anything (a bad record raises
:class:`DataError` and leaves nothing behind), skips records at offsets already
written (a retried batch is not written twice), and undoes a failed append
(truncating the open file back) before raising :class:`RetriableError`.
"""

from __future__ import annotations

import csv
import io
import json
import json.scanner
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from backbone.sdk import (
    DataError,
    FatalError,
    Offload,
    RetriableError,
    Sink,
    SinkRecord,
    StagedFile,
    TopicPartition,
)

from ._options import FileSinkOptions

__all__ = ["FileSink", "file_name"]

OFFSET_DIGITS = 20
"""First offsets are zero-padded to this width, so names sort in offset order."""


def file_name(topic: str, partition: int, offset: int, extension: str) -> str:
    """``orders-0-00000000000000000100.jsonl``."""
    return f"{topic}-{partition}-{offset:0{OFFSET_DIGITS}d}.{extension}"


class _Open:
    """The open file of one partition."""

    __slots__ = ("first", "first_ts", "opened", "records", "staged")

    def __init__(self, staged: StagedFile, first: int, first_ts: int, opened: float) -> None:
        self.staged = staged
        self.first = first
        self.first_ts = first_ts
        self.opened = opened
        self.records = 0


def _open_staged(path: Path, stale_prefix: str) -> StagedFile:
    """A new staged file at ``path``; leftovers of this partition (a crash) are removed."""
    folder = path.parent
    for name in os.listdir(folder):
        if name.startswith(stale_prefix) and name.endswith(".tmp") and name != f".{path.name}.tmp":
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
    return StagedFile(path)


def _append(staged: StagedFile, data: bytes) -> None:
    """Append ``data``; on failure cut the file back to where it was and re-raise."""
    size = staged.size
    try:
        staged.write(data)
    except OSError:
        try:
            staged.truncate(size)
        except OSError as exc:
            raise _Unrecoverable(f"{staged.temporary}: {exc}") from exc
        raise


class _Unrecoverable(Exception):
    """A failed append that could not be undone."""


class FileSink(Sink[FileSinkOptions]):
    """Writes records to files (see the module docstring)."""

    async def open(self) -> None:
        options = self.options
        self.folder = self.context.resolve(options.path)
        if not self.folder.is_dir():
            raise RetriableError(f"path: folder {self.folder} does not exist (yet)")
        self.call = Offload()
        self.clock = self.context.clock
        self.extension = options.extension or options.format
        rotate = options.rotate
        self.max_bytes = rotate.size
        self.max_records = rotate.records
        self.interval_ms = None if rotate.interval is None else int(rotate.interval * 1000)
        self.files: dict[TopicPartition, _Open] = {}
        self.written: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record appended (retries skip below)."""
        self._separator = options.separator.encode()
        self._scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
        self._header = b""
        if options.format == "csv" and options.header:
            self._header = self._csv_line(list(options.columns or ()))

    async def check(self) -> None:
        folder = self.context.resolve(self.options.path)
        if not folder.is_dir():
            raise FatalError(f"path: folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise FatalError(f"path: folder {folder} is not writable")

    # ------------------------------------------------------------------ encoding

    def _csv_line(self, fields: list[Any]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.options.delimiter, lineterminator="\n").writerow(fields)
        return buffer.getvalue().encode()

    def _json(self, record: SinkRecord, value: bytes) -> Any:
        """The value decoded as JSON; DataError if it is not JSON.

        The JSON scanner is called directly on the text (``json.loads`` of bytes first
        guesses the encoding in Python); anything it does not take whole goes through
        ``json.loads`` for the verdict and the message.
        """
        try:
            text = value.decode("utf-8")
            decoded, end = self._scan(text, 0)
            if end == len(text) or text[end:].isspace():
                return decoded
        except (ValueError, StopIteration):
            pass
        try:
            return json.loads(value)
        except ValueError as exc:
            raise DataError(
                f"record {record.topic}/{record.partition}@{record.offset} is not JSON: {exc}"
            ) from exc

    def _encode(self, record: SinkRecord) -> bytes | None:
        """The bytes one record adds to its file (None: a tombstone, nothing)."""
        value = record.value
        if value is None:
            return None
        form = self.options.format
        if form == "raw":
            return value + self._separator
        decoded = self._json(record, value)
        if form == "jsonl":
            if b"\n" in value or b"\r" in value:
                value = json.dumps(decoded, ensure_ascii=False, separators=(",", ":")).encode()
            return value + b"\n"
        if not isinstance(decoded, dict):
            raise DataError(
                f"record {record.topic}/{record.partition}@{record.offset}: format csv needs "
                f"a JSON object, got {type(decoded).__name__}"
            )
        row = []
        for column in self.options.columns or ():
            item = decoded.get(column)
            if item is None:
                item = ""
            elif isinstance(item, dict | list):
                item = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            elif isinstance(item, bool):
                item = "true" if item else "false"
            row.append(item)
        return self._csv_line(row)

    # ------------------------------------------------------------------ writing

    async def write(self, records: Sequence[SinkRecord]) -> None:
        # 1. encode everything first: a bad record leaves nothing behind
        by_partition: dict[TopicPartition, list[tuple[SinkRecord, bytes | None]]] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset < self.written.get(tp, -1):
                continue  # already written (a retried batch)
            by_partition.setdefault(tp, []).append((record, self._encode(record)))
        # 2. append, cutting files where rotate says
        for tp, items in by_partition.items():
            await self._write_partition(tp, items)

    async def _write_partition(
        self, tp: TopicPartition, items: list[tuple[SinkRecord, bytes | None]]
    ) -> None:
        chunks: list[bytes] = []
        current = self.files.get(tp)
        pending = 0  # bytes in chunks
        done = self.written.get(tp, -1)  # offset after the last record appended so far
        for record, data in items:
            if current is not None and self._later(current, record):
                await self._flush_chunks(tp, current, chunks)
                self.written[tp] = done
                chunks, pending = [], 0
                await self._publish(tp)
                current = None
            if data is not None:  # a tombstone adds nothing, but its offset is done
                if current is None:
                    current = await self._start(tp, record)
                chunks.append(data)
                pending += len(data)
                current.records += 1
            done = record.offset + 1
            if current is not None and self._full(current, pending):
                await self._flush_chunks(tp, current, chunks)
                self.written[tp] = done
                chunks, pending = [], 0
                await self._publish(tp)
                current = None
        if current is not None:
            await self._flush_chunks(tp, current, chunks)
        self.written[tp] = done

    def _full(self, current: _Open, pending: int) -> bool:
        """Whether the file is complete by size or record count."""
        if self.max_bytes is not None and current.staged.size + pending >= self.max_bytes:
            return True
        return self.max_records is not None and current.records >= self.max_records

    def _later(self, current: _Open, record: SinkRecord) -> bool:
        """Whether ``record`` is ``interval`` (record time) after the file's first record."""
        interval = self.interval_ms
        return (
            interval is not None
            and record.timestamp_ms >= 0
            and current.first_ts >= 0
            and record.timestamp_ms - current.first_ts >= interval
        )

    async def _start(self, tp: TopicPartition, record: SinkRecord) -> _Open:
        name = file_name(tp.topic, tp.partition, record.offset, self.extension)
        stale = f".{tp.topic}-{tp.partition}-"
        try:
            staged = await self.call(_open_staged, self.folder / name, stale)
        except OSError as exc:
            raise RetriableError(f"cannot create a file in {self.folder}: {exc}") from exc
        current = _Open(staged, record.offset, record.timestamp_ms, self.clock.time())
        self.files[tp] = current
        if self._header:
            await self._flush_chunks(tp, current, [self._header])
        return current

    async def _flush_chunks(self, tp: TopicPartition, current: _Open, chunks: list[bytes]) -> None:
        if not chunks:
            return
        staged = current.staged
        try:
            await self.call(_append, staged, b"".join(chunks))
        except _Unrecoverable as exc:
            raise FatalError(
                f"cannot write {exc} and cannot undo the partial write; offsets from "
                f"{current.first} of {tp.topic}/{tp.partition} are not committed and will be "
                "written again after a restart"
            ) from exc
        except OSError as exc:
            raise RetriableError(f"cannot write {staged.temporary}: {exc}") from exc

    async def _publish(self, tp: TopicPartition) -> None:
        current = self.files.pop(tp, None)
        if current is None:
            return
        try:
            path = await self.call(current.staged.publish)
        except OSError as exc:
            await self.call(current.staged.discard)
            self.written.pop(tp, None)
            raise FatalError(
                f"cannot publish {current.staged.path}: {exc}; offsets from {current.first} of "
                f"{tp.topic}/{tp.partition} are not committed and will be written again after "
                "a restart"
            ) from exc
        self.context.logger.debug("published %s (from offset %d)", path, current.first)

    # ------------------------------------------------------------------ committing

    async def precommit(
        self, offsets: Mapping[TopicPartition, int]
    ) -> Mapping[TopicPartition, int]:
        if self.interval_ms is not None:
            age = self.interval_ms / 1000
            now = self.clock.time()
            for tp in [tp for tp, f in self.files.items() if now - f.opened >= age]:
                await self._publish(tp)
        out: dict[TopicPartition, int] = {}
        for tp, offset in offsets.items():
            current = self.files.get(TopicPartition(*tp))
            out[tp] = offset if current is None else min(offset, current.first)
        return out

    async def flush(self, partitions: Collection[TopicPartition]) -> None:
        for tp in partitions:
            tp = TopicPartition(*tp)
            await self._publish(tp)
            self.written.pop(tp, None)

    async def close(self) -> None:
        call = getattr(self, "call", None)
        if call is None:
            return
        await call.settle()
        files, self.files = self.files, {}
        for current in files.values():
            await call(current.staged.discard)
        self.written.clear()
