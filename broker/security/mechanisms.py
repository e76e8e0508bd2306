"""SASL/PLAIN (RFC 4616) and SASL/OAUTHBEARER (RFC 7628) messages, and JWT checks.

PLAIN is one client message, ``authzid NUL user NUL password``; the password is
checked against the user's stored SCRAM credential (:mod:`.users`), so PLAIN and
SCRAM share one user database and no password is stored.

OAUTHBEARER is one client message, ``n,[a=authzid],^Aauth=Bearer <token>^A^A``. The
token must be a JWT (RFC 7519) signed with HS256/384/512 (shared secret) or
RS256/384/512 / ES256/384 (public key, through the ``cryptography`` package); its
``exp`` is required, ``nbf``, ``iss`` and ``aud`` are checked when present or
configured (:class:`~backbone.broker.listeners.OAuthBearerSettings`). Tokens signed
with ``alg: none`` are refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..listeners import OAuthBearerSettings
from .errors import SaslAuthenticationFailed

__all__ = ["PlainMessage", "TokenValidator", "ValidToken", "parse_oauthbearer", "parse_plain"]


@dataclass(frozen=True, slots=True)
class PlainMessage:
    user: str
    password: str


def parse_plain(message: bytes) -> PlainMessage:
    """Split a PLAIN message; the authorization id must be empty or the user (as Kafka)."""
    try:
        authzid, user, password = message.decode().split("\0")
    except (UnicodeDecodeError, ValueError):
        raise SaslAuthenticationFailed("malformed SASL/PLAIN message") from None
    if not user:
        raise SaslAuthenticationFailed("SASL/PLAIN message without a user name")
    if authzid and authzid != user:
        raise SaslAuthenticationFailed("SASL/PLAIN authorization id must be the user name")
    return PlainMessage(user, password)


def parse_oauthbearer(message: bytes) -> str:
    """The bearer token of an OAUTHBEARER client message."""
    try:
        text = message.decode()
    except UnicodeDecodeError:
        raise SaslAuthenticationFailed("malformed SASL/OAUTHBEARER message") from None
    header, sep, rest = text.partition("\x01")
    if not sep or not header.startswith(("n,", "y,")):
        raise SaslAuthenticationFailed("malformed SASL/OAUTHBEARER message")
    for pair in rest.split("\x01"):
        key, _, value = pair.partition("=")
        if key == "auth":
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise SaslAuthenticationFailed("SASL/OAUTHBEARER auth must be 'Bearer <token>'")
            return token.strip()
    raise SaslAuthenticationFailed("SASL/OAUTHBEARER message without a token")


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise SaslAuthenticationFailed("malformed token: bad base64url") from None


@dataclass(frozen=True, slots=True)
class ValidToken:
    """A checked token: its principal (``User:<claim>``) and expiry (epoch seconds)."""

    principal: str
    expires_at: float


_HMAC = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


class TokenValidator:
    """Checks OAUTHBEARER tokens (see the module docstring); ``clock`` gives epoch seconds."""

    def __init__(
        self, settings: OAuthBearerSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._public_key: Any = None
        if settings.public_key is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._public_key = load_pem_public_key(settings.public_key.read_bytes())

    def validate(self, token: str) -> ValidToken:
        """The token's principal and expiry; raises SaslAuthenticationFailed saying why."""
        parts = token.split(".")
        if len(parts) != 3:
            raise SaslAuthenticationFailed("malformed token: not a JWT")
        try:
            header = json.loads(_b64url(parts[0]))
            claims = json.loads(_b64url(parts[1]))
        except ValueError:
            raise SaslAuthenticationFailed("malformed token: bad JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise SaslAuthenticationFailed("malformed token: bad JSON")
        self._verify(str(header.get("alg")), f"{parts[0]}.{parts[1]}".encode(), _b64url(parts[2]))
        return self._check_claims(claims)

    def _verify(self, alg: str, signed: bytes, signature: bytes) -> None:
        settings = self.settings
        if alg in _HMAC and settings.secret is not None:
            expected = hmac.new(settings.secret.encode(), signed, _HMAC[alg]).digest()
            if not hmac.compare_digest(expected, signature):
                raise SaslAuthenticationFailed("invalid token signature")
            return
        if alg[:2] in ("RS", "ES") and self._public_key is not None:
            self._verify_public(alg, signed, signature)
            return
        raise SaslAuthenticationFailed(f"token algorithm {alg!r} is not accepted")

    def _verify_public(self, alg: str, signed: bytes, signature: bytes) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        digests = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
        digest = digests.get(alg[2:])
        key = self._public_key
        try:
            if alg.startswith("RS") and digest is not None and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), digest)
                return
            if (
                alg.startswith("ES")
                and digest is not None
                and isinstance(key, ec.EllipticCurvePublicKey)
            ):
                half = len(signature) // 2
                der = encode_dss_signature(
                    int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
                )
                key.verify(der, signed, ec.ECDSA(digest))
                return
        except InvalidSignature:
            raise SaslAuthenticationFailed("invalid token signature") from None
        raise SaslAuthenticationFailed(f"token algorithm {alg!r} does not fit the public key")

    def _check_claims(self, claims: dict[str, Any]) -> ValidToken:
        settings = self.settings
        now = self.clock()
        leeway = settings.leeway_s
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise SaslAuthenticationFailed("token has no exp claim")
        if exp + leeway <= now:
            raise SaslAuthenticationFailed("token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - leeway > now:
            raise SaslAuthenticationFailed("token not valid yet (nbf)")
        if settings.issuer is not None and claims.get("iss") != settings.issuer:
            raise SaslAuthenticationFailed(f"token issuer is not {settings.issuer!r}")
        if settings.audience is not None:
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if settings.audience not in audiences:
                raise SaslAuthenticationFailed(f"token audience is not {settings.audience!r}")
        subject = claims.get(settings.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise SaslAuthenticationFailed(f"token has no {settings.principal_claim} claim")
        return ValidToken(f"User:{subject}", float(exp))
