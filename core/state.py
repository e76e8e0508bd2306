"""Durable connector state: JSON files in the connector's private state folder.

For what a connector must remember *beside* its position (which the runtime
stores): a first-start watermark, the hashes of the last snapshot, a token
obtained once. Positions are the runtime's; never keep a cursor here that moves
on ``read()`` (a crash would then skip records): move it on ``ack()``.

:class:`StateDir` maps names to JSON values. :meth:`StateDir.write` goes through
:func:`backbone.durable.write_file_atomically` (temporary file, fsync, rename,
fsync the folder), so after a crash a file holds either its old or its new value,
never a mix, and a write that returned survives a power loss. The calls block
(fsync): call them from a worker thread (:class:`~backbone.offload.Offload`) on
a hot path; once per start they are fine on the event loop.

Every connector gets one as ``context.state`` (:class:`~backbone.sdk.ConnectorContext`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backbone.durable import fsync_dir, write_file_atomically
from backbone.errors import FatalError

__all__ = ["StateDir"]

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class StateDir:
    """JSON values by name in one folder (created on the first write)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.endswith(".tmp"):
            raise ValueError(
                f"state name {name!r} must be a plain file name (no folders, not ending in .tmp)"
            )
        return self.folder / name

    def read(self, name: str, default: Any = None) -> Any:
        """The value last written under ``name``, or ``default`` when there is none.

        A file that is not JSON (changed by hand) is a :class:`~backbone.errors.FatalError`
        naming it: the connector cannot tell what it remembered.
        """
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return default
        try:
            return json.loads(data)
        except ValueError as exc:
            raise FatalError(
                f"state file {path} is not valid JSON ({exc}); restore it or delete it to "
                "let the connector start over"
            ) from exc

    def write(self, name: str, value: Any) -> None:
        """Replace ``name`` with ``value`` (JSON), atomically and durably."""
        path = self._path(name)
        data = _JSON(value).encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, data)

    def delete(self, name: str) -> None:
        """Remove ``name`` (nothing happens if it does not exist); durable on return."""
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        fsync_dir(self.folder)

    def names(self, pattern: str = "*") -> list[str]:
        """The stored names matching the glob ``pattern``, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(
            path.name
            for path in self.folder.glob(pattern)
            if path.is_file() and not path.name.endswith(".tmp")
        )
