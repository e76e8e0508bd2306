"""The security parts of the config file's ``broker:`` section.

Two sides:

- ``broker.security`` (:class:`SecuritySettings`) — how the gateway's own Kafka clients
  (producer, consumers, admin, the gateway group, every CLI command) connect: the
  security protocol, TLS (CA, client certificate) and SASL (PLAIN, SCRAM-SHA-256/512,
  or OAUTHBEARER with a token fetched by the client-credentials flow). The same
  settings reach every client through :class:`backbone.clients.KafkaClients`.
- ``broker.embedded.listeners`` / ``tls`` / ``sasl`` / ``super_users``
  (:class:`ListenerSettings`, :class:`ServerTls`, :class:`ServerSasl`) — the embedded
  broker as a secured server, turned into :class:`backbone.broker.BrokerConfig` fields
  by :func:`broker_security_options`.

Secrets are ``SecretStr`` (``${VAR}`` interpolation; printed as ``**********``).
Relative file paths resolve against the config file's folder (``load_config`` makes
them absolute and checks the files exist).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from backbone.fields import HostPort
from backbone.types import Duration

__all__ = [
    "ClientSasl",
    "ClientTls",
    "ListenerSettings",
    "OAuthBearerCheck",
    "SecurityProtocol",
    "SecuritySettings",
    "ServerSasl",
    "ServerTls",
    "broker_security_options",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


# -- the gateway as a client ------------------------------------------------------


class ClientTls(_Model):
    """TLS of the gateway's connections to the brokers."""

    ca: str | None = None
    """PEM bundle of the CAs the brokers' certificates must chain to (default: the
    system's trusted CAs, which managed Kafka services use)."""
    cert: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    key: str | None = None
    """The client certificate's private key (PEM)."""
    password: SecretStr | None = None
    """Password of an encrypted ``key``."""
    verify_hostname: bool = True
    """Check that the broker's certificate names the host connected to."""

    @field_validator("ca", "cert", "key", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if value == "" else value  # "${KAFKA_CA_FILE:-}": not given

    @model_validator(mode="after")
    def _pair(self) -> ClientTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key (mutual TLS), or neither")
        return self


class ClientSasl(_Model):
    """SASL authentication of the gateway's connections."""

    mechanism: Mechanism
    """PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (username/password) or OAUTHBEARER
    (token_url, client_id, client_secret)."""
    username: str | None = None
    """User name (PLAIN, SCRAM)."""
    password: SecretStr | None = None
    """Password (PLAIN, SCRAM), e.g. ``${KAFKA_PASSWORD}``."""
    token_url: str | None = None
    """OAUTHBEARER: the identity provider's token endpoint (OAuth 2.0 client-credentials
    grant, RFC 6749 section 4.4)."""
    client_id: str | None = None
    """OAUTHBEARER: the client id sent to ``token_url``."""
    client_secret: SecretStr | None = None
    """OAUTHBEARER: the client secret sent to ``token_url`` (HTTP Basic)."""
    scope: str | None = None
    """OAUTHBEARER: the scope asked for (optional)."""

    @model_validator(mode="after")
    def _fields(self) -> ClientSasl:
        if self.mechanism == "OAUTHBEARER":
            missing = [
                n for n in ("token_url", "client_id", "client_secret") if not getattr(self, n)
            ]
            if missing:
                raise ValueError(f"OAUTHBEARER needs {', '.join(missing)}")
            if self.username is not None or self.password is not None:
                raise ValueError(
                    "OAUTHBEARER takes token_url, client_id and client_secret, not "
                    "username/password"
                )
        else:
            missing = [n for n in ("username", "password") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{self.mechanism} needs {' and '.join(missing)}")
            extra = [
                n
                for n in ("token_url", "client_id", "client_secret", "scope")
                if getattr(self, n) is not None
            ]
            if extra:
                raise ValueError(f"{', '.join(extra)}: only for OAUTHBEARER")
        return self


class SecuritySettings(_Model):
    """How the gateway's Kafka clients connect (every one of them)."""

    protocol: SecurityProtocol | None = None
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; default: SASL_SSL with ``sasl``, SSL
    with only ``tls``, else PLAINTEXT."""
    tls: ClientTls | None = None
    """TLS settings (for SSL and SASL_SSL)."""
    sasl: ClientSasl | None = None
    """SASL settings (for SASL_PLAINTEXT and SASL_SSL)."""

    @model_validator(mode="after")
    def _consistent(self) -> SecuritySettings:
        protocol = self.protocol
        if protocol is None:
            protocol = "SASL_SSL" if self.sasl else "SSL" if self.tls else "PLAINTEXT"
            object.__setattr__(self, "protocol", protocol)
        if protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(f"protocol {protocol} needs sasl settings (mechanism, ...)")
        if not protocol.startswith("SASL") and self.sasl is not None:
            raise ValueError(
                f"sasl settings need protocol SASL_SSL or SASL_PLAINTEXT (got {protocol})"
            )
        if not protocol.endswith("SSL") and self.tls is not None:
            raise ValueError(f"tls settings need protocol SSL or SASL_SSL (got {protocol})")
        return self

    @property
    def effective_protocol(self) -> SecurityProtocol:
        assert self.protocol is not None  # set by the validator
        return self.protocol


# -- the embedded broker as a server ----------------------------------------------


class ListenerSettings(_Model):
    """One listener of the embedded broker."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    """Its name (``internal``, ``secure``...)."""
    listen: HostPort
    """HOST:PORT to listen on (``0.0.0.0:9093`` for every interface)."""
    protocol: SecurityProtocol = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    advertised: HostPort | None = None
    """HOST:PORT the clients of this listener are told to connect to (default: listen)."""


class ServerTls(_Model):
    """TLS of the embedded broker's SSL and SASL_SSL listeners (TLS 1.2 at least)."""

    cert: str
    """Server certificate (PEM; ``backbone certs create`` makes one for trying it out)."""
    key: str
    """Its private key (PEM)."""
    ca: str | None = None
    """CA bundle client certificates must chain to (needed for ``client_auth``)."""
    password: SecretStr | None = None
    """Password of an encrypted ``key``."""
    client_auth: Literal["none", "requested", "required"] = "none"
    """Client certificates: ``none``, ``requested`` (checked when sent) or ``required``
    (mutual TLS). On an SSL listener a certificate's subject is the principal
    (``User:CN=alice,O=Acme``)."""

    @model_validator(mode="after")
    def _ca(self) -> ServerTls:
        if self.client_auth != "none" and self.ca is None:
            raise ValueError(f"client_auth {self.client_auth} needs a ca to check clients with")
        return self


class OAuthBearerCheck(_Model):
    """How the embedded broker checks OAUTHBEARER tokens (JWTs)."""

    secret: SecretStr | None = None
    """Shared secret of HS256/384/512-signed tokens."""
    public_key: str | None = None
    """PEM public key of RS256/ES256-signed tokens (the identity provider's)."""
    issuer: str | None = None
    """Required ``iss`` claim."""
    audience: str | None = None
    """Required ``aud`` claim."""
    principal_claim: str = "sub"
    """Claim naming the principal (``User:<claim>``)."""

    @model_validator(mode="after")
    def _one_key(self) -> OAuthBearerCheck:
        if (self.secret is None) == (self.public_key is None):
            raise ValueError("give exactly one of secret or public_key")
        return self


def _default_mechanisms() -> list[Mechanism]:
    return ["SCRAM-SHA-512", "SCRAM-SHA-256"]


class ServerSasl(_Model):
    """SASL on the embedded broker's SASL listeners."""

    mechanisms: list[Mechanism] = Field(default_factory=lambda: _default_mechanisms(), min_length=1)
    """Mechanisms offered; users (SCRAM salted credentials, also checked by PLAIN) are
    managed with ``backbone users add|list|delete``."""
    session_lifetime: Duration | None = None
    """Longest an authentication is valid (Kafka's ``connections.max.reauth.ms``);
    clients re-authenticate before it ends (KIP-368), others are disconnected and
    reconnect. Default: no limit (OAUTHBEARER sessions end with their token)."""
    oauthbearer: OAuthBearerCheck | None = None
    """Token checks; required when OAUTHBEARER is offered."""

    @model_validator(mode="after")
    def _oauth(self) -> ServerSasl:
        if "OAUTHBEARER" in self.mechanisms and self.oauthbearer is None:
            raise ValueError(
                "mechanism OAUTHBEARER needs oauthbearer settings (secret or public_key)"
            )
        return self


def broker_security_options(
    listeners: list[ListenerSettings],
    tls: ServerTls | None,
    sasl: ServerSasl | None,
    super_users: list[str],
    authorization: bool | None,
) -> dict[str, Any]:
    """The :class:`backbone.broker.BrokerConfig` fields of the embedded broker's security
    (``listeners`` must not be empty; paths are absolute by now)."""
    from backbone.broker.config import parse_listener
    from backbone.broker.listeners import OAuthBearerSettings, TlsSettings

    options: dict[str, Any] = {
        "listeners": tuple(
            parse_listener(item.name, item.listen, item.protocol, item.advertised)
            for item in listeners
        ),
        "super_users": tuple(super_users),
        "authorization": authorization,
    }
    if tls is not None:
        options["tls"] = TlsSettings(
            Path(tls.cert),
            Path(tls.key),
            Path(tls.ca) if tls.ca else None,
            tls.password.get_secret_value() if tls.password else None,
            tls.client_auth,
        )
    if sasl is not None:
        options["sasl_mechanisms"] = tuple(sasl.mechanisms)
        if sasl.session_lifetime is not None:
            options["session_lifetime_ms"] = round(sasl.session_lifetime * 1000)
        check = sasl.oauthbearer
        if check is not None:
            options["oauthbearer"] = OAuthBearerSettings(
                secret=check.secret.get_secret_value() if check.secret else None,
                public_key=Path(check.public_key) if check.public_key else None,
                issuer=check.issuer,
                audience=check.audience,
                principal_claim=check.principal_claim,
            )
    return options
