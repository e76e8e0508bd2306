"""Group commit: one background task fsyncs dirty segment files off the event loop.

PartitionLog.append (acks=-1, flush policy ``always``) writes its batches, then awaits
:meth:`Flusher.sync`. Every caller that arrives while no fsync runs joins the same round;
callers arriving while an fsync runs wait for the next round. One round = one
``asyncio.to_thread`` call that ``fdatasync``s every file marked dirty since the previous
round (and ``fsync``s folders in which segment files were created), then resolves the round's
future for all its waiters. ``rounds`` and ``fsync_calls`` count what happened (tests and
metrics observe them).

Policies (LogManager's ``flush``): ``always`` = acks=-1 waits for its round; ``interval`` =
a round every ``interval_ms`` for whatever is dirty, acks=-1 does not wait; ``os`` = the
page cache decides, rounds only on roll and close. Every policy flushes everything on close.
A failed fsync fails the round's waiters with KafkaStorageError (logged as an ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from backbone.broker.errors import KafkaStorageError

from .config import FlushPolicy

__all__ = ["Flusher"]

logger = logging.getLogger(__name__)


class Flusher:
    """Owned by LogManager; started and stopped by it."""

    def __init__(self, policy: FlushPolicy = "always", interval_ms: int = 1000) -> None:
        if policy not in ("always", "interval", "os"):
            raise ValueError(f"flush policy must be always, interval or os (got {policy!r})")
        self.policy = policy
        self.interval_ms = interval_ms
        self.rounds = 0
        self.fsync_calls = 0
        self._files: set[int] = set()
        self._dirs: set[Path] = set()
        self._round: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waits_on_acks(self) -> bool:
        """True when acks=-1 appends wait for an fsync."""
        return self.policy == "always"

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="log-flusher")

    async def stop(self) -> None:
        """Cancel the task, then flush whatever is still dirty (every policy)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush_round()

    def mark(self, fd: int) -> None:
        """Note a file as dirty; it is fsynced in the next round (no waiting)."""
        self._files.add(fd)

    def mark_dir(self, path: Path) -> None:
        """Note a folder whose entries changed (segment created)."""
        self._dirs.add(path)

    def forget(self, fd: int) -> None:
        """Drop a file that is about to be closed."""
        self._files.discard(fd)

    async def sync(self, fd: int) -> None:
        """Return once ``fd``'s data written so far is on disk (joins the next round)."""
        self._files.add(fd)
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
            self._round.add_done_callback(_consume_exception)
        fut = self._round
        if self._wake is None:  # not started (tests, shutdown): flush inline
            await self._flush_round()
        else:
            self._wake.set()
        await asyncio.shield(fut)

    async def _run(self) -> None:
        assert self._wake is not None
        periodic = self.policy == "interval"
        while True:
            if periodic:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_ms / 1000)
            else:
                await self._wake.wait()
            self._wake.clear()
            await self._flush_round()

    async def _flush_round(self) -> None:
        files, dirs, fut = self._files, self._dirs, self._round
        self._files, self._dirs, self._round = set(), set(), None
        if not files and not dirs:
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        self.rounds += 1
        self.fsync_calls += len(files) + len(dirs)
        try:
            await asyncio.to_thread(_fsync_all, files, dirs)
        except OSError as exc:
            logger.error("fsync of the log failed: %s", exc)
            if fut is not None and not fut.done():
                fut.set_exception(KafkaStorageError(f"fsync of the log failed: {exc}"))
            return
        except BaseException:
            # cancelled (shutdown): hand the round back, stop() flushes it once more
            self._files |= files
            self._dirs |= dirs
            if self._round is None:
                self._round = fut
            elif fut is not None and not fut.done():
                self._round.add_done_callback(lambda done: _chain(done, fut))
            raise
        if fut is not None and not fut.done():
            fut.set_result(None)


def _chain(done: asyncio.Future[None], fut: asyncio.Future[None]) -> None:
    if fut.done():
        return
    if done.cancelled() or done.exception() is None:
        fut.set_result(None)
    else:
        fut.set_exception(done.exception())  # type: ignore[arg-type]


def _consume_exception(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


def _fsync_all(files: set[int], dirs: set[Path]) -> None:
    for fd in files:
        try:
            os.fdatasync(fd)
        except OSError as exc:
            if exc.errno == 9:  # EBADF: the segment was deleted and closed meanwhile
                continue
            raise
    for path in dirs:
        try:
            dir_fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
