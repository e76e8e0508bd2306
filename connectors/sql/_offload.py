"""Blocking database calls in a worker thread, safe against cancellation.

A thread cannot be interrupted: when the caller of :meth:`Offload.__call__` is
cancelled, the call keeps running. :class:`Offload` keeps it and awaits it before
the next call and in :meth:`Offload.settle` (which ``close()`` calls before
disposing of the engine), so no connection is ever used after disposal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Offload"]

T = TypeVar("T")


class Offload:
    """Runs one blocking call at a time in ``asyncio.to_thread``."""

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None

    async def __call__(self, function: Callable[..., T], *args: Any) -> T:
        await self.settle()
        pending: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(function, *args))
        self._pending = pending
        return await asyncio.shield(pending)

    async def settle(self) -> None:
        """Wait for a call left behind by a cancelled caller (its outcome is dropped)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not pending.done():
            await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved: whoever wanted it is gone
