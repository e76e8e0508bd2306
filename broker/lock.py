"""One broker per data directory: an exclusive lock on ``<data_dir>/broker.lock``.

A broker takes the lock (``flock(LOCK_EX | LOCK_NB)``, held on an open file for as
long as it runs; the kernel drops it when the process ends, also on SIGKILL)
before it opens any log, and refuses to start when another process holds it: two
brokers appending to the same segment files would corrupt them. Once listening it
writes who it is into the file, as JSON::

    {"pid": 4242, "bootstrap": "127.0.0.1:9092", "data_dir": "/srv/data"}

:func:`holder` tells a tool (``backbone topics ... --config``) whether a broker
runs on a data directory and where to reach it, without disturbing it. The file
is never deleted (deleting a locked file would let a second broker lock a new one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import BrokerError

__all__ = ["LOCK_FILE", "DataDirLock", "LockHolder", "holder"]

LOCK_FILE = "broker.lock"


@dataclass(frozen=True)
class LockHolder:
    """The broker that holds a data directory: its process id and address."""

    pid: int
    bootstrap: str


class DataDirLock:
    """The exclusive lock of one data directory (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`BrokerError` naming the process that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 1.0  # a tool's probe (holder()) holds it for an instant
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                found = _read(self.path)
                if found is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            os.close(fd)
            who = f" (pid {found.pid}, serving {found.bootstrap})" if found else ""
            raise BrokerError(
                f"the data directory {self.path.parent} is in use by another broker{who}; "
                "stop it first, or give this broker another data directory"
            ) from None
        os.ftruncate(fd, 0)
        self._fd = fd

    def announce(self, bootstrap: str) -> None:
        """Write this process's id and ``bootstrap`` into the lock file (see :func:`holder`)."""
        assert self._fd is not None, "announce() before acquire()"
        data = json.dumps(
            {"pid": os.getpid(), "bootstrap": bootstrap, "data_dir": str(self.path.parent)}
        ).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Drop the lock (idempotent); the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the flock


def _read(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_bytes())
        return LockHolder(pid=int(data["pid"]), bootstrap=str(data["bootstrap"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holder(data_dir: Path, *, wait: float = 10.0) -> LockHolder | None:
    """The broker running on ``data_dir``, or ``None`` when no process holds its lock.

    A broker that holds the lock but is still starting (it announces itself once
    listening) is waited for up to ``wait`` seconds; :class:`BrokerError` if it
    never announces.
    """
    path = Path(data_dir) / LOCK_FILE
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: a broker runs there
            else:
                return None  # nobody holds it (the lock is dropped when we close)
        finally:
            os.close(fd)
        found = _read(path)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise BrokerError(
                f"a process holds the data directory {path.parent} but did not say where it "
                f"listens within {wait:g}s ({path} is empty)"
            )
        time.sleep(0.05)
