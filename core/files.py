"""Files that appear whole: staged writes published by rename, durable moves.

For connectors that produce or hand over files (``backbone.sdk`` re-exports these):

- :class:`StagedFile` writes under a temporary name in the target folder
  (``.<name>.tmp``); :meth:`StagedFile.publish` flushes, fsyncs, closes, renames it
  to its final name (replacing a file of that name atomically) and fsyncs the
  folder. A reader never sees half a file, and a published file survives a power
  loss. :meth:`StagedFile.discard` drops it; a crash leaves only the temporary
  file, which the next writer of the same name truncates.
- :func:`move_file` moves a file into a folder under a name not taken yet
  (``a.csv``, else ``a.1.csv``, ``a.2.csv`` ...) and fsyncs both folders; across
  file systems it copies, fsyncs and removes the original.
- :func:`fsync_dir` makes created, renamed or removed entries of a folder durable.

Everything here blocks (writes, fsync): call it through
:class:`~backbone.offload.Offload` from a connector.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from backbone.durable import fsync_dir

__all__ = ["StagedFile", "fsync_dir", "move_file"]


class StagedFile:
    """A file written under a temporary name, published under ``path`` when complete.

    ``StagedFile(path)`` creates (or truncates) the temporary file
    ``<folder>/.<name>.tmp`` at once; :attr:`temporary` names it. Writes are
    buffered; :attr:`size` counts the bytes written so far. :meth:`truncate` cuts
    the file back to an earlier :attr:`size` (undo a failed write).
    """

    def __init__(self, path: Path, *, buffering: int = 1 << 20) -> None:
        self.path = Path(path)
        self.temporary = self.path.with_name(f".{self.path.name}.tmp")
        self._file: BinaryIO | None = open(self.temporary, "wb", buffering=buffering)  # noqa: SIM115
        self.size = 0

    @property
    def closed(self) -> bool:
        """Whether the file was published or discarded."""
        return self._file is None

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        if self._file is None:
            raise ValueError(f"{self.path} was already published or discarded")
        self._file.write(data)
        self.size += len(data)

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (at most :attr:`size`)."""
        if self._file is None:
            raise ValueError(f"{self.path} was already published or discarded")
        if size > self.size:
            raise ValueError(f"cannot truncate {self.temporary} to {size} > {self.size} bytes")
        self._file.flush()
        self._file.seek(size)
        self._file.truncate(size)
        self.size = size

    def publish(self) -> Path:
        """Flush, fsync, close, rename to :attr:`path`, fsync the folder; returns :attr:`path`."""
        file = self._file
        if file is None:
            raise ValueError(f"{self.path} was already published or discarded")
        file.flush()
        os.fsync(file.fileno())
        file.close()
        self._file = None
        os.replace(self.temporary, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Close and remove the temporary file (nothing happens once closed)."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError:
            pass  # unwritten buffered data: it is being thrown away anyway
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    if not os.path.lexists(target):
        return target
    stem, dot, suffix = name.partition(".")
    for n in range(1, 1_000_000):
        candidate = folder / (f"{stem}.{n}{dot}{suffix}" if dot else f"{name}.{n}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {name} in {folder}")


def move_file(source: Path, folder: Path, *, name: str | None = None) -> Path:
    """Move ``source`` into ``folder`` (as ``name``, default its own) without replacing a
    file there: a taken name gets a number (``a.1.csv``). Both folders are fsynced.
    Returns the new path."""
    source = Path(source)
    target = _free_name(Path(folder), name or source.name)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with open(source, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        fsync_dir(target.parent)
        os.unlink(source)
        fsync_dir(source.parent)
        return target
    fsync_dir(target.parent)
    if target.parent != source.parent:
        fsync_dir(source.parent)
    return target
