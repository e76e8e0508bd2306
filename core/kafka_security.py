"""``broker.security`` turned into aiokafka's connection options, once per gateway.

:class:`ClientSecurity` is built by :class:`backbone.clients.KafkaClients` from the
config's :class:`~backbone.security_settings.SecuritySettings` and merged into every
client it makes (producer, consumers, admin, low-level client), so the producer, each
sink's consumer, the position store, the gateway group and every CLI command connect
the same way:

- ``security_protocol``;
- one ``ssl.SSLContext`` (TLS 1.2 at least; the ``ca`` bundle or the system's CAs;
  a client certificate for mutual TLS; hostname checks unless ``verify_hostname:
  false``);
- SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 with the user name and password, or
  OAUTHBEARER with :class:`ClientCredentialsTokens`: a token fetched from ``token_url``
  with the OAuth 2.0 client-credentials grant (client id and secret in HTTP Basic,
  RFC 6749 section 2.3.1), shared by every client and fetched again shortly before it
  expires.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import httpx
from aiokafka.abc import AbstractTokenProvider

from backbone.broker.security.tls import load_key_pair
from backbone.errors import BackboneError
from backbone.security_settings import SecuritySettings

__all__ = ["ClientCredentialsTokens", "ClientSecurity", "TokenError"]


class TokenError(BackboneError):
    """The OAUTHBEARER token endpoint did not give a token (the message says why)."""


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """OAuth 2.0 client-credentials tokens for SASL/OAUTHBEARER (see the module docstring).

    A token is reused until ``refresh_margin`` (10 % of its lifetime, at least 5 s)
    before it expires; concurrent callers share one request. Errors name the URL and
    the HTTP status, never the secret.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0
        """How many tokens were fetched (for tests and status)."""

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                self._renew_at = time.monotonic() + max(lifetime - max(lifetime * 0.1, 5.0), 0)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                response = await http.post(
                    self.token_url,
                    data=form,
                    auth=(self.client_id, self._secret),
                    headers={"Accept": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise TokenError(
                f"OAUTHBEARER token request to {self.token_url} failed: {exc!r}"
            ) from None
        if response.status_code != 200:
            detail = response.text[:200].strip()
            raise TokenError(
                f"OAUTHBEARER token request to {self.token_url} answered "
                f"{response.status_code}: {detail}"
            )
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                f"OAUTHBEARER token endpoint {self.token_url} answered without an access_token"
            ) from None
        if not isinstance(token, str) or not token:
            raise TokenError(f"OAUTHBEARER token endpoint {self.token_url} gave an empty token")
        expires_in = body.get("expires_in")
        self.fetched += 1
        return token, float(expires_in) if isinstance(expires_in, int | float) else 300.0


class ClientSecurity:
    """aiokafka keyword arguments for ``settings`` (built once, shared by all clients)."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self.protocol = settings.effective_protocol
        self.tokens: ClientCredentialsTokens | None = None
        self._options = self._build()

    def options(self) -> dict[str, Any]:
        """What every aiokafka client gets (nothing for PLAINTEXT)."""
        return dict(self._options)

    def _build(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {}
        if self.protocol == "PLAINTEXT":
            return options
        options["security_protocol"] = self.protocol
        if self.protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        sasl = settings.sasl
        if sasl is not None:
            options["sasl_mechanism"] = sasl.mechanism
            if sasl.mechanism == "OAUTHBEARER":
                assert sasl.token_url and sasl.client_id and sasl.client_secret  # validated
                self.tokens = ClientCredentialsTokens(
                    sasl.token_url,
                    sasl.client_id,
                    sasl.client_secret.get_secret_value(),
                    sasl.scope,
                )
                options["sasl_oauth_token_provider"] = self.tokens
            else:
                assert sasl.password is not None  # validated
                options["sasl_plain_username"] = sasl.username
                options["sasl_plain_password"] = sasl.password.get_secret_value()
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context; raises BackboneError naming a file that cannot be read."""
        tls = self.settings.tls
        try:
            context = ssl.create_default_context(
                cafile=tls.ca if tls is not None and tls.ca else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls is not None:
                if tls.cert and tls.key:
                    load_key_pair(
                        context,
                        tls.cert,
                        tls.key,
                        tls.password.get_secret_value() if tls.password else None,
                    )
                if not tls.verify_hostname:
                    context.check_hostname = False
        except (OSError, ssl.SSLError) as exc:
            raise BackboneError(f"broker.security.tls: cannot load the TLS files: {exc}") from exc
        return context
