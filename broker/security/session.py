"""The SASL state of one connection, written as data: a state enum, a transition table
and the requests each state admits.

On a SASL listener a connection starts NEW and must authenticate before anything
else (Kafka's SaslServerAuthenticator)::

    state             admits                               event      -> next
    NEW               ApiVersions, SaslHandshake           handshake  -> AUTHENTICATING
    AUTHENTICATING    SaslAuthenticate                     success    -> AUTHENTICATED
                                                           failure    -> FAILED
    AUTHENTICATED     everything but SaslAuthenticate      handshake  -> REAUTHENTICATING
                      (once the session expired: only ApiVersions and SaslHandshake)
    REAUTHENTICATING  SaslAuthenticate; the rest while     success    -> AUTHENTICATED
                      the old session has not expired      failure    -> FAILED
    FAILED            nothing (the connection is closing)

A connection on a PLAINTEXT or SSL listener is OPEN: every request but the SASL
ones, with the principal ``User:ANONYMOUS`` or, with a client certificate,
``User:<subject DN>``. A request a state does not admit closes the connection
(:meth:`SaslSession.admit` raises IllegalSaslState). Re-authentication (KIP-368) must
keep the mechanism and the principal.
"""

from __future__ import annotations

import enum
from typing import Any

from .authorizer import ANONYMOUS
from .errors import IllegalSaslState

__all__ = ["API_VERSIONS", "SASL_AUTHENTICATE", "SASL_HANDSHAKE", "SaslSession", "SaslState"]

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36


class SaslState(enum.Enum):
    OPEN = "open"
    NEW = "new"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    REAUTHENTICATING = "reauthenticating"
    FAILED = "failed"


_TRANSITIONS: dict[tuple[SaslState, str], SaslState] = {
    (SaslState.NEW, "handshake"): SaslState.AUTHENTICATING,
    (SaslState.NEW, "failure"): SaslState.FAILED,
    (SaslState.AUTHENTICATING, "success"): SaslState.AUTHENTICATED,
    (SaslState.AUTHENTICATING, "failure"): SaslState.FAILED,
    (SaslState.AUTHENTICATED, "handshake"): SaslState.REAUTHENTICATING,
    (SaslState.AUTHENTICATED, "failure"): SaslState.FAILED,
    (SaslState.REAUTHENTICATING, "success"): SaslState.AUTHENTICATED,
    (SaslState.REAUTHENTICATING, "failure"): SaslState.FAILED,
}

_ONLY: dict[SaslState, frozenset[int]] = {
    SaslState.NEW: frozenset({API_VERSIONS, SASL_HANDSHAKE}),
    SaslState.AUTHENTICATING: frozenset({SASL_AUTHENTICATE}),
    SaslState.FAILED: frozenset(),
}
_EXPIRED = frozenset({API_VERSIONS, SASL_HANDSHAKE})
_SASL = frozenset({SASL_HANDSHAKE, SASL_AUTHENTICATE})


class SaslSession:
    """Who a connection is and what it may send next (see the module docstring).

    ``principal`` is what the authorizer sees; ``expires_at`` (clock seconds, None =
    never) ends an authenticated session; ``exchange`` is the mechanism's state
    between SaslAuthenticate round trips.
    """

    __slots__ = ("exchange", "expires_at", "mechanism", "principal", "state", "user")

    def __init__(self, sasl: bool, principal: str = ANONYMOUS) -> None:
        self.state = SaslState.NEW if sasl else SaslState.OPEN
        self.principal = principal
        self.user: str | None = None
        self.mechanism: str | None = None
        self.exchange: Any = None
        self.expires_at: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.state in (SaslState.AUTHENTICATED, SaslState.REAUTHENTICATING)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def admit(self, api_key: int, api_name: str, now: float) -> None:
        """Raise IllegalSaslState when this request may not be sent now."""
        state = self.state
        if state == SaslState.OPEN:
            return  # SASL requests on a non-SASL listener are answered with an error
        only = _ONLY.get(state)
        if only is not None:
            if api_key not in only:
                raise IllegalSaslState(f"{api_name} is not allowed {_WHEN[state]} (SASL listener)")
            return
        if api_key == SASL_AUTHENTICATE and state == SaslState.AUTHENTICATED:
            raise IllegalSaslState("SaslAuthenticate without a SaslHandshake first")
        if api_key not in _SASL and api_key != API_VERSIONS and self.expired(now):
            raise IllegalSaslState(
                f"{api_name} after the SASL session expired (re-authenticate first, KIP-368)"
            )

    def move(self, event: str) -> None:
        """Apply ``event`` (handshake, success, failure); an illegal one raises."""
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalSaslState(f"{event} is not allowed while {self.state.value}") from None


_WHEN = {
    SaslState.NEW: "before SASL authentication",
    SaslState.AUTHENTICATING: "during SASL authentication",
    SaslState.FAILED: "after a failed SASL authentication",
}
