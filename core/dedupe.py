"""A durable dedupe window: keys remembered for a while, across restarts and crashes.

Part of the connector SDK (:mod:`backbone.sdk`), for push sources that must
recognise a delivery they already stored (a webhook's ``X-GitHub-Delivery``, an
``Idempotency-Key``) and answer with the first result instead of storing it again.

:meth:`DedupeWindow.once` runs ``produce()`` for a key the window does not know,
remembers ``key -> result`` durably *before* returning, and for a key it knows
(within ``window`` seconds) returns the first result without calling ``produce``.
Concurrent calls with one key run ``produce`` once; the others wait for it (and
get its error if it failed; nothing is remembered then).

On disk (``<folder>/<name>.log``, in the connector's state folder): one JSON line
per key, ``[added_unix_seconds, key, result]``, appended and fsynced with group
commit (one fsync for every ``once`` waiting on it, in a worker thread). Crash
rule: a torn last line (no newline, or not JSON) is cut on open; everything before
it is kept. So a key whose ``once`` returned survives any crash; a key whose
``once`` did not return may be forgotten (its caller was not told "stored", and a
retry stores it again: at least once). Entries older than ``window`` are dropped
on open and the file is rewritten atomically (:mod:`backbone.durable`) when
expired lines outnumber live ones. The file is locked (``flock``) while open; a
second process on the same state folder (several gateways started from one
config on one machine) writes ``<name>.1.log`` and so on, and every process reads
all of them at open: a delivery stored by one is known to the others after their
next start (while they all run, each knows its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from backbone.durable import write_file_atomically
from backbone.errors import FatalError, RetriableError

__all__ = ["DedupeWindow"]

T = TypeVar("T")
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_MIN_REWRITE = 1000
_SLOTS = 64


class DedupeWindow:
    """Keys remembered for ``window`` seconds, durably (see the module docstring).

    ``clock`` returns Unix seconds (a seam for tests). Use as ``async with`` or call
    :meth:`open` and :meth:`close`.
    """

    def __init__(
        self,
        folder: Path,
        *,
        window: float,
        name: str = "dedupe",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self.path = Path(folder) / f"{name}.log"
        self.window = window
        self.clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}
        self._lines = 0
        self._fd: int | None = None
        self._buffer: list[bytes] = []
        self._buffered: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def __aenter__(self) -> DedupeWindow:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __len__(self) -> int:
        return len(self._entries)

    async def open(self) -> None:
        """Load the log (dropping expired entries and a torn tail) and lock it."""
        await asyncio.to_thread(self._load)
        self._writer = asyncio.create_task(self._write_loop(), name=f"dedupe:{self.path}")

    def _load(self) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(_SLOTS):
            path = folder / (f"{self._name}.log" if slot == 0 else f"{self._name}.{slot}.log")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another live process writes this one
                continue
            self.path, self._fd = path, fd
            break
        else:
            raise FatalError(
                f"{_SLOTS} processes already use the dedupe logs in {folder}; give each "
                "gateway its own runtime.state_dir"
            )
        horizon = self.clock() - self.window
        for other in sorted(folder.glob(f"{self._name}.*log")):
            if other != self.path and other.name.count(".") <= 2:
                self._read(other.read_bytes(), horizon)  # read only: its owner may append
        data = self.path.read_bytes()
        good, self._lines = self._read(data, horizon)
        if good != len(data) or self._lines > max(2 * len(self._entries), _MIN_REWRITE):
            self._rewrite(list(self._entries.items()))

    def _read(self, data: bytes, horizon: float) -> tuple[int, int]:
        """Fold the log ``data`` into the window; (bytes of whole good lines, lines)."""
        cut = data.rfind(b"\n") + 1
        lines = data[:cut].split(b"\n")[:-1] if cut else []
        good = 0
        for line in lines:
            try:
                added, key, value = json.loads(line)
            except (ValueError, TypeError):
                break  # a damaged line: keep what came before it
            good += len(line) + 1
            if added > horizon and self._entries.get(key, (-1.0,))[0] < added:
                self._entries.pop(key, None)
                self._entries[key] = (added, value)
        return good, len(lines)

    def _rewrite(self, items: list[tuple[str, tuple[float, Any]]]) -> None:
        """Replace the log with ``items`` (atomic; the lock moves to the new file)."""
        data = b"".join(
            _JSON([added, key, value]).encode() + b"\n" for key, (added, value) in items
        )
        write_file_atomically(self.path, data)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._lines = len(items)

    def get(self, key: str, default: Any = None) -> Any:
        """The result remembered for ``key`` within the window, or ``default``."""
        found = self._entries.get(key)
        if found is None or found[0] <= self.clock() - self.window:
            return default
        return found[1]

    async def once(self, key: str, produce: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, True)`` after running ``produce`` and remembering its result durably,
        or ``(first result, False)`` for a key seen within the window."""
        missing = object()
        found = self.get(key, missing)
        if found is not missing:
            return found, False
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await produce()
            await self.add(key, result)
        except BaseException as exc:
            error = exc
            if isinstance(exc, asyncio.CancelledError):
                error = RetriableError("the first delivery with this id was abandoned; try again")
            future.set_exception(error)
            future.exception()  # retrieved: nobody may be waiting
            raise
        else:
            future.set_result(result)
            return result, True
        finally:
            del self._inflight[key]

    async def add(self, key: str, value: Any) -> None:
        """Remember ``key -> value`` (JSON-able); returns once it is on disk (fsynced)."""
        if self._writer is None or self._writer.done():
            raise RuntimeError("the dedupe window is not open")
        added = self.clock()
        self._entries.pop(key, None)
        self._entries[key] = (added, value)
        self._expire(added)
        self._buffer.append(_JSON([added, key, value]).encode() + b"\n")
        if self._buffered is None:
            self._buffered = asyncio.get_running_loop().create_future()
        waiter = self._buffered
        self._wake.set()
        try:
            await asyncio.shield(waiter)
        except Exception:
            if self._entries.get(key, (None,))[0] == added:
                del self._entries[key]  # not on disk: not remembered
            raise

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._entries:
            first = next(iter(self._entries))
            if self._entries[first][0] > horizon:
                break
            del self._entries[first]

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                data, self._buffer = b"".join(self._buffer), []
                waiter, self._buffered = self._buffered, None
                assert waiter is not None
                try:
                    await asyncio.to_thread(self._append, data, data.count(b"\n"))
                except Exception as exc:
                    if not waiter.done():
                        waiter.set_exception(
                            RetriableError(f"cannot write the dedupe log {self.path}: {exc}")
                        )
                        waiter.exception()
                    continue
                if not waiter.done():
                    waiter.set_result(None)
                if self._lines > max(2 * len(self._entries), _MIN_REWRITE * 10):
                    # compaction; adds meanwhile wait in the buffer for the new file
                    snapshot = list(self._entries.items())
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(self._rewrite, snapshot)

    def _append(self, data: bytes, lines: int) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self._lines += lines

    async def close(self) -> None:
        """Flush what is buffered, stop the writer, unlock; idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            if self._buffered is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._buffered)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
