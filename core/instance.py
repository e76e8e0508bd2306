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

A static member does not leave its group when its gateway stops (that is the point),
so a stopped gateway's sinks stay members until their session times out, counted from
when the broker last heard of them (a restarted embedded broker starts counting again).
:func:`stopped_instances` names the slots of this state folder that no process holds:
commands that move a group's offsets with the gateway stopped (``backbone replay``,
``backbone groups reset --config``) remove those members at once
(:func:`backbone.clients.remove_static_member`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["instance_slot", "stopped_instances"]

_MAX_SLOTS = 1024


def _prefix(state_dir: Path) -> str:
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"{host}-{digest}"


def stopped_instances(state_dir: Path) -> list[str]:
    """Instance ids of ``state_dir``'s slots that no process holds now (stopped gateways)."""
    folder = state_dir / "instances"
    if not folder.is_dir():
        return []
    prefix = _prefix(state_dir)
    stopped = []
    for slot in range(_MAX_SLOTS):
        path = folder / f"slot-{slot}.lock"
        if not path.exists():
            break
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running gateway holds it
        finally:
            os.close(fd)  # releases a lock taken here
        stopped.append(f"{prefix}-{slot}")
    return stopped


@contextlib.contextmanager
def instance_slot(state_dir: Path) -> Iterator[str]:
    """Hold this process's slot in ``state_dir`` for the block; yields its instance id."""
    folder = state_dir / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = _prefix(state_dir)
    for slot in range(_MAX_SLOTS):
        fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield f"{prefix}-{slot}"
        finally:
            os.close(fd)  # releases the lock
        return
    raise RuntimeError(f"more than {_MAX_SLOTS} gateway processes hold slots in {folder}")
