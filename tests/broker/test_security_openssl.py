"""TLS with certificates made by the ``openssl`` command line, an implementation
independent of ours (``backbone.certs`` uses the ``cryptography`` package):

- a broker serving an openssl-made CA's server certificate: confluent-kafka and aiokafka
  over SASL_SSL, kcat over mutual TLS with an openssl-made client certificate (the
  principal is its RFC 2253 subject);
- ``openssl s_client`` as the client: TLS 1.2 and 1.3 accepted, TLS 1.1 refused;
- an expired server certificate is refused by the clients, with the reason said;
- ``backbone certs create`` writes certificates ``openssl verify`` accepts;
- the README's openssl commands make a certificate a listener serves.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from confluent_kafka import Producer

from backbone.broker import Broker, BrokerConfig
from backbone.broker.config import parse_listener
from backbone.broker.listeners import TlsSettings
from backbone.broker.security import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)
from backbone.clients import KafkaClients
from backbone.errors import BackboneError
from backbone.settings import BrokerSettings
from tests.broker.secured import USERS, add_users
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[2] / "README.md"

CA_CONFIG = """\
[ca]
default_ca = local
[local]
dir = {folder}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
organizationName = optional
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""


def openssl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"
    return done.stdout


class OpensslCA:
    """A CA made with ``openssl req -x509``; certificates issued with ``openssl ca``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "issued").mkdir(parents=True)
        (folder / "index.txt").write_text("")
        (folder / "serial").write_text("1000\n")
        (folder / "ca.cnf").write_text(CA_CONFIG.format(folder=folder))
        self.cert, self.key = folder / "ca.pem", folder / "ca.key"
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=openssl test CA", "-keyout", str(self.key), "-out", str(self.cert),
        )  # fmt: skip

    def issue(
        self, name: str, subject: str, kind: str, dates: Sequence[str] = ("-days", "30")
    ) -> tuple[Path, Path]:
        cert, key, csr = (self.folder / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
        openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        openssl(
            "ca", "-batch", "-notext", "-config", str(self.folder / "ca.cnf"),
            "-cert", str(self.cert), "-keyfile", str(self.key), "-extensions", kind,
            "-in", str(csr), "-out", str(cert), *dates,
        )  # fmt: skip
        return cert, key


@pytest.fixture
def ca(tmp_path: Path) -> OpensslCA:
    if shutil.which("openssl") is None:
        unavailable("the openssl command line is not installed")
    return OpensslCA(tmp_path / "ca")


def broker_config(data: Path, ca: OpensslCA, cert: tuple[Path, Path]) -> BrokerConfig:
    add_users(data)
    return BrokerConfig(
        data_dir=data,
        listeners=(
            parse_listener("secure", "127.0.0.1:0", "SASL_SSL"),
            parse_listener("mtls", "127.0.0.1:0", "SSL"),
        ),
        tls=TlsSettings(cert[0], cert[1], ca.cert, client_auth="requested"),
        sasl_mechanisms=("SCRAM-SHA-512", "PLAIN"),
        super_users=("admin",),
        auth_failure_delay_ms=10,
    )


async def kcat(*args: str) -> tuple[int, str, str]:
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (make system-deps installs it)")
    proc = await asyncio.create_subprocess_exec(
        "kcat", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def confluent_produce(bootstrap: str, conf: dict[str, Any], values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    errors: list[Any] = []
    for value in values:
        producer.produce("orders", value, on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(30) == 0
    assert errors == [None] * len(values)


async def test_clients_over_openssl_made_certificates(tmp_path: Path, ca: OpensslCA) -> None:
    server = ca.issue("server", "/CN=localhost", "server")
    carol = ca.issue("carol", "/O=Acme/CN=carol", "client")
    async with Broker(broker_config(tmp_path / "data", ca, server)) as broker:
        await broker.logs.create_topic("orders", 1)
        # Kafka's principal is the subject in RFC 2253, as openssl prints it
        subject = openssl("x509", "-in", str(carol[0]), "-noout", "-subject", "-nameopt", "RFC2253")
        principal = "User:" + subject.strip().removeprefix("subject=")
        assert principal in ("User:CN=carol,O=Acme", "User:O=Acme,CN=carol")
        await asyncio.to_thread(
            broker.security.acls.add,
            [
                AclBinding(rtype, name, PatternType.LITERAL, who, "*", op, AclPermission.ALLOW)
                for who in ("User:alice", principal)
                for rtype, name, op in (
                    (ResourceType.TOPIC, "orders", AclOperation.ALL),
                    (ResourceType.GROUP, "*", AclOperation.ALL),
                )
            ],
        )
        secure, mtls = broker.bootstraps["secure"], broker.bootstraps["mtls"]
        sasl = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": USERS["alice"],
            "ssl.ca.location": str(ca.cert),
        }
        await asyncio.wait_for(
            asyncio.to_thread(confluent_produce, secure, sasl, [b"librdkafka"]), 60
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=secure,
            security_protocol="SASL_SSL",
            ssl_context=create_ssl_context(cafile=str(ca.cert)),
            sasl_mechanism="PLAIN",
            sasl_plain_username="alice",
            sasl_plain_password=USERS["alice"],
        )
        await producer.start()
        try:
            await producer.send_and_wait("orders", b"aiokafka")
        finally:
            await producer.stop()
        code, out, err = await kcat(
            "-b", mtls, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={ca.cert}",
            "-X", f"ssl.certificate.location={carol[0]}", "-X", f"ssl.key.location={carol[1]}",
            "-C", "-t", "orders", "-o", "beginning", "-e", "-f", "%o %s\n",
        )  # fmt: skip
        assert code == 0, err
        assert out.splitlines() == ["0 librdkafka", "1 aiokafka"]
        # the principal is the certificate's subject: dave, of the same CA, has no ACL
        dave = ca.issue("dave", "/O=Acme/CN=dave", "client")
        code, out, err = await kcat(
            "-b", mtls, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={ca.cert}",
            "-X", f"ssl.certificate.location={dave[0]}", "-X", f"ssl.key.location={dave[1]}",
            "-C", "-t", "orders", "-o", "beginning", "-e",
        )  # fmt: skip
        assert (code, out) == (1, "")
        assert "Topic authorization failed" in err, err


async def s_client(address: str, ca: Path, version: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", address, "-CAfile", str(ca), version,
        "-verify_return_error", "-brief",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_openssl_s_client_meets_tls_1_2_at_least(tmp_path: Path, ca: OpensslCA) -> None:
    server = ca.issue("server", "/CN=localhost", "server")
    async with Broker(broker_config(tmp_path / "data", ca, server)) as broker:
        address = broker.bootstraps["secure"]
        for version, protocol in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            code, out = await s_client(address, ca.cert, version)
            assert code == 0, out
            assert f"Protocol version: {protocol}" in out
            assert "Verification: OK" in out
        code, out = await s_client(address, ca.cert, "-tls1_1")
        assert code != 0
        assert "Protocol version" not in out


async def test_an_expired_server_certificate_is_refused(
    tmp_path: Path, ca: OpensslCA, caplog: pytest.LogCaptureFixture
) -> None:
    expired = ca.issue(
        "expired", "/CN=localhost", "server",
        ("-startdate", "20200101000000Z", "-enddate", "20200102000000Z"),
    )  # fmt: skip
    assert "notAfter=Jan  2 00:00:00 2020 GMT" in openssl(
        "x509", "-in", str(expired[0]), "-noout", "-enddate"
    )
    async with Broker(broker_config(tmp_path / "data", ca, expired)) as broker:
        address = broker.bootstraps["secure"]
        settings = BrokerSettings.model_validate(
            {
                "bootstrap": [address],
                "security": {
                    "tls": {"ca": str(ca.cert)},
                    "sasl": {"mechanism": "PLAIN", "username": "alice",
                             "password": USERS["alice"]},
                },
            }
        )  # fmt: skip
        with pytest.raises(BackboneError) as refused:
            await KafkaClients(address, settings).check(timeout_s=20)
        assert str(refused.value) == (
            f"TLS: the certificate of {address} is not trusted (certificate has expired); "
            "set broker.security.tls.ca (or verify_hostname)"
        )
        code, _, err = await kcat(
            "-b", address, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=alice", "-X", f"sasl.password={USERS['alice']}",
            "-X", f"ssl.ca.location={ca.cert}", "-L", "-m", "10",
        )  # fmt: skip
        assert code != 0
        assert "SSL handshake failed" in err and "certificate verify failed" in err, err
        assert broker.security.authentications == 0
        # the broker's log says the client refused its certificate
        said = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
        assert said and all(
            "listener secure (SASL_SSL): TLS handshake failed: SSLV3_ALERT_CERTIFICATE_EXPIRED: "
            "the client refused the broker's certificate" in line
            for line in said
        ), said


def test_backbone_certs_pass_openssl_verify(tmp_path: Path, ca: OpensslCA) -> None:
    from backbone.certs import create_ca, issue

    ours = create_ca("backbone CA")
    ours.write(tmp_path / "ours.pem", tmp_path / "ours.key")
    issue(ours, "kafka.example", hosts=["kafka.example", "127.0.0.1"], client=False).write(
        tmp_path / "server.pem", tmp_path / "server.key"
    )
    out = openssl(
        "verify", "-CAfile", str(tmp_path / "ours.pem"), "-purpose", "sslserver",
        "-verify_hostname", "kafka.example", str(tmp_path / "server.pem"),
    )  # fmt: skip
    assert out.strip() == f"{tmp_path / 'server.pem'}: OK"
    names = openssl("x509", "-in", str(tmp_path / "server.pem"), "-noout", "-ext",
                    "subjectAltName")  # fmt: skip
    assert "DNS:kafka.example" in names and "IP Address:127.0.0.1" in names
    # and a certificate of another CA is not accepted as one of ours
    stranger = ca.issue("stranger", "/CN=kafka.example", "server")
    with pytest.raises(AssertionError, match="verify"):
        openssl("verify", "-CAfile", str(tmp_path / "ours.pem"), str(stranger[0]))


async def test_the_readmes_openssl_commands_make_a_working_listener(tmp_path: Path) -> None:
    """README "Security" shows how to make a CA and a server certificate with openssl:
    those commands, run as written, give a certificate the broker serves and s_client
    verifies."""
    if shutil.which("openssl") is None or shutil.which("bash") is None:
        unavailable("the openssl command line and bash are needed to run the README's commands")
    readme = README.read_text()
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "openssl x509 -req" in b]
    commands = "\n".join(
        line for line in block.splitlines() if not line.startswith("openssl s_client")
    )
    done = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", commands, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    assert done.returncode == 0, out.decode()
    config = BrokerConfig(
        data_dir=tmp_path / "data",
        listeners=(parse_listener("tls", "127.0.0.1:0", "SSL"),),
        tls=TlsSettings(tmp_path / "server.pem", tmp_path / "server.key"),
    )
    async with Broker(config) as broker:
        code, said = await s_client(broker.bootstraps["tls"], tmp_path / "ca.pem", "-tls1_3")
        assert code == 0, said
        assert "Protocol version: TLSv1.3" in said and "Verification: OK" in said
