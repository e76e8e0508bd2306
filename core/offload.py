"""Blocking calls in a worker thread, safe against cancellation.

A thread cannot be interrupted: when the caller of ``await asyncio.to_thread(f)``
is cancelled, ``f`` keeps running, and nothing waits for it. A connector that
then goes on (the next ``read()``) or closes (disposes of its database engine,
closes its file) would race with that call behind its back.

:class:`Offload` runs one blocking call at a time and never forgets one:

- calls are serialized (an :class:`asyncio.Lock`): two tasks calling the same
  ``Offload`` run their functions one after the other, never at once;
- a cancelled caller gets ``CancelledError`` at once, but its call is kept; the
  next call, and :meth:`Offload.settle`, wait for it to finish first (its outcome
  is dropped: whoever wanted it is gone);
- :meth:`Offload.settle` is what ``close()`` awaits before releasing what the
  calls use, so nothing is used after it was released.

Use one ``Offload`` per resource the blocking calls share (a database engine, a
file handle)::

    self._call = Offload()
    rows = await self._call(query, sql, limit)   # in a thread; cancel-safe
    ...
    async def close(self) -> None:
        await self._call.settle()                # nothing runs behind our back now
        self._engine.dispose()
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["Offload"]

T = TypeVar("T")
P = ParamSpec("P")


class Offload:
    """Runs blocking calls one at a time in a worker thread (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[Any] | None = None

    async def __call__(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in a thread, after every earlier call finished."""
        async with self._lock:
            await self._settle()
            call = functools.partial(function, *args, **kwargs)
            pending: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(call))
            self._pending = pending
            try:
                return await asyncio.shield(pending)
            finally:
                if pending.done():  # else a cancelled caller left it running: keep it
                    self._pending = None

    @property
    def busy(self) -> bool:
        """Whether a call (possibly left behind by a cancelled caller) still runs."""
        return self._pending is not None and not self._pending.done()

    async def settle(self) -> None:
        """Wait until no call runs: the current one, or one a cancelled caller left behind."""
        async with self._lock:
            await self._settle()

    async def _settle(self) -> None:
        pending = self._pending
        if pending is None:
            return
        if not pending.done():
            # a cancel of this wait leaves ``_pending`` set: the next caller waits again
            await asyncio.wait({pending})
        self._pending = None
        if not pending.cancelled():
            pending.exception()  # retrieved: whoever wanted it is gone
