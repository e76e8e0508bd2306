"""A stable identity for this gateway process, for static group membership.

Sinks and processors consume through consumer groups. A ``backbone run`` that is killed
and restarted would normally rejoin as a new member and wait for the dead one's session
to expire (``runtime.session_timeout``, 10 s) before getting its partitions back. With
static membership (KIP-345, ``group.instance.id``) a restarted process that presents the
same instance id replaces its old member at once and keeps its assignment.

The id must be the same across restarts of one process and differ between processes
of the same gateway (several ``backbone run`` may share one config folder). So each
process takes the lowest free *slot* ``n``: an exclusive ``flock`` on
``<state_dir>/instances/slot-<n>.lock``, held until the process exits (the kernel
releases it when a process dies, so a restarted process finds its slot free again).
The id is ``<host>-<folder digest>-<n>``; a consumer's ``group.instance.id`` is that id
plus ``.<connector name>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["instance_slot"]

_MAX_SLOTS = 1024


@contextlib.contextmanager
def instance_slot(state_dir: Path) -> Iterator[str]:
    """Hold this process's slot in ``state_dir`` for the block; yields its instance id."""
    folder = state_dir / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    for slot in range(_MAX_SLOTS):
        fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield f"{host}-{digest}-{slot}"
        finally:
            os.close(fd)  # releases the lock
        return
    raise RuntimeError(f"more than {_MAX_SLOTS} gateway processes hold slots in {folder}")
