"""SCRAM users of a broker, for ``backbone users add|list|delete``.

Where the change goes (:func:`open_users`):

- a running broker — an external cluster (``broker.bootstrap``), or the embedded
  broker of a running gateway, found at its first listener — gets Kafka's
  AlterUserScramCredentials / DescribeUserScramCredentials requests, sent with
  ``broker.security`` (the principal needs ALTER/DESCRIBE on the cluster, e.g. a
  super user). The salt and the salted password are computed here (RFC 5802's
  ``Hi()``); the password never leaves this process;
- a stopped gateway (nothing listens on the embedded broker's first listener) —
  the salted credentials are written to ``<data_dir>/security/users.json`` directly
  (fsynced), read by the broker when it starts.

A broker that refuses (wrong password, untrusted certificate) is an error, never a
reason to write the file behind its back.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.errors import KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from backbone.broker.config import parse_host_port
from backbone.broker.security import ScramCredential, UserStore
from backbone.broker.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, salted_password
from backbone.clients import KafkaClients
from backbone.errors import BackboneError
from backbone.settings import Config

__all__ = ["MECHANISMS", "UserInfo", "Users", "open_users"]

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_CODES = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
_NAMES = {code: name for name, code in _CODES.items()}
_ERRORS = {
    31: "CLUSTER_AUTHORIZATION_FAILED: the principal may not change users (needs ALTER on "
    "the cluster: a super user)",
    33: "UNSUPPORTED_SASL_MECHANISM",
    91: "RESOURCE_NOT_FOUND: no such user credential",
    92: "DUPLICATE_RESOURCE",
    93: "UNACCEPTABLE_CREDENTIAL",
}


@dataclass(frozen=True)
class UserInfo:
    """One user: its SCRAM mechanisms and their iteration counts."""

    name: str
    credentials: list[tuple[str, int]]


# -- Kafka requests (aiokafka has no admin call for them) ---------------------------


class _DescribeResponse(Response):  # type: ignore[misc]
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                (
                    "credential_infos",
                    CompactArray(
                        ("mechanism", Int8), ("iterations", Int32), ("tags", TaggedFields)
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeV0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeResponse
    SCHEMA = Schema(
        ("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class DescribeUserScramCredentials(Request[_DescribeV0]):  # type: ignore[misc]
    API_KEY = 50

    def __init__(self, users: Sequence[str] | None) -> None:
        self.users = users

    def build(self, request_struct_class: type[_DescribeV0]) -> _DescribeV0:
        users: list[tuple[str, dict[int, bytes]]] | None = (
            None if self.users is None else [(name, {}) for name in self.users]
        )
        return request_struct_class(users, {})


class _AlterResponse(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterV0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


Upsertion: TypeAlias = tuple[str, str, int, bytes, bytes]
"""(user, mechanism, iterations, salt, salted password)."""


class AlterUserScramCredentials(Request[_AlterV0]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, deletions: Sequence[tuple[str, str]], upsertions: Sequence[Upsertion]):
        self.deletions = deletions
        self.upsertions = upsertions

    def build(self, request_struct_class: type[_AlterV0]) -> _AlterV0:
        return request_struct_class(
            [(name, _CODES[mechanism], {}) for name, mechanism in self.deletions],
            [
                (name, _CODES[mechanism], iterations, salt, salted, {})
                for name, mechanism, iterations, salt, salted in self.upsertions
            ],
            {},
        )


# -- the two places users live ------------------------------------------------------


class Users(ABC):
    """Where ``backbone users`` reads and changes users (see the module docstring)."""

    where: str
    """Said in messages: ``the running broker at HOST:PORT`` or the users file."""

    @abstractmethod
    async def users(self) -> list[UserInfo]: ...

    @abstractmethod
    async def add(
        self, name: str, password: str, mechanisms: Sequence[str], iterations: int
    ) -> None:
        """Add the user, or replace its credentials for these mechanisms."""

    @abstractmethod
    async def delete(self, name: str, mechanisms: Sequence[str] | None) -> list[str]:
        """Delete the user's credentials (all when ``mechanisms`` is None); returns the
        mechanisms deleted. Raises BackboneError when the user has none of them."""

    async def close(self) -> None:
        return None


def _check(name: str, mechanisms: Sequence[str], iterations: int) -> None:
    if not name:
        raise BackboneError("the user name is empty")
    for mechanism in mechanisms:
        if mechanism not in _CODES:
            raise BackboneError(
                f"unknown mechanism {mechanism!r} (expected {' or '.join(MECHANISMS)})"
            )
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise BackboneError(
            f"--iterations must be {MIN_ITERATIONS}-{MAX_ITERATIONS} (got {iterations})"
        )


class FileUsers(Users):
    """The users file of a stopped gateway's embedded broker."""

    def __init__(self, store: UserStore) -> None:
        self.store = store
        self.where = f"{store.path} (the gateway is not running)"

    async def users(self) -> list[UserInfo]:
        return [
            UserInfo(name, [(c.mechanism, c.iterations) for c in reversed(found)])
            for name, found in self.store.users().items()
        ]

    async def add(
        self, name: str, password: str, mechanisms: Sequence[str], iterations: int
    ) -> None:
        _check(name, mechanisms, iterations)
        credentials = await asyncio.to_thread(
            lambda: [
                (name, ScramCredential.from_password(m, password, iterations=iterations))
                for m in mechanisms
            ]
        )
        await asyncio.to_thread(self.store.apply, credentials)

    async def delete(self, name: str, mechanisms: Sequence[str] | None) -> list[str]:
        have = [c.mechanism for c in self.store.credentials(name)]
        wanted = [m for m in (mechanisms or have) if m in have]
        if not wanted:
            raise BackboneError(
                f"user {name!r} has no {'/'.join(mechanisms or MECHANISMS)} credential"
            )
        await asyncio.to_thread(self.store.apply, (), [(name, m) for m in wanted])
        return wanted


class BrokerUsers(Users):
    """Users of a running broker, through the Kafka API."""

    def __init__(self, clients: KafkaClients) -> None:
        self.clients = clients
        self.where = f"the running broker at {clients.bootstrap}"
        self._client: Any = None

    async def _send(self, request: Any) -> Any:
        if self._client is None:
            client = self.clients.client("backbone.users")
            try:
                await asyncio.wait_for(client.bootstrap(), 30)
            except (KafkaError, OSError, TimeoutError) as exc:
                await client.close()
                raise BackboneError(
                    f"cannot reach {self.clients.bootstrap}: {exc} "
                    "(check broker.security; `backbone validate --check` says more)"
                ) from None
            self._client = client
        node = self._client.get_random_node()
        return await asyncio.wait_for(self._client.send(node, request), 30)

    async def users(self) -> list[UserInfo]:
        response = await self._send(DescribeUserScramCredentials(None))
        if response.error_code:
            raise BackboneError(
                f"{self.where} refused to list users: "
                f"{_ERRORS.get(response.error_code, response.error_code)} "
                f"{response.error_message or ''}".rstrip()
            )
        return [
            UserInfo(user, sorted((_NAMES.get(m, str(m)), i) for m, i, _ in infos))
            for user, code, _message, infos, _tags in response.results
            if not code
        ]

    async def add(
        self, name: str, password: str, mechanisms: Sequence[str], iterations: int
    ) -> None:
        _check(name, mechanisms, iterations)
        upsertions: list[Upsertion] = []
        for mechanism in mechanisms:
            salt = secrets.token_bytes(32)
            salted = await asyncio.to_thread(salted_password, mechanism, password, salt, iterations)
            upsertions.append((name, mechanism, iterations, salt, salted))
        await self._alter([], upsertions)

    async def delete(self, name: str, mechanisms: Sequence[str] | None) -> list[str]:
        if mechanisms is None:
            found = {u.name: u for u in await self.users()}.get(name)
            if found is None:
                raise BackboneError(f"user {name!r} does not exist on {self.where}")
            mechanisms = [m for m, _ in found.credentials]
        await self._alter([(name, m) for m in mechanisms], [])
        return list(mechanisms)

    async def _alter(self, deletions: list[tuple[str, str]], upsertions: list[Upsertion]) -> None:
        response = await self._send(AlterUserScramCredentials(deletions, upsertions))
        for user, code, message, _tags in response.results:
            if code:
                reason = _ERRORS.get(code, f"error {code}")
                raise BackboneError(
                    f"{self.where} refused the change of user {user!r}: {reason}"
                    + (f" ({message})" if message else "")
                )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


async def open_users(config: Config) -> Users:
    """The :class:`Users` for ``config`` (see the module docstring)."""
    settings = config.broker
    if settings.bootstrap is not None:
        return BrokerUsers(KafkaClients(",".join(settings.bootstrap), settings))
    embedded = settings.embedded
    assert embedded is not None
    first = embedded.listeners[0] if embedded.listeners else None
    listen = first.listen if first is not None else embedded.listen
    host, port = parse_host_port(listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    data_dir = config.resolve(embedded.data_dir)
    if port and await _listening(host, port):
        return BrokerUsers(KafkaClients(f"{host}:{port}", settings))
    return FileUsers(UserStore.in_data_dir(data_dir))


async def _listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port (a running gateway)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True
