"""Durable file writes: the one atomic-replace implementation of the whole package.

A leaf module (standard library only) shared by the broker (indexes, checkpoints,
producer state), the gateway runtime and connectors (through :mod:`backbone.sdk`).

:func:`write_file_atomically` writes ``data`` to ``<name>.tmp`` in the same folder,
fsyncs it, renames it over ``path`` (atomic on POSIX) and fsyncs the folder, so a
crash at any point leaves either the old file or the new one, never a mix, and the
new name survives a power loss once the call returned.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_file_atomically"]


def write_file_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync the folder.

    ``fsync=False`` keeps the atomic rename but skips both fsyncs (for files that
    are rebuilt from other durable data after a crash, e.g. sparse indexes).
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """fsync a folder so that created, renamed or removed entries in it are durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
