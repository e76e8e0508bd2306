"""TLS on a listener: the server-side handshake before the Kafka framing protocol, with
failed handshakes reported.

asyncio's ``create_server(ssl=...)`` hides a failed handshake (an untrusted, expired
or missing client certificate; a client speaking plain TCP to a TLS port): nothing
is logged and the application never hears of it. So a TLS listener accepts plain
TCP with :class:`TlsAcceptor`, which wraps the connection in asyncio's own
``SSLProtocol`` — what ``create_server(ssl=...)`` does, with the framing protocol's
``connection_made`` called the moment the handshake completes, before any request
is read — and watches the handshake's outcome: a failure closes the socket and is
reported to ``on_failure(peer, what failed)`` (the broker logs it, rate-limited); a
peer that just goes away during the handshake is logged at DEBUG only.
Used by ``server.py``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable

__all__ = ["TlsAcceptor", "TlsFailure", "describe_tls_failure"]

logger = logging.getLogger(__name__)

TlsFailure = Callable[[str, str], None]
"""Called with (peer ``host:port``, what failed) when a TLS handshake fails."""


#: OpenSSL's reasons for a first record that is not TLS: what a client sends when it
#: speaks plain Kafka (a size prefix) or HTTP to a TLS port.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})

#: The ends of the alerts a client sends when it does not accept the broker's certificate.
_REFUSED_CERTIFICATE = (
    "CERTIFICATE_EXPIRED",
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
    "CERTIFICATE_UNKNOWN",
)


def describe_tls_failure(exc: ssl.SSLError) -> str:
    """OpenSSL's reason for a failed server-side handshake, with what it usually means."""
    reason = getattr(exc, "reason", None) or str(exc)
    if reason in _NOT_TLS:
        return (
            f"{reason}: the client does not speak TLS "
            "(its security.protocol is PLAINTEXT or SASL_PLAINTEXT?)"
        )
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return f"{reason}: the listener requires a client certificate (mutual TLS)"
    if reason.endswith(_REFUSED_CERTIFICATE) and "_ALERT_" in reason:
        return f"{reason}: the client refused the broker's certificate"
    if reason in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"):
        return f"{reason}: the client offers only TLS versions below 1.2"
    return reason


class TlsAcceptor(asyncio.Protocol):
    """Accepts one TCP connection and hands it to an ``SSLProtocol`` around ``inner()``."""

    def __init__(
        self,
        inner: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        handshake_timeout_s: float,
        on_failure: TlsFailure,
    ) -> None:
        self._inner = inner
        self._context = context
        self._timeout = handshake_timeout_s
        self._on_failure = on_failure

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        handshake: asyncio.Future[None] = loop.create_future()
        tls = sslproto.SSLProtocol(
            loop,
            self._inner(),
            self._context,
            handshake,
            server_side=True,
            call_connection_made=True,
            ssl_handshake_timeout=max(1, round(self._timeout)),
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)

        def finished(future: asyncio.Future[None]) -> None:
            exc = None if future.cancelled() else future.exception()
            if exc is None:
                return
            transport.abort()
            if not isinstance(exc, ssl.SSLError):  # the peer went away (or timed out)
                logger.debug("connection %s closed during the TLS handshake: %r", peer, exc)
                return
            self._on_failure(peer, f"TLS handshake failed: {describe_tls_failure(exc)}")

        handshake.add_done_callback(finished)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - SSLProtocol reads
        pass
