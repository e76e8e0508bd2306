"""SaslHandshake and SaslAuthenticate, and the SASL gate every request passes first.

:func:`admit` is called by the dispatcher for every request before its handler is
looked up: it gives a new connection its :class:`~..security.SaslSession` (on a SASL
listener it must authenticate first; on an SSL listener a client certificate names
its principal) and closes the connection (CloseConnection) when the session's state
does not admit the request: before authenticating, only ApiVersions, SaslHandshake
and SaslAuthenticate get through (see ``security/session.py``).

SaslHandshake v0-1 picks the mechanism. After v1 the mechanism's messages travel in
SaslAuthenticate v0-2 requests; v1+ answers carry the session lifetime (KIP-368: the
client re-authenticates before it ends, with a SaslHandshake and SaslAuthenticate
on the same connection). After v0 (Kafka 0.10's clients; librdkafka also wants v0
advertised) they travel as raw size-prefixed tokens without a Kafka header, each
answered the same way (:func:`raw_token`). A failed authentication is answered
(after the failure delay) and then the connection is closed; a failed raw token
just closes it.
"""

from __future__ import annotations

import logging
import struct

from ..connection import CloseConnection, Connection
from ..protocol import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from ..security import SaslAuthenticationFailed, SaslState
from ..security.errors import IllegalSaslState, UnsupportedSaslMechanism
from ..security.tls import certificate_principal
from .base import BrokerState, Handler, RequestContext

__all__ = ["HANDLERS", "RAW_TOKENS", "admit", "raw_token"]

logger = logging.getLogger(__name__)


def admit(state: BrokerState, connection: Connection, api_key: int, api_name: str) -> None:
    """The SASL gate (see the module docstring); raises CloseConnection."""
    security = state.security
    if security is None:
        return
    session = connection.attributes.get("sasl")
    if session is None:
        protocol = connection.security_protocol
        principal = (
            certificate_principal(connection.peer_certificate) if protocol == "SSL" else None
        )
        session = security.new_session(protocol.startswith("SASL"), principal)
        connection.attributes["sasl"] = session
    try:
        session.admit(api_key, api_name, state.clock())
    except IllegalSaslState as exc:
        raise CloseConnection(str(exc)) from None


RAW_TOKENS = "sasl_raw"
"""Connection attribute set while SASL tokens travel without a Kafka header (v0)."""


async def raw_token(state: BrokerState, connection: Connection, frame: memoryview) -> list[bytes]:
    """One raw SASL token after SaslHandshake v0: the answer, size-prefixed.
    Raises CloseConnection when the authentication fails."""
    security = state.security
    session = connection.attributes.get("sasl")
    assert security is not None and session is not None  # set by the v0 handshake
    try:
        result = await security.authenticate(
            session, bytes(frame), connection.peer, connection.host
        )
    except SaslAuthenticationFailed as exc:
        raise CloseConnection(f"{exc} (SASL tokens after SaslHandshake v0)") from None
    if result.complete:
        del connection.attributes[RAW_TOKENS]
    return [struct.pack(">i", len(result.auth_bytes)), result.auth_bytes]


def _close_after(ctx: RequestContext) -> None:
    ctx.connection.close_after_correlation_id = ctx.header.correlation_id


async def handle_sasl_handshake(
    ctx: RequestContext, request: SaslHandshakeRequest
) -> SaslHandshakeResponse:
    """SaslHandshake v0-1: the mechanism for the following tokens (v0) or SaslAuthenticate
    requests (v1)."""
    security, session = ctx.state.security, ctx.session
    if security is None or session is None or session.state == SaslState.OPEN:
        return SaslHandshakeResponse(error_code=IllegalSaslState.code, mechanisms=[])
    mechanisms = list(security.mechanisms)
    try:
        security.handshake(session, request.mechanism)
    except (UnsupportedSaslMechanism, IllegalSaslState) as exc:
        logger.warning("connection %s: SaslHandshake refused: %s", ctx.peer, exc)
        _close_after(ctx)
        return SaslHandshakeResponse(error_code=exc.code, mechanisms=mechanisms)
    if ctx.api_version == 0:
        ctx.connection.attributes[RAW_TOKENS] = True
    return SaslHandshakeResponse(error_code=0, mechanisms=mechanisms)


async def handle_sasl_authenticate(
    ctx: RequestContext, request: SaslAuthenticateRequest
) -> SaslAuthenticateResponse:
    """SaslAuthenticate v0-2: one step of the mechanism's exchange."""
    security, session = ctx.state.security, ctx.session
    if (
        security is None
        or session is None
        or session.state not in (SaslState.AUTHENTICATING, SaslState.REAUTHENTICATING)
    ):
        _close_after(ctx)
        return SaslAuthenticateResponse(
            error_code=IllegalSaslState.code,
            error_message="SaslAuthenticate without a SaslHandshake first",
            auth_bytes=b"",
        )
    reauthenticating = session.state == SaslState.REAUTHENTICATING
    try:
        result = await security.authenticate(
            session, request.auth_bytes, ctx.peer, ctx.connection.host
        )
    except SaslAuthenticationFailed as exc:
        _close_after(ctx)
        return SaslAuthenticateResponse(
            error_code=exc.code, error_message=str(exc), auth_bytes=b"", session_lifetime_ms=0
        )
    if result.complete:
        logger.debug(
            "connection %s %sauthenticated as %s (%s)",
            ctx.peer,
            "re-" if reauthenticating else "",
            session.principal,
            session.mechanism,
        )
    return SaslAuthenticateResponse(
        error_code=0,
        error_message=None,
        auth_bytes=result.auth_bytes,
        session_lifetime_ms=result.session_lifetime_ms,
    )


HANDLERS = (
    Handler(SaslHandshakeRequest, SaslHandshakeResponse, handle_sasl_handshake, 0, 1),
    Handler(SaslAuthenticateRequest, SaslAuthenticateResponse, handle_sasl_authenticate, 0, 2),
)
