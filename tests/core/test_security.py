"""The gateway as a client of a secured cluster and the embedded broker as a secured server.

- config: ``broker.security`` (protocol, tls, sasl) and the embedded broker's
  ``listeners``/``tls``/``sasl``/``super_users``, with their errors;
- the runtime runs a pipeline against the secured embedded broker (SASL_SSL,
  SCRAM-SHA-512) and against an external secured cluster (``broker.bootstrap``, a
  standalone broker standing in for managed Kafka), every client through
  ``broker.security``; OAUTHBEARER with tokens from a local client-credentials
  endpoint;
- ``backbone users add|list|delete`` with the gateway stopped (the users file) and
  running (AlterUserScramCredentials); ``backbone certs create``;
- ``backbone validate --check`` reports a refused authentication in one line (also
  against Tansu, which offers no SASL mechanism).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from cryptography import x509

from backbone.broker import Broker
from backbone.config import load_config
from backbone.errors import BackboneError, ConfigError
from backbone.registry import Registry
from backbone.testing import FAST_RUNTIME, Gateway, running, wait_until
from tests.broker.secured import USERS, Certs, add_users, make_certs, secured_config
from tests.servers import free_port, unavailable

pytestmark = pytest.mark.timeout(120)

LIST = "tests.core.plugins:LIST"
FILE = "tests.core.plugins:FILE"
BACKBONE = Path(sys.executable).with_name("backbone")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def backbone(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the ``backbone`` command line (the test's event loop keeps serving)."""
    proc = await asyncio.create_subprocess_exec(
        str(BACKBONE),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as failed:
        load_config(path, Registry.from_entry_points(), env=env or {})
    return [p.split(": ", 1)[1] for p in failed.value.problems]


# -- config --------------------------------------------------------------------------

ISSUE_SHAPE = """
broker:
  embedded:
    data_dir: data
    listeners:
      - {name: internal, listen: 127.0.0.1:9092, protocol: PLAINTEXT}
      - {name: secure, listen: 0.0.0.0:9093, protocol: SASL_SSL, advertised: kafka.example:9093}
    tls: {cert: certs/server.pem, key: certs/server.key, ca: certs/ca.pem, client_auth: none}
    sasl: {mechanisms: [SCRAM-SHA-512, PLAIN]}
    super_users: [admin]
"""


def test_the_issues_embedded_broker_shape(tmp_path: Path, certs: Certs) -> None:
    config = load_config(write(tmp_path, ISSUE_SHAPE), Registry.from_entry_points(), env={})
    embedded = config.broker.embedded
    assert embedded is not None
    options = embedded.broker_options()
    assert [
        (lis.name, lis.host, lis.port, lis.protocol, lis.advertised_host, lis.advertised_port)
        for lis in options["listeners"]
    ] == [
        ("internal", "127.0.0.1", 9092, "PLAINTEXT", None, None),
        ("secure", "0.0.0.0", 9093, "SASL_SSL", "kafka.example", 9093),
    ]
    assert options["tls"].cert == certs.folder / "server.pem"  # relative to the config file
    assert options["sasl_mechanisms"] == ("SCRAM-SHA-512", "PLAIN")
    assert options["super_users"] == ("admin",)
    assert config.broker.security.protocol == "PLAINTEXT"  # the first listener's


def test_managed_kafka_security_defaults_and_secrets(tmp_path: Path, certs: Certs) -> None:
    path = write(
        tmp_path,
        """
broker:
  bootstrap: pkc-1.example.cloud:9092
  security:
    sasl: {mechanism: SCRAM-SHA-512, username: svc, password: "${KAFKA_PASSWORD}"}
""",
    )
    config = load_config(path, Registry.from_entry_points(), env={"KAFKA_PASSWORD": "hunter2"})
    security = config.broker.security
    assert security.protocol == "SASL_SSL"  # SASL over TLS unless told otherwise
    assert security.sasl is not None and security.sasl.password is not None
    assert security.sasl.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "broker: {embedded: {listen: 127.0.0.1:1,\n"
            "  listeners: [{name: a, listen: 127.0.0.1:2}]}}",
            "broker.embedded: give either listeners or listen, not both",
        ),
        (
            "broker: {embedded: {listeners: [{name: s, listen: 127.0.0.1:2, protocol: SSL}]}}",
            "broker.embedded: listener s (SSL) needs tls (cert and key)",
        ),
        (
            "broker: {embedded: {listeners: [{name: a, listen: 127.0.0.1:1},\n"
            "  {name: a, listen: 127.0.0.1:2}]}}",
            "broker.embedded: listener name 'a' is used twice",
        ),
        (
            "broker: {bootstrap: k:9092, security: {protocol: SASL_SSL}}",
            "broker.security: protocol SASL_SSL needs sasl settings (mechanism, ...)",
        ),
        (
            "broker: {bootstrap: k:9092, security: {sasl: {mechanism: OAUTHBEARER, client_id: x}}}",
            "broker.security.sasl: OAUTHBEARER needs token_url, client_secret",
        ),
        (
            "broker: {bootstrap: k:9092, security: {sasl: {mechanism: PLAIN, username: u}}}",
            "broker.security.sasl: PLAIN needs password",
        ),
        (
            "broker: {bootstrap: k:9092, security: {protocol: PLAINTEXT, tls: {ca: x.pem}}}",
            "broker.security: tls settings need protocol SSL or SASL_SSL (got PLAINTEXT)",
        ),
        (
            "broker: {security: {sasl: {mechanism: PLAIN, username: u, password: p}}}",
            "broker: the gateway reaches its embedded broker through the first "
            "listener (PLAINTEXT) but security.protocol is SASL_SSL: list a SASL_SSL listener "
            "first, or set security to fit PLAINTEXT",
        ),
        (
            "broker: {embedded: {sasl: {mechanisms: [OAUTHBEARER]}}}",
            "broker.embedded.sasl: mechanism OAUTHBEARER needs oauthbearer "
            "settings (secret or public_key)",
        ),
    ],
)
def test_security_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(write(tmp_path, text)) == [expected.format(tmp=tmp_path)]


# -- the runtime on a secured embedded broker ----------------------------------------


def secured_gateway(tmp_path: Path, secure: int, internal: int, extra: str = "") -> Path:
    return write(
        tmp_path,
        f"""
broker:
  embedded:
    data_dir: data
    listeners:
      - {{name: secure, listen: "127.0.0.1:{secure}", protocol: SASL_SSL}}
      - {{name: internal, listen: "127.0.0.1:{internal}", protocol: PLAINTEXT}}
    tls: {{cert: certs/server.pem, key: certs/server.key, ca: certs/ca.pem}}
    sasl: {{mechanisms: [SCRAM-SHA-512, PLAIN]}}
    super_users: [gateway]
  security:
    tls: {{ca: certs/ca.pem}}
    sasl: {{mechanism: SCRAM-SHA-512, username: gateway, password: "${{GATEWAY_PASSWORD}}"}}
"""
        + FAST_RUNTIME
        + extra,
    )


PIPELINE = f"""
topics:
  orders: {{partitions: 2}}
sources:
  list: {{type: "{LIST}", topic: orders, values: [{{n: 1}}, {{n: 2}}, {{n: 3}}]}}
sinks:
  out: {{type: "{FILE}", topics: [orders], path: out.jsonl}}
"""


def aiokafka_as(certs: Certs, user: str, password: str) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(certs.ca)),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


async def test_pipeline_on_the_secured_embedded_broker_and_users_cli(
    tmp_path: Path, certs: Certs
) -> None:
    secure, internal = free_port(), free_port()
    config = secured_gateway(tmp_path, secure, internal, PIPELINE)
    env = {"GATEWAY_PASSWORD": "gateway-secret"}
    # the gateway is stopped: the user goes into the data dir's users file
    code, out, err = await backbone(
        "users",
        "add",
        "gateway",
        "--config",
        str(config),
        "--password-stdin",
        stdin="gateway-secret\n",
        env=env,
    )
    assert code == 0, err
    users_file = tmp_path / "data" / "security" / "users.json"
    assert out.strip() == (
        f"user gateway (SCRAM-SHA-512, SCRAM-SHA-256, 4096 iterations) saved in {users_file} "
        "(the gateway is not running)"
    )
    assert "gateway-secret" not in users_file.read_text()
    out_file = tmp_path / "out.jsonl"
    async with running(config, env=env) as runner:
        assert runner.bootstrap == f"127.0.0.1:{secure}"
        await wait_until(lambda: len(read_lines(out_file)) >= 3, what="3 records in the sink")
        # the gateway is running: users go through AlterUserScramCredentials
        code, out, err = await backbone(
            "users",
            "add",
            "alice",
            "--config",
            str(config),
            "--password-stdin",
            "--mechanism",
            "SCRAM-SHA-512",
            stdin="alice-pw\n",
            env=env,
        )
        assert code == 0, err
        assert out.strip() == (
            f"user alice (SCRAM-SHA-512, 4096 iterations) saved in the running broker at "
            f"127.0.0.1:{secure}"
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=f"127.0.0.1:{secure}", **aiokafka_as(certs, "alice", "alice-pw")
        )
        await producer.start()  # alice authenticates...
        try:
            with pytest.raises(KafkaError):  # ...but has no ACL to write
                await producer.send_and_wait("orders", b"x")
        finally:
            await producer.stop()
        code, out, err = await backbone("users", "list", "--config", str(config), "--json", env=env)
        assert code == 0, err
        assert json.loads(out) == [
            {"name": "alice", "credentials": [{"mechanism": "SCRAM-SHA-512", "iterations": 4096}]},
            {
                "name": "gateway",
                "credentials": [
                    {"mechanism": "SCRAM-SHA-256", "iterations": 4096},
                    {"mechanism": "SCRAM-SHA-512", "iterations": 4096},
                ],
            },
        ]
        code, out, err = await backbone(
            "users", "delete", "alice", "--config", str(config), env=env
        )
        assert (code, out.strip()) == (
            0,
            f"user alice: SCRAM-SHA-512 deleted from the running broker at 127.0.0.1:{secure}",
        ), err
        # an anonymous client on the PLAINTEXT listener sees no topic (ACLs are enforced)
        consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{internal}")
        await consumer.start()
        try:
            assert await consumer.topics() == set()
        finally:
            await consumer.stop()
    assert [line["value"] for line in read_lines(out_file)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    refused = AIOKafkaProducer(
        bootstrap_servers=f"127.0.0.1:{secure}", **aiokafka_as(certs, "alice", "alice-pw")
    )
    async with running(config, env=env):
        with pytest.raises(KafkaError):
            await refused.start()
        await refused.stop()


async def test_runtime_names_the_principal_it_lacks_rights_for(
    tmp_path: Path, certs: Certs
) -> None:
    config = write(
        tmp_path,
        """
broker:
  embedded:
    data_dir: data
    listeners:
      - {name: internal, listen: "127.0.0.1:0", protocol: PLAINTEXT}
      - {name: secure, listen: "127.0.0.1:0", protocol: SASL_SSL}
    tls: {cert: certs/server.pem, key: certs/server.key}
    super_users: [admin]
"""
        + PIPELINE,
    )
    from backbone.runner import Runner

    runner = Runner(
        load_config(config, Registry.from_entry_points(), env={}), Registry.from_entry_points()
    )
    with pytest.raises(BackboneError) as failed:
        await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    assert str(failed.value) == (
        "cannot create topics: topic orders: error 29 (User:ANONYMOUS may not CREATE topic "
        "'orders'); topic _backbone.positions: error 29 (User:ANONYMOUS may not CREATE topic "
        "'_backbone.positions') (the principal the gateway connects as needs CREATE on the "
        "cluster or on these topics: list it in broker.embedded.super_users, or grant it ACLs)"
    )


# -- an external secured cluster (managed Kafka) ----------------------------------


@pytest.fixture
async def cluster(tmp_path: Path, certs: Certs) -> AsyncIterator[Broker]:
    data = tmp_path / "cluster"
    add_users(data)
    async with Broker(secured_config(data, certs)) as broker:
        yield broker


async def test_pipeline_on_an_external_secured_cluster(
    tmp_path: Path, certs: Certs, cluster: Broker
) -> None:
    config = write(
        tmp_path,
        f"""
broker:
  bootstrap: {cluster.bootstraps["secure"]}
  security:
    protocol: SASL_SSL
    tls: {{ca: certs/ca.pem}}
    sasl: {{mechanism: SCRAM-SHA-256, username: admin, password: "${{KAFKA_PASSWORD}}"}}
"""
        + FAST_RUNTIME
        + PIPELINE,
    )
    out_file = tmp_path / "out.jsonl"
    before = cluster.security.authentications
    async with running(config, env={"KAFKA_PASSWORD": USERS["admin"]}):
        await wait_until(lambda: len(read_lines(out_file)) >= 3, what="3 records in the sink")
    assert [line["value"] for line in read_lines(out_file)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    # producer, admin, positions, the sink's consumer and the gateway group all logged in
    assert cluster.security.authentications - before >= 4
    assert cluster.security.failures.total == 0
    assert cluster.groups.fetch_offsets("backbone.out", None)


async def test_pipeline_over_mutual_tls_with_an_encrypted_key(tmp_path: Path, certs: Certs) -> None:
    """``broker.security`` with protocol SSL and a client certificate whose key is
    encrypted (``tls.password``): every client of the gateway logs in as the
    certificate's subject, and a wrong key password is one clear line."""
    _, key = certs.pair("alice")
    encrypted = tmp_path / "certs" / "alice-encrypted.key"
    done = await asyncio.create_subprocess_exec(
        "openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:key-secret",
        "-out", str(encrypted), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(done.communicate(), 60)
    assert done.returncode == 0, err.decode()
    assert b"ENCRYPTED" in encrypted.read_bytes()
    data = tmp_path / "cluster"
    config = secured_config(data, certs, super_users=("admin", "User:CN=alice"))
    async with Broker(config) as cluster:

        def gateway(password: str) -> Path:
            return write(
                tmp_path,
                f"""
broker:
  bootstrap: {cluster.bootstraps["mtls"]}
  security:
    protocol: SSL
    tls: {{ca: certs/ca.pem, cert: certs/alice.pem, key: certs/alice-encrypted.key,
          password: "{password}"}}
"""
                + FAST_RUNTIME
                + PIPELINE,
            )

        wrong = gateway("not-it")
        code, out, err = await backbone("validate", "--check", str(wrong))
        assert (code, out) == (2, "")
        [line] = err.splitlines()
        assert line.startswith(
            f"{wrong}: broker: broker.security.tls: cannot load the TLS files: cannot load the "
            f"certificate {tmp_path}/certs/alice.pem and key {encrypted}: the key's password is "
            "wrong, or the key is not the certificate's ("
        ), line
        assert "not-it" not in line
        no_password = write(
            tmp_path,
            f"broker:\n  bootstrap: {cluster.bootstraps['mtls']}\n  security:\n    tls: "
            "{ca: certs/ca.pem, cert: certs/alice.pem, key: certs/alice-encrypted.key}\n",
            "no-password.yaml",
        )
        code, _, err = await backbone("validate", "--check", str(no_password))
        assert code == 2 and "the key is encrypted: give its password" in err, err
        out_file = tmp_path / "out.jsonl"
        async with running(gateway("key-secret")):
            await wait_until(lambda: len(read_lines(out_file)) >= 3, what="3 records in the sink")
        assert [line["value"] for line in read_lines(out_file)] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert cluster.groups.fetch_offsets("backbone.out", None)
        assert cluster.security.failures.total == 0


async def test_verify_hostname_false_accepts_a_certificate_for_another_name(
    tmp_path: Path, certs: Certs
) -> None:
    """The server certificate names localhost and 127.0.0.1; reached as 127.0.0.2 (also
    loopback) its name does not match: refused, unless ``verify_hostname: false`` (the
    chain is still checked against ``ca``)."""
    from backbone.broker import BrokerConfig
    from backbone.broker.config import parse_listener

    base = secured_config(tmp_path / "cluster", certs)
    add_users(tmp_path / "cluster")
    config = BrokerConfig(
        data_dir=tmp_path / "cluster",
        listeners=(parse_listener("secure", "127.0.0.2:0", "SASL_SSL"),),
        tls=base.tls,
        sasl_mechanisms=base.sasl_mechanisms,
        super_users=base.super_users,
    )
    async with Broker(config) as cluster:
        address = cluster.bootstraps["secure"]
        sasl = "sasl: {mechanism: PLAIN, username: alice, password: alice-secret}"

        def gateway(tls: str) -> Path:
            return write(
                tmp_path, f"broker:\n  bootstrap: {address}\n  security: {{tls: {tls}, {sasl}}}\n"
            )

        strict = gateway("{ca: certs/ca.pem}")
        code, _, err = await backbone("validate", "--check", str(strict))
        assert code == 2
        assert f"TLS: the certificate of {address} is not trusted (IP address mismatch" in err
        lax = gateway("{ca: certs/ca.pem, verify_hostname: false}")
        code, out, err = await backbone("validate", "--check", str(lax))
        assert (code, out.strip()) == (0, f"ok: {lax}"), err
        stranger = gateway("{verify_hostname: false}")  # no ca: the chain still fails
        code, _, err = await backbone("validate", "--check", str(stranger))
        assert code == 2 and "is not trusted (self-signed certificate in certificate chain)" in err


async def test_validate_check_says_why_in_one_line(
    tmp_path: Path, certs: Certs, cluster: Broker
) -> None:
    address = cluster.bootstraps["secure"]

    def gateway(security: str) -> Path:
        return write(tmp_path, f"broker:\n  bootstrap: {address}\n  security: {security}\n")

    wrong = gateway(
        "{tls: {ca: certs/ca.pem}, "
        "sasl: {mechanism: SCRAM-SHA-512, username: alice, password: nope}}"
    )
    code, out, err = await backbone("validate", "--check", str(wrong))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{wrong}: broker: authentication failed on {address} as alice (SCRAM-SHA-512): "
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-512"
    ]
    untrusted = gateway("{sasl: {mechanism: PLAIN, username: alice, password: alice-secret}}")
    code, _, err = await backbone("validate", "--check", str(untrusted))
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(
        f"{untrusted}: broker: TLS: the certificate of {address} is not trusted ("
    )
    assert line.endswith("; set broker.security.tls.ca (or verify_hostname)")
    good = gateway(
        "{tls: {ca: certs/ca.pem}, "
        "sasl: {mechanism: PLAIN, username: alice, password: alice-secret}}"
    )
    code, out, err = await backbone("validate", "--check", str(good))
    assert (code, out.strip()) == (0, f"ok: {good}"), err


async def test_validate_check_names_a_protocol_mismatch(
    tmp_path: Path, certs: Certs, cluster: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain TCP to a TLS listener, TLS to a plain one: one line saying what to set, and
    the broker's log says the same from its side."""
    secure, internal = cluster.bootstraps["secure"], cluster.bootstraps["internal"]
    sasl = "sasl: {mechanism: PLAIN, username: alice, password: alice-secret}"
    cases = [
        (
            secure,
            "{protocol: PLAINTEXT}",
            "is a TLS listener, but broker.security.protocol "
            "is PLAINTEXT: use SSL or SASL_SSL as this listener does (and broker.security.tls.ca)",
        ),
        (
            secure,
            f"{{protocol: SASL_PLAINTEXT, {sasl}}}",
            "is a TLS listener, but "
            "broker.security.protocol is SASL_PLAINTEXT: use SSL or SASL_SSL as this listener "
            "does (and broker.security.tls.ca)",
        ),
        (
            internal,
            f"{{tls: {{ca: certs/ca.pem}}, {sasl}}}",
            "does not speak TLS (it answers "
            "plain Kafka), but broker.security.protocol is SASL_SSL: use PLAINTEXT or "
            "SASL_PLAINTEXT as this listener does, or the address of a TLS listener",
        ),
    ]
    for address, security, expected in cases:
        config = write(tmp_path, f"broker:\n  bootstrap: {address}\n  security: {security}\n")
        code, out, err = await backbone("validate", "--check", str(config))
        assert (code, out, err.splitlines()) == (2, "", [f"{config}: broker: {address} {expected}"])
    failures = cluster.security.failures
    assert failures.total == 2  # the two plain connections to the TLS listener
    # nothing was created or written by the refused clients
    assert sorted(cluster.logs.topics) == ["__consumer_offsets"]
    said = [r.getMessage() for r in caplog.records if r.name.startswith("backbone.broker")]
    assert (
        sum(
            "listener secure (SASL_SSL): TLS handshake failed: WRONG_VERSION_NUMBER: the client "
            "does not speak TLS (its security.protocol is PLAINTEXT or SASL_PLAINTEXT?)" in line
            for line in said
        )
        == 2
    ), said
    plain_listener = [line for line in said if "TLS handshake on a listener" in line]
    assert len(plain_listener) == 1, said
    assert re.fullmatch(
        r"closing connection 127\.0\.0\.1:\d+: it opened with a TLS handshake on a listener "
        r"without TLS \(the client's security\.protocol is SSL or SASL_SSL: use a TLS listener\)",
        plain_listener[0],
    )


async def test_validate_check_names_missing_tls_files(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "broker:\n  bootstrap: 127.0.0.1:1\n  security: {tls: {ca: missing.pem}}\n",
    )
    code, _, err = await backbone("validate", "--check", str(config))
    assert (code, err.splitlines()) == (
        2,
        [f"{config}: broker: broker.security.tls.ca: file {tmp_path}/missing.pem does not exist"],
    )


async def test_validate_check_against_tansu_without_sasl(tmp_path: Path, tansu: Any) -> None:
    config = write(
        tmp_path,
        f"""
broker:
  bootstrap: {tansu.bootstrap}
  idempotence: false
  security:
    protocol: SASL_PLAINTEXT
    sasl: {{mechanism: SCRAM-SHA-512, username: u, password: p}}
""",
    )
    code, _, err = await backbone("validate", "--check", str(config))
    assert code == 2
    assert err.splitlines() == [
        f"{config}: broker: SASL refused by {tansu.bootstrap} as u (SCRAM-SHA-512): "
        "the broker does not offer this mechanism (UNSUPPORTED_SASL_MECHANISM)"
    ]


# -- OAUTHBEARER with the client-credentials flow ---------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A local OAuth 2.0 token endpoint: client credentials in HTTP Basic -> an HS256 JWT."""

    def __init__(self, secret: str, clients: dict[str, str]) -> None:
        self.secret = secret
        self.clients = clients
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(
                    pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&")
                )
                auth = self.headers.get("Authorization", "")
                user, _, password = (
                    base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
                )
                server.requests.append({**form, "client_id": user})
                if (
                    form.get("grant_type") != "client_credentials"
                    or server.clients.get(user) != password
                ):
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"error": "invalid_client"}')
                    return
                body = json.dumps(
                    {"access_token": server.token(user), "token_type": "Bearer", "expires_in": 600}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/oauth2/token"

    def token(self, subject: str) -> str:
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {"sub": subject, "iss": "test-idp", "exp": int(time.time()) + 600}
        body = _b64url(json.dumps(claims).encode())
        sig = hmac.new(self.secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64url(sig)}"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer("jwt-signing-secret", {"gateway": "client-secret"})
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(10)


def oauth_gateway(tmp_path: Path, token_url: str, client_secret: str) -> Path:
    return write(
        tmp_path,
        f"""
broker:
  embedded:
    data_dir: data
    listeners: [{{name: secure, listen: "127.0.0.1:0", protocol: SASL_SSL}}]
    tls: {{cert: certs/server.pem, key: certs/server.key}}
    sasl:
      mechanisms: [OAUTHBEARER]
      oauthbearer: {{secret: jwt-signing-secret, issuer: test-idp}}
    super_users: [gateway]
  security:
    tls: {{ca: certs/ca.pem}}
    sasl: {{mechanism: OAUTHBEARER, token_url: "{token_url}", client_id: gateway,
            client_secret: "{client_secret}"}}
"""
        + FAST_RUNTIME
        + PIPELINE,
    )


async def test_oauthbearer_client_credentials_pipeline(
    tmp_path: Path, certs: Certs, token_server: TokenServer
) -> None:
    config = oauth_gateway(tmp_path, token_server.url, "client-secret")
    out_file = tmp_path / "out.jsonl"
    async with running(config):
        await wait_until(lambda: len(read_lines(out_file)) >= 3, what="3 records in the sink")
    assert [line["value"] for line in read_lines(out_file)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert token_server.requests[0] == {"grant_type": "client_credentials", "client_id": "gateway"}
    assert 1 <= len(token_server.requests) <= 3  # one token shared by every client


async def test_oauthbearer_refused_client_secret(
    tmp_path: Path, certs: Certs, token_server: TokenServer
) -> None:
    from backbone.runner import Runner

    config = oauth_gateway(tmp_path, token_server.url, "wrong-secret")
    registry = Registry.from_entry_points()
    runner = Runner(load_config(config, registry, env={}), registry)
    with pytest.raises(Exception) as failed:
        await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    assert f"OAUTHBEARER token request to {token_server.url} answered 401" in str(failed.value)
    assert "wrong-secret" not in str(failed.value)


# -- backbone certs create ----------------------------------------------------------


async def test_certs_create(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    code, stdout, err = await backbone(
        "certs",
        "create",
        "--out",
        str(out),
        "--host",
        "kafka.example",
        "--host",
        "10.0.0.5",
        "--client",
        "alice",
    )
    assert code == 0, err
    names = ["ca.pem", "ca.key", "server.pem", "server.key", "alice.pem", "alice.key"]
    assert stdout.splitlines() == [str(out / n) for n in names]
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == ["kafka.example", "10.0.0.5"]
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    assert server.issuer == ca.subject
    client = x509.load_pem_x509_certificate((out / "alice.pem").read_bytes())
    assert client.subject.rfc4514_string() == "CN=alice"
    code, stdout, _ = await backbone("certs", "create", "--out", str(out))
    assert code == 0 and str(out / "ca.pem") not in stdout  # the CA is reused
    again = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    assert again.issuer == ca.subject


async def test_users_cli_errors(tmp_path: Path) -> None:
    config = write(tmp_path, "broker: {embedded: {listen: '127.0.0.1:0', data_dir: data}}\n")
    code, _, err = await backbone(
        "users",
        "add",
        "bob",
        "--config",
        str(config),
        "--password-stdin",
        "--mechanism",
        "SCRAM-SHA-1",
        stdin="pw\n",
    )
    assert (code, err.strip()) == (
        1,
        "error: unknown mechanism 'SCRAM-SHA-1' (expected SCRAM-SHA-256 or SCRAM-SHA-512)",
    )
    code, _, err = await backbone("users", "delete", "bob", "--config", str(config))
    assert (code, err.strip()) == (
        1,
        "error: user 'bob' has no SCRAM-SHA-256/SCRAM-SHA-512 credential",
    )
    code, out, _ = await backbone("users", "list", "--config", str(config))
    assert (code, out) == (0, "")


# -- the shipped configs: configs/secured.yaml and configs/managed-kafka.yaml --------


def _copy_config(name: str, tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


async def test_secured_config_runs_and_kcat_reads_as_alice(tmp_path: Path) -> None:
    internal, secure = free_port(), free_port()
    text = (ROOT / "configs" / "secured.yaml").read_text()
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{internal}")
    text = text.replace("0.0.0.0:9093", f"127.0.0.1:{secure}")
    config = _copy_config("secured.yaml", tmp_path, text)
    env = {"KAFKA_ADVERTISED": f"127.0.0.1:{secure}"}
    # the commands of the file's header, as written there
    code, _, err = await backbone(
        "certs",
        "create",
        "--out",
        str(tmp_path / "certs"),
        "--host",
        "kafka.example",
        "--host",
        "127.0.0.1",
    )
    assert code == 0, err
    for user, password in (("alice", "alice-pw"), ("admin", "admin-pw")):
        code, _, err = await backbone(
            "users",
            "add",
            user,
            "--config",
            str(config),
            "--password-stdin",
            stdin=password + "\n",
            env=env,
        )
        assert code == 0, err
    gateway = Gateway(
        config, tmp_path / "out.jsonl", tmp_path / "gw.log", env={**os.environ, **env}
    )
    try:
        gateway.start()
        await wait_until(
            lambda: len([x for x in gateway.lines() if x.get("topic") == "demo.events"]) >= 2,
            within=60,
            what="2 events printed",
        )
        # the admin (a super user) lets alice read the topic, with Kafka's admin API
        await asyncio.to_thread(_grant_read, f"127.0.0.1:{secure}", tmp_path / "certs")
        code, out, err = await _kcat(
            "-b",
            f"127.0.0.1:{secure}",
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            "sasl.username=alice",
            "-X",
            "sasl.password=alice-pw",
            "-X",
            f"ssl.ca.location={tmp_path / 'certs' / 'ca.pem'}",
            "-C",
            "-t",
            "demo.events",
            "-o",
            "beginning",
            "-c",
            "2",
            "-e",
        )
        assert code == 0, err
        seqs = [json.loads(line)["seq"] for line in out.splitlines()]
        assert len(seqs) == 2 and len(set(seqs)) == 2 and min(seqs) >= 1
        code, _, err = await _kcat(
            "-b",
            f"127.0.0.1:{secure}",
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            "sasl.username=alice",
            "-X",
            "sasl.password=wrong",
            "-X",
            f"ssl.ca.location={tmp_path / 'certs' / 'ca.pem'}",
            "-L",
        )
        assert code != 0 and "Authentication failed" in err
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()


def _grant_read(bootstrap: str, certs: Path) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "admin",
            "sasl.password": "admin-pw",
            "ssl.ca.location": str(certs / "ca.pem"),
        }
    )
    binding = AclBinding(
        ResourceType.TOPIC,
        "demo.events",
        ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([binding], request_timeout=20).values():
        future.result(20)


async def _kcat(*args: str) -> tuple[int, str, str]:
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (make system-deps installs it)")
    proc = await asyncio.create_subprocess_exec(
        "kcat",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_managed_kafka_config_runs_as_shipped(
    tmp_path: Path, certs: Certs, cluster: Broker
) -> None:
    config = _copy_config(
        "managed-kafka.yaml", tmp_path, (ROOT / "configs" / "managed-kafka.yaml").read_text()
    )
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": cluster.bootstraps["secure"],
        "KAFKA_CA_FILE": str(certs.ca),
        "KAFKA_USERNAME": "admin",
        "KAFKA_PASSWORD": USERS["admin"],
    }
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gw.log", env=env)
    try:
        gateway.start()
        await wait_until(
            lambda: len([x for x in gateway.lines() if x.get("topic") == "demo.events"]) >= 2,
            within=60,
            what="2 events printed",
        )
        # the broker runs on this event loop: wait for the gateway in a thread
        assert await asyncio.to_thread(gateway.terminate) == 0
    finally:
        await asyncio.to_thread(gateway.stop_quietly)
    assert cluster.security.failures.total == 0
    assert cluster.logs.partition("demo.events", 0).high_watermark >= 0


async def test_runtime_start_names_a_refused_login(
    tmp_path: Path, certs: Certs, cluster: Broker
) -> None:
    from backbone.runner import Runner

    address = cluster.bootstraps["secure"]
    config = write(
        tmp_path,
        f"""
broker:
  bootstrap: {address}
  security:
    tls: {{ca: certs/ca.pem}}
    sasl: {{mechanism: SCRAM-SHA-512, username: alice, password: wrong}}
"""
        + PIPELINE,
    )
    registry = Registry.from_entry_points()
    runner = Runner(load_config(config, registry, env={}), registry)
    with pytest.raises(BackboneError) as failed:
        await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    assert str(failed.value) == (
        f"cannot reach the Kafka cluster at {address} (broker.bootstrap): authentication "
        f"failed on {address} as alice (SCRAM-SHA-512): Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    )
