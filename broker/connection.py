"""What one client connection is to the handlers: :class:`Connection` and :class:`CloseConnection`.

Below both the server (which creates a ``Connection`` per socket and closes it on
``CloseConnection``) and the handlers (which read and raise them), so neither
layer imports the other: the dispatcher (``handlers.dispatch``) is handed to the
server as a plain callable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CloseConnection", "Connection", "WatchableEvent"]


class WatchableEvent(asyncio.Event):
    """An :class:`asyncio.Event` that also runs plain callbacks when it is set.

    Long polls (Fetch) wake on it through :meth:`watch` without a task per poll:
    a callback costs a set insertion and removal, a ``wait()`` task a loop round
    or two.
    """

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: set[Callable[[], None]] = set()

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()

    def watch(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once when the event is set (at once if it already is)."""
        if self.is_set():
            callback()
        else:
            self._callbacks.add(callback)

    def unwatch(self, callback: Callable[[], None]) -> None:
        """Forget ``callback`` (no error when it was not watching)."""
        self._callbacks.discard(callback)


class CloseConnection(Exception):
    """Raised by a dispatch when no response can be built: the server closes the connection.

    The message says why; the server logs it at WARNING with the peer and API key.
    """


@dataclass(slots=True)
class Connection:
    """Per-connection state handed to the dispatcher with every frame.

    ``produce_lane`` serialises the append phase of Produce requests of this
    connection so pipelined idempotent batches are appended in request order.
    ``attributes`` is free per-connection storage for handlers (e.g. SASL state).
    ``closing`` is set when the connection goes away (long polls stop waiting).
    ``listener`` and ``security_protocol`` name the listener it came through;
    ``peer_certificate`` is the verified TLS client certificate (``getpeercert()``),
    if any. ``close_after_correlation_id``: the server closes the connection once the
    response to that request is written (a failed authentication).
    """

    id: int
    peer: str
    produce_lane: asyncio.Lock = field(default_factory=asyncio.Lock)
    attributes: dict[str, Any] = field(default_factory=dict)
    closing: WatchableEvent = field(default_factory=WatchableEvent)
    listener: str = "PLAINTEXT"
    security_protocol: str = "PLAINTEXT"
    peer_certificate: dict[str, Any] | None = None
    close_after_correlation_id: int | None = None

    @property
    def host(self) -> str:
        """The client's address without the port (``[...]`` stripped from IPv6)."""
        return self.peer.rsplit(":", 1)[0].strip("[]")
