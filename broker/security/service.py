"""The broker's security in one object: users, ACLs, the authorizer and SASL authentication.

:class:`Security` is built once by ``Broker`` from its config and handed to the
handlers through ``BrokerState.security``. It knows nothing of the codec: the SASL
handlers (``handlers/sasl.py``) call :meth:`Security.handshake` and
:meth:`Security.authenticate` with the bytes of the requests, the ACL and SCRAM
handlers use :attr:`Security.acls` and :attr:`Security.users`, and every other handler
asks :attr:`Security.authorizer` (None when ACLs are not enforced).

Authentication, per mechanism:

- PLAIN: one message, the password checked against the user's stored SCRAM
  credential (a PBKDF2 derivation, run in a worker thread);
- SCRAM-SHA-256/512: two round trips (:class:`~.scram.ScramExchange`);
- OAUTHBEARER: one message, a JWT checked by :class:`~.mechanisms.TokenValidator`;
  the session ends when the token expires.

A failure is recorded (:class:`~.failures.AuthFailures`: logged without the secret,
and answered only after a delay that grows with the host's recent failures).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..listeners import OAuthBearerSettings
from .acls import AclStore
from .authorizer import ANONYMOUS, Authorizer
from .errors import SaslAuthenticationFailed, UnsupportedSaslMechanism
from .failures import AuthFailures
from .mechanisms import TokenValidator, parse_oauthbearer, parse_plain
from .scram import SCRAM_MECHANISMS, ScramExchange
from .session import SaslSession
from .users import UserStore

__all__ = ["Authenticated", "Security"]


class Authenticated:
    """The result of one SaslAuthenticate step: bytes for the client, and, once the
    exchange is complete, the session lifetime in ms (0 = no limit)."""

    __slots__ = ("auth_bytes", "complete", "session_lifetime_ms")

    def __init__(self, auth_bytes: bytes, complete: bool, session_lifetime_ms: int = 0) -> None:
        self.auth_bytes = auth_bytes
        self.complete = complete
        self.session_lifetime_ms = session_lifetime_ms


class Security:
    """Users, ACLs and SASL for one broker (see the module docstring).

    ``mechanisms`` are the SASL mechanisms offered; ``session_lifetime_ms`` (0 = no
    limit) is Kafka's ``connections.max.reauth.ms``; ``authorize`` turns ACL checks on;
    ``clock`` gives epoch seconds (session expiry, token checks).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        mechanisms: Sequence[str] = ("SCRAM-SHA-256", "SCRAM-SHA-512"),
        super_users: Sequence[str] = (),
        authorize: bool = False,
        session_lifetime_ms: int = 0,
        auth_failure_delay_ms: int = 100,
        oauthbearer: OAuthBearerSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mechanisms = tuple(mechanisms)
        self.users = UserStore.in_data_dir(data_dir)
        self.acls = AclStore.in_data_dir(data_dir)
        self.authorizer = Authorizer(self.acls, super_users) if authorize else None
        self.session_lifetime_ms = session_lifetime_ms
        self.clock = clock
        self.failures = AuthFailures(auth_failure_delay_ms / 1000)
        self.tokens = TokenValidator(oauthbearer, clock) if oauthbearer is not None else None
        self._fake_key = secrets.token_bytes(32)
        self.authentications = 0
        """How many SASL authentications succeeded (re-authentications included)."""
        self.reauthentications = 0

    def new_session(self, sasl: bool, certificate_principal: str | None) -> SaslSession:
        """The session of a new connection (SASL listener or not)."""
        return SaslSession(sasl, certificate_principal or ANONYMOUS)

    def handshake(self, session: SaslSession, mechanism: str) -> None:
        """SaslHandshake: pick the mechanism (the same again when re-authenticating)."""
        if mechanism not in self.mechanisms:
            session.move("failure")
            raise UnsupportedSaslMechanism(
                f"SASL mechanism {mechanism!r} is not enabled "
                f"(enabled: {', '.join(self.mechanisms)})"
            )
        if session.authenticated and mechanism != session.mechanism:
            session.move("failure")
            raise UnsupportedSaslMechanism(
                f"re-authentication must use {session.mechanism} (got {mechanism})"
            )
        session.move("handshake")
        session.mechanism = mechanism
        session.exchange = None

    async def authenticate(
        self, session: SaslSession, auth_bytes: bytes, peer: str, host: str
    ) -> Authenticated:
        """One SaslAuthenticate step. On failure: logged, delayed, then
        SaslAuthenticationFailed (the session is FAILED; the connection closes)."""
        mechanism = session.mechanism or "?"
        try:
            return await self._step(session, mechanism, auth_bytes)
        except SaslAuthenticationFailed as exc:
            user = session.user
            if user is None and isinstance(session.exchange, ScramExchange):
                user = session.exchange.user
            session.move("failure")
            delay = self.failures.record(peer, host, mechanism, user, str(exc))
            if delay:
                await asyncio.sleep(delay)
            raise SaslAuthenticationFailed(
                f"Authentication failed during authentication due to invalid credentials "
                f"with SASL mechanism {mechanism}"
            ) from None

    async def _step(self, session: SaslSession, mechanism: str, data: bytes) -> Authenticated:
        if mechanism == "PLAIN":
            message = parse_plain(data)
            if not await asyncio.to_thread(
                self.users.check_password, message.user, message.password
            ):
                session.user = message.user
                raise SaslAuthenticationFailed("invalid credentials")
            return self._complete(session, message.user, f"User:{message.user}", None)
        if mechanism in SCRAM_MECHANISMS:
            exchange = session.exchange
            if exchange is None:
                exchange = session.exchange = ScramExchange(
                    mechanism,
                    lambda user: self.users.credential(user, mechanism),
                    self._fake_key,
                )
            answer = exchange.step(data)
            if not exchange.complete:
                return Authenticated(answer, False)
            user = exchange.user
            assert user is not None
            done = self._complete(session, user, f"User:{user}", None)
            done.auth_bytes = answer
            return done
        if mechanism == "OAUTHBEARER" and self.tokens is not None:
            token = self.tokens.validate(parse_oauthbearer(data))
            return self._complete(
                session, token.principal.removeprefix("User:"), token.principal, token.expires_at
            )
        raise SaslAuthenticationFailed(f"mechanism {mechanism} is not available")

    def _complete(
        self, session: SaslSession, user: str, principal: str, expires_at: float | None
    ) -> Authenticated:
        reauthenticating = session.authenticated
        if reauthenticating and principal != session.principal:
            session.user = user
            raise SaslAuthenticationFailed(
                f"re-authentication as {principal} on a connection of {session.principal}"
            )
        now = self.clock()
        if self.session_lifetime_ms:
            limit = now + self.session_lifetime_ms / 1000
            expires_at = limit if expires_at is None else min(expires_at, limit)
        session.move("success")
        session.user = user
        session.principal = principal
        session.exchange = None
        session.expires_at = expires_at
        self.authentications += 1
        if reauthenticating:
            self.reauthentications += 1
        lifetime = 0 if expires_at is None else max(1, round((expires_at - now) * 1000))
        return Authenticated(b"", True, lifetime)
