"""A secured broker for the security tests: certificates, users, listeners, client settings.

``make_certs`` writes (with ``backbone.certs``) a CA, a server certificate for
127.0.0.1/localhost, a client certificate ``CN=alice``, an expired one and one
signed by another CA. ``secured_config`` gives a broker three listeners: ``internal``
(PLAINTEXT), ``secure`` (SASL_SSL) and ``mtls`` (SSL), users from :data:`USERS`
(SCRAM-SHA-256 and -512) and ``admin`` as super user. The ``*_settings`` helpers
give each real client library what it needs to connect as a user.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backbone.broker import BrokerConfig
from backbone.broker.config import parse_listener
from backbone.broker.listeners import ClientAuth, TlsSettings
from backbone.broker.protocol import (
    RESPONSES,
    RequestHeader,
    encode_request_header,
    read_response_header,
    response_header_version,
)
from backbone.broker.security import ScramCredential, UserStore
from backbone.certs import create_ca, issue

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


@dataclass(frozen=True)
class Certs:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def pair(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of ``server``, ``alice``, ``expired`` or ``stranger``."""
        return self.folder / f"{name}.pem", self.folder / f"{name}.key"


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca = create_ca("test CA")
    ca.write(folder / "ca.pem", folder / "ca.key")
    issue(ca, "localhost", hosts=["localhost", "127.0.0.1"], client=False).write(
        folder / "server.pem", folder / "server.key"
    )
    issue(ca, "alice", server=False).write(folder / "alice.pem", folder / "alice.key")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    issue(ca, "alice", server=False, not_before=past, not_after=past + dt.timedelta(days=1)).write(
        folder / "expired.pem", folder / "expired.key"
    )
    issue(create_ca("another CA"), "alice", server=False).write(
        folder / "stranger.pem", folder / "stranger.key"
    )
    return Certs(folder)


def add_users(
    data_dir: Path,
    users: dict[str, str] = USERS,
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-512"),
) -> None:
    """Store SCRAM credentials before the broker starts (what `backbone users add` does
    offline)."""
    UserStore.in_data_dir(data_dir).apply(
        [
            (name, ScramCredential.from_password(mechanism, password))
            for name, password in users.items()
            for mechanism in mechanisms
        ]
    )


def secured_config(
    data_dir: Path, certs: Certs, client_auth: ClientAuth = "requested", **options: Any
) -> BrokerConfig:
    options.setdefault("sasl_mechanisms", ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"))
    options.setdefault("super_users", ("admin",))
    options.setdefault("auth_failure_delay_ms", 10)
    cert, key = certs.pair("server")
    return BrokerConfig(
        data_dir=data_dir,
        listeners=(
            parse_listener("internal", "127.0.0.1:0", "PLAINTEXT"),
            parse_listener("secure", "127.0.0.1:0", "SASL_SSL"),
            parse_listener("mtls", "127.0.0.1:0", "SSL"),
        ),
        tls=TlsSettings(cert, key, certs.ca, client_auth=client_auth),
        **options,
    )


# -- client settings ----------------------------------------------------------------


def confluent_settings(
    certs: Certs,
    user: str | None = "alice",
    password: str | None = None,
    mechanism: str = "SCRAM-SHA-512",
) -> dict[str, Any]:
    """librdkafka settings: SASL_SSL as ``user`` (or SSL with alice's certificate when
    ``user`` is None)."""
    if user is None:
        cert, key = certs.pair("alice")
        return {
            "security.protocol": "SSL",
            "ssl.ca.location": str(certs.ca),
            "ssl.certificate.location": str(cert),
            "ssl.key.location": str(key),
        }
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password if password is not None else USERS.get(user, "x"),
        "ssl.ca.location": str(certs.ca),
    }


def aiokafka_settings(
    certs: Certs,
    user: str = "alice",
    password: str | None = None,
    mechanism: str = "SCRAM-SHA-512",
    cert: str | None = None,
) -> dict[str, Any]:
    """aiokafka keyword arguments: SASL_SSL as ``user``, or SSL with the ``cert`` pair."""
    from aiokafka.helpers import create_ssl_context

    if cert is not None:
        certfile, keyfile = certs.pair(cert)
        context = create_ssl_context(
            cafile=str(certs.ca), certfile=str(certfile), keyfile=str(keyfile)
        )
        return {"security_protocol": "SSL", "ssl_context": context}
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(certs.ca)),
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password if password is not None else USERS.get(user, "x"),
    }


def kafka_python_settings(
    certs: Certs, user: str = "alice", password: str | None = None, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(certs.ca),
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password if password is not None else USERS.get(user, "x"),
    }


def kcat_settings(
    certs: Certs, user: str = "alice", password: str | None = None, mechanism: str = "SCRAM-SHA-512"
) -> list[str]:
    """kcat ``-X`` arguments for SASL_SSL as ``user``."""
    conf = confluent_settings(certs, user, password, mechanism)
    return [arg for key, value in conf.items() for arg in ("-X", f"{key}={value}")]


# -- a raw Kafka connection (plain or TLS) --------------------------------------------


class Wire:
    """One connection speaking raw requests through the codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.correlation_id = 0

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None = None) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        return cls(reader, writer)

    async def send(self, request: Any, version: int) -> Any:
        self.correlation_id += 1
        header = RequestHeader(request.api_key, version, self.correlation_id, "wire-test")
        payload = encode_request_header(header) + request.encode(version)
        self.writer.write(struct.pack(">i", len(payload)) + payload)
        await self.writer.drain()
        (size,) = struct.unpack(">i", await asyncio.wait_for(self.reader.readexactly(4), 20))
        frame = await self.reader.readexactly(size)
        cid, pos = read_response_header(frame, response_header_version(request.api_key, version))
        assert cid == self.correlation_id
        response, end = RESPONSES[request.api_key].decode(memoryview(frame), pos, version)
        assert end == len(frame)
        return response

    async def closed_by_broker(self) -> bool:
        """True once the broker closed the connection (read returns end of stream)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), 20)
        except (ConnectionError, ssl.SSLError):
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def client_context(certs: Certs, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        certfile, keyfile = certs.pair(cert)
        context.load_cert_chain(certfile, keyfile)
    return context
