"""TLS on a listener: the handshake done before the Kafka framing protocol takes over.

asyncio's ``create_server(ssl=...)`` hides a failed handshake (an untrusted, expired
or missing client certificate; a client speaking plain TCP to a TLS port): the
application never hears of it and nothing is logged. So a TLS listener accepts
plain TCP with :class:`TlsAcceptor`, upgrades with ``loop.start_tls`` and only then
hands the TLS transport to the framing protocol (``connection_made``), exactly as
``create_server(ssl=...)`` would; a failed handshake closes the socket and is
reported to ``on_failure(peer, error)`` (the broker logs it, rate-limited). Used by
``server.py``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

__all__ = ["TlsAcceptor", "TlsFailure"]

logger = logging.getLogger(__name__)

TlsFailure = Callable[[str, str], None]
"""Called with (peer ``host:port``, what failed) when a TLS handshake fails."""


class TlsAcceptor(asyncio.Protocol):
    """Accepts one TCP connection, runs the server-side TLS handshake, then hands over."""

    def __init__(
        self,
        inner: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        handshake_timeout_s: float,
        on_failure: TlsFailure,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._inner = inner
        self._context = context
        self._timeout = handshake_timeout_s
        self._on_failure = on_failure
        self._tasks = tasks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        task = asyncio.get_running_loop().create_task(self._upgrade(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - start_tls reads
        pass

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        protocol = self._inner()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
            transport.abort()
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self._on_failure(peer, f"TLS handshake failed: {reason}")
            return
        except asyncio.CancelledError:
            transport.abort()
            raise
        if tls is None:  # the peer went away during the handshake
            transport.abort()
            return
        protocol.connection_made(tls)
