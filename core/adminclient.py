"""A client of a running gateway's admin HTTP API (used by ``backbone replay``).

:meth:`AdminClient.for_config` points it at the config's ``http.listen`` (a
wildcard host is reached on loopback) with its ``http.admin_token``;
:class:`AdminUnavailable` means no gateway answered there, :class:`AdminError`
that it answered with an error (its message is the API's ``error``).
"""

from __future__ import annotations

from typing import Any

import httpx

from backbone.errors import BackboneError
from backbone.settings import Config

__all__ = ["AdminClient", "AdminError", "AdminUnavailable"]


class AdminUnavailable(BackboneError):
    """No gateway admin API answers at that address."""


class AdminError(BackboneError):
    """The admin API answered with an error."""


class AdminClient:
    """Calls to one gateway's admin API (``url`` like ``http://127.0.0.1:8080``)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)

    @classmethod
    def for_config(cls, config: Config) -> AdminClient | None:
        """A client of the gateway ``config`` describes; ``None`` without a fixed address."""
        if config.http is None:
            return None
        host, _, port = config.http.listen.rpartition(":")
        host = host.strip("[]")
        if int(port) == 0:
            return None  # a free port chosen at start: not findable from the config
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        token = config.http.admin_token
        secret = token.get_secret_value() if token is not None else None
        return cls(f"http://{f'[{host}]' if ':' in host else host}:{port}", secret)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        try:
            response = await self._http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise AdminUnavailable(f"no gateway admin API at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            if response.status_code == 404 and "connector" not in str(message):
                raise AdminUnavailable(f"{self.url} is not a gateway admin API ({message})")
            raise AdminError(f"{method} {path}: {response.status_code} {message}")
        return response.json()

    async def connector(self, name: str) -> dict[str, Any]:
        """``GET /connectors/{name}``."""
        found: dict[str, Any] = await self._call("GET", f"/connectors/{name}")
        return found

    async def pause(self, name: str) -> dict[str, Any]:
        """``POST /connectors/{name}/pause`` (returns once PAUSED)."""
        found: dict[str, Any] = await self._call("POST", f"/connectors/{name}/pause")
        return found

    async def resume(self, name: str) -> dict[str, Any]:
        """``POST /connectors/{name}/resume``."""
        found: dict[str, Any] = await self._call("POST", f"/connectors/{name}/resume")
        return found
