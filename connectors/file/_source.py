"""The ``file`` source: files in a folder to records, in ``spool`` or ``tail`` mode.

Positions (JSON), one per record, "after this record":

- spool: ``{"file": {"dev", "ino", "name"} | null, "offset": bytes, "line": lines,
  "finished": [{"dev", "ino", "name", "size"}, ...]}`` -- the file being read and
  how far, plus the files read to the end whose records are not all acknowledged
  yet (they move to ``done_dir`` in ``ack``, or at the next start if the process
  died between saving the position and moving them). ``file`` is null between
  files.
- tail: ``{"file": {"dev", "ino", "name"}, "offset", "line", "others": [[dev, ino,
  name, offset, line], ...]}`` -- the file of this record and how far every other
  followed file was read.

A file is known by its identity (device, inode; the name is a hint): a restart
looks for it by inode under any name in the folder (a rotated ``app.log.1`` is
found), resumes after the acknowledged offset, and starts over if the file is now
shorter (truncated). Records carry the identity ``[dev, ino, offset]`` as their
CloudEvents id, so a line read again keeps its id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backbone.sdk import (
    FatalError,
    Offload,
    RetriableError,
    Source,
    SourceRecord,
    move_file,
)

from ._formats import Cursor, Parser
from ._options import FileSourceOptions
from ._watch import Entry, Watch, listing

__all__ = ["FileSource"]

CHUNK = 1 << 20
"""Bytes read from a file at a time (more when a line is longer)."""

IDLE = 0.5
"""Longest wait (seconds) in one idle ``read()``."""

ROTATED_GRACE = 2.0
"""Seconds a rotated (renamed away or removed) file must stay read to its end, without
growing, before it is finished (a last line without newline emitted) and dropped."""


def _read_at(fd: int, offset: int, size: int) -> tuple[bytes, int, int]:
    """``size`` bytes of ``fd`` at ``offset``, the file's size and link count (blocking)."""
    info = os.fstat(fd)
    data = os.pread(fd, size, offset) if info.st_size > offset else b""
    return data, info.st_size, info.st_nlink


HEAD = 64
"""Bytes at a followed file's start remembered to notice it was rewritten (truncated
and written again past the offset read, which its size alone does not show)."""


def _poll(files: list[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
    """``(size, links, first bytes)`` of each ``(fd, how many first bytes)`` (blocking)."""
    out = []
    for fd, head in files:
        info = os.fstat(fd)
        out.append((info.st_size, info.st_nlink, os.pread(fd, head, 0) if head else b""))
    return out


def _count_lines(fd: int, end: int) -> int:
    """Newlines in the first ``end`` bytes of ``fd`` (blocking)."""
    count = offset = 0
    while offset < end:
        data = os.pread(fd, min(CHUNK * 4, end - offset), offset)
        if not data:
            break
        count += data.count(b"\n")
        offset += len(data)
    return count


def _last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes (blocking)."""
    end = size
    while end > 0:
        start = max(0, end - CHUNK)
        data = os.pread(fd, end - start, start)
        found = data.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _move_into(path: Path, folder: Path) -> Path:
    """Create ``folder`` if needed and move ``path`` into it (blocking)."""
    folder.mkdir(parents=True, exist_ok=True)
    return move_file(path, folder)


class _Open:
    """A file being read: its cursor, descriptor and read size."""

    __slots__ = ("cursor", "drained", "fd", "head", "ref", "rotated", "want")

    def __init__(self, cursor: Cursor, fd: int) -> None:
        self.cursor = cursor
        self.fd = fd
        self.want = CHUNK
        self.head = b""
        """The file's first bytes (at most HEAD, only of what was read)."""
        self.rotated = False
        self.drained: tuple[int, float] | None = None
        """(size, since when) once a rotated file was found read up to a last partial line."""
        self.ref = self.reference()

    def reference(self) -> dict[str, Any]:
        cursor = self.cursor
        return {"dev": cursor.dev, "ino": cursor.ino, "name": cursor.name}

    def rename(self, name: str) -> None:
        self.cursor.rename(name)
        self.ref = self.reference()

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class FileSource(Source[FileSourceOptions]):
    """Reads the files of a folder (see the module and package docstrings)."""

    async def open(self, position: Any | None) -> None:
        options = self.options
        self.folder = self.context.resolve(options.path)
        self.call = Offload()
        self.parser = Parser(options)
        self.clock = self.context.clock
        self.log = self.context.logger
        self.watch = Watch(self.folder, self.log)
        self._next_listing = 0.0
        self._entries: list[Entry] = []
        self._loose: set[int] = set()
        if not self.folder.is_dir():
            raise RetriableError(f"path: folder {self.folder} does not exist (yet)")
        self.mode: _Spool | _Tail = _Spool(self) if options.mode == "spool" else _Tail(self)
        await self.mode.open(position)
        self.watch.start()

    async def read(self) -> list[SourceRecord]:
        return await self.mode.read()

    async def ack(self, position: Any) -> None:
        await self.mode.ack(position)

    async def check(self) -> None:
        folder = self.context.resolve(self.options.path)
        if not folder.is_dir():
            raise FatalError(f"path: folder {folder} does not exist")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise FatalError(f"path: folder {folder} is not readable")
        if self.options.mode == "spool":
            for option, target in (
                ("done_dir", self._done_dir()),
                ("error_dir", self._error_dir()),
            ):
                parent = target if target.exists() else target.parent
                if not os.access(parent, os.W_OK | os.X_OK):
                    raise FatalError(f"{option}: cannot create or write {target}")

    async def close(self) -> None:
        watch = getattr(self, "watch", None)
        if watch is not None:
            await watch.stop()
        call = getattr(self, "call", None)
        if call is not None:
            await call.settle()
        mode = getattr(self, "mode", None)
        if mode is not None:
            mode.close()
        for fd in getattr(self, "_loose", ()):
            os.close(fd)  # opened for a read that was cancelled before it took it
        self._loose = set()

    # ------------------------------------------------------------------ shared helpers

    def _done_dir(self) -> Path:
        folder = self.context.resolve(self.options.path)
        return (
            self.context.resolve(self.options.done_dir)
            if self.options.done_dir
            else folder / "done"
        )

    def _error_dir(self) -> Path:
        folder = self.context.resolve(self.options.path)
        if self.options.error_dir:
            return self.context.resolve(self.options.error_dir)
        return folder / "error"

    async def listing(self, *, force: bool = False) -> list[Entry]:
        """The folder's files, listed again when an event says so or ``rescan`` passed."""
        now = self.clock.time()
        if force or self.watch.stale or now >= self._next_listing or not self.watch.watching:
            self.watch.stale = False
            self._entries = await self.call(listing, self.folder, self.options.pattern)
            self._next_listing = now + self.options.rescan
        return self._entries

    async def idle(self, limit: float = IDLE) -> None:
        """Wait for a folder event, the next rescan or ``limit`` seconds (the earliest)."""
        until_rescan = self._next_listing - self.clock.time()
        await self.watch.wait(max(0.0, min(limit, until_rescan)))

    async def open_file(self, entry: Entry, offset: int, line: int) -> _Open:
        """Open ``entry`` positioned at ``offset`` (CSV: with its header read)."""
        fd = await self.call(self._open_fd, self.folder / entry.name)
        self._loose.discard(fd)  # adopted (a cancelled caller leaves it for close())
        opened = _Open(Cursor(entry.dev, entry.ino, entry.name, offset, line), fd)
        try:
            info = await self.call(os.fstat, fd)
            if (info.st_dev, info.st_ino) != entry.key:
                raise FileNotFoundError(f"{entry.name} was replaced while being opened")
            if self.options.format == "csv" and self.options.header:
                data, size, _ = await self.call(_read_at, fd, 0, 1 << 16)
                complete = self.options.mode == "spool" and len(data) >= size
                problem = self.parser.read_header(opened.cursor, data, complete=complete)
                if problem:
                    raise OSError(problem)
                if opened.cursor.header is None and len(data) >= 1 << 16:
                    raise OSError("its first 64 KiB hold no complete header row")
        except BaseException:
            opened.close()
            raise
        return opened

    def _open_fd(self, path: Path) -> int:
        """``os.open`` (blocking); the descriptor stays in ``_loose`` until adopted."""
        fd = os.open(path, os.O_RDONLY)
        self._loose.add(fd)
        return fd

    async def read_file(
        self, opened: _Open, position: Any, *, complete: bool
    ) -> tuple[list[SourceRecord], bool, int]:
        """Records from ``opened`` at its cursor: (records, drained, file size).

        ``complete``: the file will not grow (spool), so a last line without a newline
        is a line; else (tail) it waits for its newline. ``drained``: nothing but
        such a partial line is left to read.
        """
        cursor = opened.cursor
        data, size, _ = await self.call(_read_at, opened.fd, cursor.offset, opened.want)
        if size < cursor.offset:  # truncated under us: the caller notices next time
            return [], False, size
        eof = cursor.offset + len(data) >= size
        before = cursor.offset
        limit = self.options.batch_size
        records = self.parser.parse(
            cursor, data, eof=eof and complete, limit=limit, position=position
        )
        if len(opened.head) < HEAD and before <= len(opened.head):
            opened.head = (opened.head + data)[: min(HEAD, cursor.offset)]
        if not records and cursor.offset == before and data and not eof:
            opened.want = min(opened.want * 2, self.options.max_line + CHUNK)  # a long line
        else:
            opened.want = CHUNK
        if complete:
            drained = cursor.offset >= size and cursor.overlong is None
        else:
            drained = eof and len(records) < limit and cursor.overlong is None
        return records, drained, size


def _find(entries: list[Entry], dev: int, ino: int, name: str) -> Entry | None:
    """The entry with this identity, under its name or any other."""
    for entry in entries:
        if entry.name == name and entry.key == (dev, ino):
            return entry
    for entry in entries:
        if entry.key == (dev, ino):
            return entry
    return None


class _Spool:
    """Each complete file once, oldest first; finished files move on ``ack``."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.options = source.options
        self.log = source.log
        self.current: _Open | None = None
        self.finished: list[dict[str, Any]] = []
        self.failed: set[tuple[int, int]] = set()
        self._finished_ref: list[dict[str, Any]] = []

    # -- positions

    def _position(self, offset: int, line: int) -> dict[str, Any]:
        assert self.current is not None
        return {
            "file": self.current.ref,
            "offset": offset,
            "line": line,
            "finished": self._finished_ref,
        }

    def _between_files(self) -> dict[str, Any]:
        return {"file": None, "offset": 0, "line": 0, "finished": self._finished_ref}

    # -- lifecycle

    async def open(self, position: Any | None) -> None:
        source = self.source
        if not position:
            return
        entries = await source.listing(force=True)
        for done in position.get("finished") or ():
            found = _find(entries, done["dev"], done["ino"], done["name"])
            if found is not None and found.size == done["size"]:
                await self._dispose(found.name, (found.dev, found.ino))
        current = position.get("file")
        if current is None:
            return
        entries = await source.listing(force=True)
        found = _find(entries, current["dev"], current["ino"], current["name"])
        if found is None:
            self.log.warning(
                "file %s (inode %s), read up to byte %d before the restart, is gone",
                current["name"],
                current["ino"],
                position["offset"],
            )
            return
        offset, line = position["offset"], position["line"]
        if found.size < offset:
            self.log.warning(
                "file %s is shorter (%d bytes) than where reading stopped (%d): reading it "
                "again from the start",
                found.name,
                found.size,
                offset,
            )
            offset = line = 0
        try:
            self.current = await source.open_file(found, offset, line)
        except OSError as exc:
            await self._reject(found, exc)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    # -- reading

    async def read(self) -> list[SourceRecord]:
        source = self.source
        if self.current is None:
            entry = await self._next_file()
            if entry is None:
                return []
            try:
                self.current = await source.open_file(entry, 0, 0)
            except FileNotFoundError:  # gone since the listing
                source.watch.stale = True
                return []
            except OSError as exc:
                await self._reject(entry, exc)
                return []
        current = self.current
        records, complete, _ = await source.read_file(current, self._position, complete=True)
        if not complete:
            return records
        # the whole file is read: its last record carries it as finished
        current.close()
        self.current = None
        cursor = current.cursor
        self.finished.append(
            {"dev": cursor.dev, "ino": cursor.ino, "name": cursor.name, "size": cursor.offset}
        )
        self._finished_ref = list(self.finished)
        last = self._between_files()
        if records:
            records[-1].position = last
        else:
            records.append(SourceRecord.position_only(last))
        return records

    async def _next_file(self) -> Entry | None:
        """The oldest file old enough to read, or None after an idle wait."""
        source = self.source
        entries = await source.listing()
        busy = self.failed | {(f["dev"], f["ino"]) for f in self.finished}
        now = source.clock.time()
        wake = IDLE
        for entry in entries:
            if not entry.matches or entry.key in busy:
                continue
            age = now - entry.mtime
            if age < self.options.min_age:
                wake = min(wake, self.options.min_age - age)
                continue
            return entry
        await source.idle(wake)
        return None

    # -- finishing files

    async def ack(self, position: Any) -> None:
        done = {(f["dev"], f["ino"]) for f in (position or {}).get("finished") or ()}
        if not done:
            return
        keep: list[dict[str, Any]] = []
        for finished in self.finished:
            key = (finished["dev"], finished["ino"])
            if key not in done:
                keep.append(finished)
                continue
            entries = await self.source.listing(force=True)
            found = _find(entries, *key, finished["name"])
            if found is None:
                self.log.warning(
                    "file %s disappeared before it could be moved to the done folder",
                    finished["name"],
                )
                continue
            if not await self._dispose(found.name, key):
                keep.append(finished)
        if len(keep) != len(self.finished):
            self.finished = keep
            self._finished_ref = list(keep)

    async def _dispose(self, name: str, key: tuple[int, int]) -> bool:
        """Move (or delete) a finished file; False (and a warning) if that failed."""
        source = self.source
        path = source.folder / name
        source.watch.stale = True  # the listing no longer holds it
        try:
            if self.options.on_done == "delete":
                await source.call(os.unlink, path)
            else:
                target = await source.call(_move_into, path, source._done_dir())
                self.log.info("file %s done: moved to %s", name, target)
        except OSError as exc:
            self.log.warning("cannot %s finished file %s: %s", self.options.on_done, path, exc)
            return False
        return True

    async def _reject(self, entry: Entry, error: OSError) -> None:
        """A file that cannot be read at all goes to the error folder."""
        source = self.source
        source.watch.stale = True
        self.failed.add(entry.key)
        try:
            target = await source.call(_move_into, source.folder / entry.name, source._error_dir())
        except OSError as exc:
            self.log.warning(
                "cannot read %s (%s) nor move it to the error folder (%s): skipping it",
                entry.name,
                error,
                exc,
            )
            return
        self.failed.discard(entry.key)
        self.log.warning("cannot read %s (%s): moved to %s", entry.name, error, target)


class _Tail:
    """Follows every matching file as it grows, through rotation and truncation."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.options = source.options
        self.log = source.log
        self.files: dict[tuple[int, int], _Open] = {}
        self._turn = 0

    # -- lifecycle

    async def open(self, position: Any | None) -> None:
        source = self.source
        entries = await source.listing(force=True)
        if position is None:
            for entry in entries:
                if entry.matches:
                    await self._follow(entry, from_end=self.options.initial == "end")
            return
        saved = [
            [position["file"]["dev"], position["file"]["ino"], position["file"]["name"],
             position["offset"], position["line"]],
            *(position.get("others") or ()),
        ]  # fmt: skip
        for dev, ino, name, offset, line in saved:
            found = _find(entries, dev, ino, name)
            if found is None:
                self.log.warning(
                    "file %s (inode %s), followed up to byte %d before the restart, is gone",
                    name,
                    ino,
                    offset,
                )
                continue
            if found.size < offset:
                self.log.warning(
                    "file %s was truncated while stopped: reading it from the start", found.name
                )
                offset = line = 0
            await self._track(found, offset, line)
        for entry in entries:
            if entry.matches and entry.key not in self.files:
                await self._follow(entry, from_end=False)

    def close(self) -> None:
        for opened in self.files.values():
            opened.close()
        self.files.clear()

    async def _follow(self, entry: Entry, *, from_end: bool) -> None:
        opened = await self._track(entry, 0, 0)
        if opened is not None and from_end:
            call = self.source.call
            offset = await call(_last_newline, opened.fd, entry.size)
            opened.cursor.offset = offset
            opened.cursor.line = await call(_count_lines, opened.fd, offset)

    async def _track(self, entry: Entry, offset: int, line: int) -> _Open | None:
        try:
            opened = await self.source.open_file(entry, offset, line)
        except OSError as exc:
            self.log.warning("cannot follow %s: %s", entry.name, exc)
            return None
        opened.rotated = not entry.matches
        self.files[entry.key] = opened
        return opened

    # -- positions

    def _positions(self, current: _Open) -> Any:
        others = [
            [o.cursor.dev, o.cursor.ino, o.cursor.name, o.cursor.offset, o.cursor.line]
            for key, o in self.files.items()
            if o is not current
        ]
        ref = current.ref

        def position(offset: int, line: int) -> dict[str, Any]:
            return {"file": ref, "offset": offset, "line": line, "others": others}

        return position

    # -- reading

    async def read(self) -> list[SourceRecord]:
        source = self.source
        if source.watch.stale or source.clock.time() >= source._next_listing:
            await self._rescan()
        if not self.files:
            await source.idle()
            return []
        order = list(self.files.values())
        polled = await source.call(_poll, [(o.fd, min(HEAD, o.cursor.offset)) for o in order])
        now = source.clock.time()
        start = self._turn % len(order)
        for step in range(len(order)):
            index = (start + step) % len(order)
            opened, (size, links, head) = order[index], polled[index]
            cursor = opened.cursor
            rewritten = head[: len(opened.head)] != opened.head
            if size < cursor.offset or rewritten:
                self.log.warning(
                    "file %s was truncated (%d bytes now, %d read%s): reading it from the start",
                    cursor.name,
                    size,
                    cursor.offset,
                    ", its start rewritten" if rewritten else "",
                )
                cursor.offset = cursor.line = 0
                cursor.overlong = None
                opened.drained = None
                opened.head = b""
            elif len(head) > len(opened.head):
                opened.head = head
            if links == 0:
                opened.rotated = True
            drained = opened.drained
            if opened.rotated and drained is not None and drained[0] == size:
                if now - drained[1] >= ROTATED_GRACE:
                    self._turn = index + 1
                    records = await self._finish(opened)
                    if records:
                        return records
                continue
            if size > cursor.offset:
                self._turn = index + 1
                records, at_end, _ = await source.read_file(
                    opened, self._positions(opened), complete=False
                )
                if opened.rotated:
                    opened.drained = (size, now) if at_end else None
                if records:
                    return records
            elif opened.rotated:
                opened.drained = (size, now)
        await source.idle()
        return []

    async def _finish(self, opened: _Open) -> list[SourceRecord]:
        """A rotated file that stopped growing: its last line (without newline) if any,
        then it is dropped."""
        records, _, _ = await self.source.read_file(opened, self._positions(opened), complete=True)
        self.files.pop(opened.cursor.key, None)
        opened.close()
        self.log.info("stopped following rotated file %s", opened.cursor.name)
        return records

    async def _rescan(self) -> None:
        """Notice new files, renames (rotation) and removals."""
        entries = await self.source.listing()
        by_key = {entry.key: entry for entry in entries}
        for key, opened in self.files.items():
            entry = by_key.get(key)
            if entry is None:
                opened.rotated = True  # removed (still readable through our descriptor)
                continue
            if entry.name != opened.cursor.name:
                self.log.info("file %s was renamed to %s", opened.cursor.name, entry.name)
                opened.rename(entry.name)
            opened.rotated = not entry.matches
        for entry in entries:
            if entry.matches and entry.key not in self.files:
                self.log.info("following new file %s", entry.name)
                await self._follow(entry, from_end=False)

    async def ack(self, position: Any) -> None:
        return None
