"""The folder a file source reads: listings, and watchdog events handed to the loop.

:class:`Watch` runs a watchdog observer on the folder (inotify on Linux). Its
thread never touches the source: each event is handed to the event loop with
``loop.call_soon_threadsafe``, where it sets :attr:`Watch.changed` (wake the
reader) and, for anything but a write to a known file, marks the listing stale.
Events can be lost (inotify queue overflow) and watches can run out
(``fs.inotify.max_user_watches``): the source lists the folder again every
``rescan`` seconds regardless, and without a watch at all it just polls.

:func:`listing` is the folder's content as the source sees it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

__all__ = ["Entry", "Watch", "listing"]

_CONTENT_ONLY = frozenset({"modified", "closed", "closed_no_write", "opened"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A regular file in the folder."""

    name: str
    dev: int
    ino: int
    size: int
    mtime: float
    matches: bool
    """Whether its name matches the source's pattern (else: only known by inode)."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)


def listing(folder: Path, pattern: str) -> list[Entry]:
    """Regular files in ``folder`` (not hidden), oldest first (mtime, then name).

    Blocking (``scandir`` + ``stat``): call it through ``Offload``.
    """
    entries: list[Entry] = []
    with os.scandir(folder) as found:
        for item in found:
            if item.name.startswith("."):
                continue
            try:
                info = item.stat()
            except OSError:  # removed meanwhile
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            entries.append(
                Entry(
                    item.name,
                    info.st_dev,
                    info.st_ino,
                    info.st_size,
                    info.st_mtime,
                    fnmatch.fnmatchcase(item.name, pattern),
                )
            )
    entries.sort(key=lambda e: (e.mtime, e.name))
    return entries


class _Handler(FileSystemEventHandler):
    """Runs in watchdog's thread: hands each event to the loop, nothing else."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watch: Watch) -> None:
        self.loop = loop
        self.watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        try:
            self.loop.call_soon_threadsafe(self.watch.notify, event.event_type)
        except RuntimeError:  # the loop is closed: the source is gone
            pass


class Watch:
    """Watchdog events of one folder (see the module docstring)."""

    def __init__(self, folder: Path, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.folder = folder
        self.logger = logger
        self.changed = asyncio.Event()
        self.stale = True
        """The listing may be out of date (a file was created, moved or removed)."""
        self._observer: BaseObserver | None = None

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def start(self) -> None:
        """Start the observer; without one (watch limit reached) the source only polls."""
        observer = Observer()
        try:
            observer.schedule(_Handler(asyncio.get_running_loop(), self), str(self.folder))
            observer.start()
        except OSError as exc:
            self.logger.warning(
                "cannot watch %s for changes (%s); listing it every rescan interval instead",
                self.folder,
                exc,
            )
            return
        self._observer = observer

    def notify(self, kind: str) -> None:
        """On the loop: an event of ``kind`` happened in the folder."""
        if kind not in _CONTENT_ONLY:
            self.stale = True
        self.changed.set()

    async def wait(self, seconds: float) -> None:
        """Return after an event or ``seconds``, whichever comes first."""
        if seconds > 0 and not self.changed.is_set():
            try:
                await asyncio.wait_for(self.changed.wait(), seconds)
            except TimeoutError:
                pass
        self.changed.clear()

    async def stop(self) -> None:
        """Stop the observer and wait for its thread."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 10)
