"""What the broker listens on and how it checks who connects: listeners, TLS, SASL settings.

Plain data (standard library only), read by :class:`~backbone.broker.config.BrokerConfig`
and, through it, by the gateway's config model. Kafka's vocabulary:

- a *listener* is one socket address with a name and a *security protocol*:
  ``PLAINTEXT`` (TCP), ``SSL`` (TLS), ``SASL_PLAINTEXT`` (SASL over TCP) or
  ``SASL_SSL`` (SASL over TLS); Metadata tells each client the advertised address
  of the listener it connected through;
- *TLS* settings are shared by every ``SSL``/``SASL_SSL`` listener: the server
  certificate and key, and a CA to check client certificates with
  (``client_auth``: ``none``, ``requested`` or ``required``: mutual TLS);
- *SASL mechanisms* ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` (checked against
  the salted credentials of ``<data_dir>/security/users.json``) and ``OAUTHBEARER``
  (a JWT checked with :class:`OAuthBearerSettings`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "CLIENT_AUTH",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "ClientAuth",
    "Listener",
    "OAuthBearerSettings",
    "SecurityProtocol",
    "TlsSettings",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = get_args(SecurityProtocol)

ClientAuth = Literal["none", "requested", "required"]
CLIENT_AUTH: tuple[ClientAuth, ...] = get_args(ClientAuth)

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Listener:
    """One socket the broker accepts clients on.

    ``port`` 0 binds any free port. ``advertised_host``/``advertised_port`` are what
    Metadata, FindCoordinator and DescribeCluster tell the clients of this listener
    (None = the listen address, and the bound port). Raises ValueError for a bad
    name or protocol.
    """

    name: str
    host: str
    port: int
    protocol: SecurityProtocol = "PLAINTEXT"
    advertised_host: str | None = None
    advertised_port: int | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"listener name {self.name!r} must start with a letter and hold only "
                "letters, digits, '_' and '-'"
            )
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"listener {self.name}: protocol must be one of {', '.join(SECURITY_PROTOCOLS)} "
                f"(got {self.protocol!r})"
            )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The TLS side of ``SSL``/``SASL_SSL`` listeners (TLS 1.2 at least).

    ``cert`` is the server certificate (PEM, chain after it), ``key`` its private key
    (``password`` when encrypted), ``ca`` the PEM bundle client certificates must
    chain to. ``client_auth``: ``none`` (no client certificate asked), ``requested``
    (checked when sent), ``required`` (mutual TLS: no valid certificate, no
    connection). A client certificate makes the principal of an ``SSL`` connection
    ``User:<subject DN>`` (RFC 2253, as Kafka writes it: ``User:CN=alice,O=Acme``).
    """

    cert: Path
    key: Path
    ca: Path | None = None
    password: str | None = None
    client_auth: ClientAuth = "none"

    def __post_init__(self) -> None:
        if self.client_auth not in CLIENT_AUTH:
            raise ValueError(
                f"tls client_auth must be none, requested or required (got {self.client_auth!r})"
            )
        if self.client_auth != "none" and self.ca is None:
            raise ValueError(f"tls client_auth {self.client_auth} needs a ca to check clients with")


@dataclass(frozen=True, slots=True)
class OAuthBearerSettings:
    """How SASL/OAUTHBEARER tokens are checked: JWTs signed by the identity provider.

    ``secret`` checks HS256/HS384/HS512 signatures (a shared secret), ``public_key``
    (a PEM file) RS256/RS384/RS512/ES256/ES384 ones; give one of them. ``issuer`` and
    ``audience``, when set, must match the token's ``iss`` and ``aud``. The principal
    is ``User:<claim>`` of ``principal_claim`` (``sub``; Azure and Okta client
    credentials tokens may want ``client_id`` or ``azp``). A token must carry ``exp``;
    the session ends when it expires (clients re-authenticate, KIP-368).
    """

    secret: str | None = None
    public_key: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    principal_claim: str = "sub"
    leeway_s: float = 30.0

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.public_key is None):
            raise ValueError("oauthbearer needs exactly one of secret or public_key")
