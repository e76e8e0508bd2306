"""Real clients over real TLS against a secured broker: SASL_SSL (SCRAM-SHA-512,
SCRAM-SHA-256, PLAIN) with confluent-kafka, aiokafka, kafka-python and kcat; mutual TLS;
refusals (wrong password, unknown user, expired or untrusted certificate) that leave
nothing readable; the SASL gate; session lifetime and re-authentication (KIP-368).

The broker (tests/broker/secured.py) has a PLAINTEXT, a SASL_SSL and an SSL listener;
users admin (super user), alice and bob; alice may use every topic and group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.errors import KafkaTimeoutError

from backbone.broker import Broker, BrokerConfig
from backbone.broker.protocol import (
    ApiVersionsRequest,
    MetadataRequest,
    SaslAuthenticateRequest,
    SaslHandshakeRequest,
)
from backbone.broker.security import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)
from backbone.testing import wait_until
from tests.broker.secured import (
    USERS,
    Certs,
    Wire,
    add_users,
    aiokafka_settings,
    client_context,
    confluent_settings,
    kafka_python_settings,
    kcat_settings,
    make_certs,
    secured_config,
)
from tests.broker.test_log_support import make_batch
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(120)


def allow_everything(user: str) -> list[AclBinding]:
    return [
        AclBinding(
            rtype, "*", PatternType.LITERAL, user, "*", AclOperation.ALL, AclPermission.ALLOW
        )
        for rtype in (ResourceType.TOPIC, ResourceType.GROUP)
    ]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
def broker_config(tmp_path: Path, certs: Certs) -> BrokerConfig:
    data = tmp_path / "data"
    add_users(data)
    return secured_config(data, certs)


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {"orders": 1}


@pytest.fixture
async def secured(broker: Broker) -> Broker:
    await asyncio.to_thread(
        broker.security.acls.add,
        allow_everything("User:alice") + allow_everything("User:CN=alice"),
    )
    return broker


async def blocking(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(func, *args), 60)


# -- confluent-kafka (librdkafka) ---------------------------------------------------


def confluent_roundtrip(
    bootstrap: str, conf: dict[str, Any], topic: str, count: int
) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    errors: list[Any] = []
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(30) == 0
    assert errors == [None] * count
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "confluent",
            "enable.auto.commit": False,
            **conf,
        }
    )
    try:
        consumer.assign([CTopicPartition(topic, 0, 0)])
        out: list[bytes] = []
        for _ in range(60):
            if len(out) >= count:
                break
            for msg in consumer.consume(count, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append(msg.value())
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
async def test_confluent_sasl_ssl(secured: Broker, certs: Certs, mechanism: str) -> None:
    conf = confluent_settings(certs, "alice", mechanism=mechanism)
    values = await blocking(confluent_roundtrip, secured.bootstraps["secure"], conf, "orders", 3)
    assert values == [b"v0", b"v1", b"v2"]
    assert secured.security.authentications >= 2


def confluent_error(bootstrap: str, conf: dict[str, Any]) -> str:
    """The first error librdkafka reports for a consumer that cannot connect."""
    errors: list[str] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "refused",
            "error_cb": lambda err: errors.append(err.str()),
            **conf,
        }
    )
    try:
        consumer.assign([CTopicPartition("orders", 0, 0)])
        for _ in range(40):
            for msg in consumer.consume(10, timeout=0.5):
                assert msg.error() is not None, "a refused client read a record"
            if errors:
                return errors[0]
        raise AssertionError("no error reported")
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("mallory", "alice-secret")],
    ids=["wrong-password", "unknown-user"],
)
async def test_confluent_refused_reads_nothing(
    secured: Broker, certs: Certs, user: str, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "backbone.broker.security")
    await blocking(
        confluent_roundtrip,
        secured.bootstraps["secure"],
        confluent_settings(certs, "alice"),
        "orders",
        2,
    )
    error = await blocking(
        confluent_error, secured.bootstraps["secure"], confluent_settings(certs, user, password)
    )
    assert "Authentication failed" in error and "SCRAM-SHA-512" in error
    failures = [r.getMessage() for r in caplog.records if "SCRAM-SHA-512, user" in r.getMessage()]
    assert failures and failures[0].startswith("failed authentication from 127.0.0.1:")
    assert f"(SCRAM-SHA-512, user '{user}'): invalid credentials" in failures[0]
    assert not any(password in r.getMessage() for r in caplog.records)


# -- aiokafka -----------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_aiokafka_sasl_ssl(secured: Broker, certs: Certs, mechanism: str) -> None:
    settings = aiokafka_settings(certs, "alice", mechanism=mechanism)
    bootstrap = secured.bootstraps["secure"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **settings)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait("orders", f"a{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="aio",
        auto_offset_reset="earliest",
        **aiokafka_settings(certs, "alice", mechanism=mechanism),
    )
    await consumer.start()
    try:
        consumer.subscribe(["orders"])
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < 3:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [r.value for r in records]
        await consumer.commit()
        committed = await consumer.committed(TopicPartition("orders", 0))
    finally:
        await consumer.stop()
    assert got == [b"a0", b"a1", b"a2"]
    assert committed == 3


@pytest.mark.parametrize(("user", "password"), [("alice", "nope"), ("nobody", "x")])
async def test_aiokafka_refused(secured: Broker, certs: Certs, user: str, password: str) -> None:
    consumer = AIOKafkaConsumer(
        "orders",
        bootstrap_servers=secured.bootstraps["secure"],
        request_timeout_ms=10_000,
        **aiokafka_settings(certs, user, password),
    )
    with pytest.raises(KafkaError) as refused:
        await consumer.start()
    await consumer.stop()
    assert isinstance(refused.value, KafkaConnectionError) or "Authentication failed" in str(
        refused.value
    )


async def test_sasl_plaintext_listener(tmp_path: Path, certs: Certs) -> None:
    data = tmp_path / "plain-data"
    add_users(data)
    from backbone.broker.config import parse_listener

    config = BrokerConfig(
        data_dir=data,
        listeners=(parse_listener("sasl", "127.0.0.1:0", "SASL_PLAINTEXT"),),
        sasl_mechanisms=("SCRAM-SHA-256",),
    )
    async with Broker(config) as broker:
        await asyncio.to_thread(broker.security.acls.add, allow_everything("User:bob"))
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username="bob",
            sasl_plain_password=USERS["bob"],
        )
        await producer.start()
        try:
            result = await producer.send_and_wait("plain", b"x")
        finally:
            await producer.stop()
        assert result.offset == 0
        assert broker.logs.partition("plain", 0).high_watermark == 1


# -- kafka-python -------------------------------------------------------------------


def kafka_python_roundtrip(bootstrap: str, settings: dict[str, Any], count: int) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **settings)
    try:
        for i in range(count):
            producer.send("orders", f"k{i}".encode()).get(20)
    finally:
        producer.close(10)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **settings,
    )
    try:
        consumer.assign([KTopicPartition("orders", 0)])
        out: list[bytes] = []
        for _ in range(60):
            if len(out) >= count:
                break
            for records in consumer.poll(timeout_ms=500).values():
                out += [r.value for r in records]
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_kafka_python_sasl_ssl(secured: Broker, certs: Certs, mechanism: str) -> None:
    settings = kafka_python_settings(certs, "alice", mechanism=mechanism)
    values = await blocking(kafka_python_roundtrip, secured.bootstraps["secure"], settings, 3)
    assert values == [b"k0", b"k1", b"k2"]


async def test_kafka_python_wrong_password(secured: Broker, certs: Certs) -> None:
    def send() -> None:
        producer = KafkaProducer(
            bootstrap_servers=secured.bootstraps["secure"],
            api_version=(2, 8),  # no eager bootstrap: the failure comes from send()
            max_block_ms=3000,
            **kafka_python_settings(certs, "alice", "wrong"),
        )
        try:
            producer.send("orders", b"never").get(10)
        finally:
            producer.close(5)

    # kafka-python retries a refused connection until its timeout, then gives up
    with pytest.raises(KafkaTimeoutError, match="Failed to update metadata"):
        await blocking(send)
    assert secured.security.failures.total >= 1
    assert secured.security.authentications == 0
    assert secured.logs.partition("orders", 0).high_watermark == 0


# -- kcat ---------------------------------------------------------------------------


async def kcat(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    if shutil.which("kcat") is None:
        unavailable("kcat is not installed (make system-deps installs it)")
    proc = await asyncio.create_subprocess_exec(
        "kcat",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 40)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_kcat_sasl_ssl(secured: Broker, certs: Certs, mechanism: str) -> None:
    bootstrap = secured.bootstraps["secure"]
    auth = kcat_settings(certs, "alice", mechanism=mechanism)
    code, _, err = await kcat(
        "-b", bootstrap, *auth, "-P", "-t", "orders", "-K:", stdin=b"k1:one\nk2:two\n"
    )
    assert code == 0, err
    code, out, err = await kcat(
        "-b", bootstrap, *auth, "-C", "-t", "orders", "-o", "beginning", "-e", "-f", "%k=%s\\n"
    )
    assert code == 0, err
    assert out.splitlines() == ["k1=one", "k2=two"]
    code, out, err = await kcat("-b", bootstrap, *auth, "-L", "-J")
    assert code == 0, err
    metadata = json.loads(out)
    assert metadata["brokers"] == [{"id": 0, "name": bootstrap}]  # the secure listener's address


async def test_kcat_wrong_password_reads_nothing(secured: Broker, certs: Certs) -> None:
    await secured.logs.partition("orders", 0).append(make_batch([b"secret"]), acks=-1)
    code, out, err = await kcat(
        "-b",
        secured.bootstraps["secure"],
        *kcat_settings(certs, "alice", "wrong"),
        "-C",
        "-t",
        "orders",
        "-o",
        "beginning",
        "-e",
        "-m",
        "10",
    )
    assert code != 0
    assert "secret" not in out
    assert "Authentication failed" in err


# -- mutual TLS ---------------------------------------------------------------------


@pytest.fixture
def mtls_config(tmp_path: Path, certs: Certs) -> BrokerConfig:
    return secured_config(tmp_path / "mtls-data", certs, client_auth="required")


async def test_mutual_tls_names_the_principal(mtls_config: BrokerConfig, certs: Certs) -> None:
    async with Broker(mtls_config) as broker:
        await broker.logs.create_topic("orders", 1)
        acls = [
            AclBinding(
                ResourceType.TOPIC,
                "orders",
                PatternType.LITERAL,
                "User:CN=alice",
                "*",
                op,
                AclPermission.ALLOW,
            )
            for op in (AclOperation.WRITE, AclOperation.READ)
        ] + [
            AclBinding(
                ResourceType.GROUP,
                "x",
                PatternType.LITERAL,
                "User:CN=alice",
                "*",
                AclOperation.READ,
                AclPermission.ALLOW,
            )
        ]
        await asyncio.to_thread(broker.security.acls.add, acls)
        bootstrap = broker.bootstraps["mtls"]
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, **aiokafka_settings(certs, cert="alice")
        )
        await producer.start()
        try:
            await producer.send_and_wait("orders", b"over mTLS")
        finally:
            await producer.stop()
        conf = confluent_settings(certs, None)
        values = await blocking(_confluent_read, bootstrap, conf, "orders")
        assert values == [b"over mTLS"]
        code, out, err = await kcat(
            "-b",
            bootstrap,
            "-X",
            "security.protocol=SSL",
            "-X",
            f"ssl.ca.location={certs.ca}",
            "-X",
            f"ssl.certificate.location={certs.pair('alice')[0]}",
            "-X",
            f"ssl.key.location={certs.pair('alice')[1]}",
            "-C",
            "-t",
            "orders",
            "-o",
            "beginning",
            "-e",
        )
        assert code == 0, err
        assert out.splitlines() == ["over mTLS"]
        cert, key = certs.pair("alice")
        settings = {
            "security_protocol": "SSL",
            "ssl_cafile": str(certs.ca),
            "ssl_certfile": str(cert),
            "ssl_keyfile": str(key),
        }
        values = await blocking(kafka_python_roundtrip, bootstrap, settings, 2)
        assert values[:2] == [b"over mTLS", b"k0"]


def _confluent_read(bootstrap: str, conf: dict[str, Any], topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "x", **conf})
    try:
        consumer.assign([CTopicPartition(topic, 0, 0)])
        for _ in range(60):
            msgs = consumer.consume(10, timeout=0.5)
            if msgs:
                assert all(m.error() is None for m in msgs), [m.error() for m in msgs]
                return [m.value() for m in msgs]
        return []
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "cert", ["expired", "stranger", None], ids=["expired", "untrusted", "none"]
)
async def test_mutual_tls_refuses(
    mtls_config: BrokerConfig, certs: Certs, cert: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "backbone.broker.security")
    async with Broker(mtls_config) as broker:
        await broker.logs.create_topic("orders", 1)
        await broker.logs.partition("orders", 0).append(make_batch([b"private"]), acks=-1)
        port = broker.bootstraps["mtls"].rsplit(":", 1)[1]
        wire: Wire | None = None
        with pytest.raises((ConnectionError, OSError, asyncio.IncompleteReadError)):
            wire = await Wire.open(int(port), client_context(certs, cert))
            # TLS 1.3 reports a refused client certificate on the first read
            await wire.send(MetadataRequest(topics=None), 1)
        if wire is not None:
            await wire.close()
        code, out, _ = await kcat(
            "-b",
            broker.bootstraps["mtls"],
            "-X",
            "security.protocol=SSL",
            "-X",
            f"ssl.ca.location={certs.ca}",
            *(
                [
                    "-X",
                    f"ssl.certificate.location={certs.pair(cert)[0]}",
                    "-X",
                    f"ssl.key.location={certs.pair(cert)[1]}",
                ]
                if cert
                else []
            ),
            "-C",
            "-t",
            "orders",
            "-o",
            "beginning",
            "-e",
            "-m",
            "5",
        )
        assert code != 0 and "private" not in out
        await wait_until(
            lambda: any("TLS handshake failed" in r.getMessage() for r in caplog.records),
            within=40,
            what="the refused handshake's log line",
        )
        line = next(
            r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()
        )
        assert line.startswith("failed authentication from 127.0.0.1:")


# -- the SASL gate ------------------------------------------------------------------


async def test_unauthenticated_sasl_connection_may_only_ask_versions_and_authenticate(
    secured: Broker, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port = int(secured.bootstraps["secure"].rsplit(":", 1)[1])
    wire = await Wire.open(port, client_context(certs))
    try:
        versions = await wire.send(ApiVersionsRequest(), 0)
        assert versions.error_code == 0
        keys = {k.api_key for k in versions.api_keys}
        assert {17, 36, 29, 30, 31, 50, 51} <= keys
        handshake = await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        assert (handshake.error_code, handshake.mechanisms) == (
            0,
            ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"],
        )
        wire.writer.write(b"\x00\x00\x00\x0c\x00\x03\x00\x01\x00\x00\x00\x09\xff\xff\x00\x00")
        assert await wire.closed_by_broker()
    finally:
        await wire.close()
    assert any(
        "Metadata is not allowed during SASL authentication (SASL listener)" in r.getMessage()
        for r in caplog.records
    )
    wire = await Wire.open(port, client_context(certs))
    try:
        wire.writer.write(b"\x00\x00\x00\x0c\x00\x03\x00\x01\x00\x00\x00\x09\xff\xff\x00\x00")
        assert await wire.closed_by_broker()
    finally:
        await wire.close()


async def test_unsupported_mechanism_is_answered_then_closed(secured: Broker, certs: Certs) -> None:
    port = int(secured.bootstraps["secure"].rsplit(":", 1)[1])
    wire = await Wire.open(port, client_context(certs))
    try:
        answer = await wire.send(SaslHandshakeRequest(mechanism="GSSAPI"), 1)
        assert answer.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert answer.mechanisms == ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
        assert await wire.closed_by_broker()
    finally:
        await wire.close()


async def test_plaintext_listener_refuses_sasl_requests(secured: Broker) -> None:
    wire = await Wire.open(int(secured.bootstraps["internal"].rsplit(":", 1)[1]))
    try:
        answer = await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        assert answer.error_code == 34  # ILLEGAL_SASL_STATE
    finally:
        await wire.close()


# -- session lifetime and re-authentication (KIP-368) --------------------------------


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def broker_clock() -> Clock:
    return Clock()


async def test_session_expires_and_plain_reauthentication_renews_it(
    broker: Broker, broker_clock: Clock, certs: Certs, tmp_path: Path
) -> None:
    broker.security.session_lifetime_ms = 5000
    port = int(broker.bootstraps["secure"].rsplit(":", 1)[1])
    wire = await Wire.open(port, client_context(certs))
    plain = b"\0alice\0" + USERS["alice"].encode()
    try:
        assert (await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)).error_code == 0
        auth = await wire.send(SaslAuthenticateRequest(auth_bytes=plain), 1)
        assert (auth.error_code, auth.session_lifetime_ms) == (0, 5000)
        assert (await wire.send(MetadataRequest(topics=None), 1)).brokers
        broker_clock.offset = 6.0  # the session is over
        assert (await wire.send(ApiVersionsRequest(), 0)).error_code == 0
        assert (await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)).error_code == 0
        again = await wire.send(SaslAuthenticateRequest(auth_bytes=plain), 2)
        assert (again.error_code, again.session_lifetime_ms) == (0, 5000)
        assert (await wire.send(MetadataRequest(topics=None), 1)).brokers
        assert broker.security.reauthentications == 1
        broker_clock.offset = 12.0
        wire.writer.write(b"\x00\x00\x00\x0c\x00\x03\x00\x01\x00\x00\x00\x09\xff\xff\x00\x00")
        assert await wire.closed_by_broker()
    finally:
        await wire.close()


async def test_reauthentication_as_another_user_is_refused(broker: Broker, certs: Certs) -> None:
    port = int(broker.bootstraps["secure"].rsplit(":", 1)[1])
    wire = await Wire.open(port, client_context(certs))
    try:
        await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        ok = await wire.send(SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"), 2)
        assert ok.error_code == 0
        await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
        refused = await wire.send(SaslAuthenticateRequest(auth_bytes=b"\0bob\0bob-secret"), 2)
        assert refused.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert await wire.closed_by_broker()
    finally:
        await wire.close()


def _wheel_librdkafka() -> bool:
    import confluent_kafka

    return tuple(int(p) for p in confluent_kafka.libversion()[0].split(".")[:2]) >= (2, 2)


async def test_librdkafka_reauthenticates_before_the_session_ends(
    tmp_path: Path, certs: Certs
) -> None:
    if not _wheel_librdkafka():
        pytest.skip("librdkafka < 2.2 does not re-authenticate (KIP-368)")
    data = tmp_path / "reauth"
    add_users(data)
    config = secured_config(data, certs, session_lifetime_ms=1500)
    async with Broker(config) as broker:
        await broker.logs.create_topic("orders", 1)
        await asyncio.to_thread(broker.security.acls.add, allow_everything("User:alice"))
        conf = confluent_settings(certs, "alice")
        bootstrap = broker.bootstraps["secure"]
        stop = asyncio.Event()

        def keep_producing() -> int:
            producer = Producer(
                {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **conf}
            )
            sent = 0
            failed: list[Any] = []
            while not stop.is_set():
                producer.produce(
                    "orders", f"m{sent}".encode(), on_delivery=lambda e, _m: e and failed.append(e)
                )
                sent += 1
                producer.poll(0.05)
            assert producer.flush(30) == 0
            assert failed == []
            return sent

        task = asyncio.create_task(asyncio.to_thread(keep_producing))
        try:
            await wait_until(
                lambda: broker.security.reauthentications >= 2,
                within=40,
                what="two re-authentications",
            )
        finally:
            stop.set()
        sent = await asyncio.wait_for(task, 40)
        assert broker.logs.partition("orders", 0).high_watermark == sent
        assert broker.security.reauthentications >= 2


async def test_failed_authentications_are_delayed(
    secured: Broker, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "backbone.broker.security")
    port = int(secured.bootstraps["secure"].rsplit(":", 1)[1])
    for attempt in range(3):
        wire = await Wire.open(port, client_context(certs))
        try:
            await wire.send(SaslHandshakeRequest(mechanism="PLAIN"), 1)
            answer = await wire.send(SaslAuthenticateRequest(auth_bytes=b"\0bob\0guess"), 1)
            assert answer.error_code == 58
            assert answer.error_message == (
                "Authentication failed during authentication due to invalid credentials "
                "with SASL mechanism PLAIN"
            )
            assert await wire.closed_by_broker()
        finally:
            await wire.close()
        assert secured.security.failures.total == attempt + 1
    # logged with the peer address and the user, never the password
    lines = [r.getMessage() for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(
            r"failed authentication from 127\.0\.0\.1:\d+ \(PLAIN, user 'bob'\): .+", line
        ), line
        assert "guess" not in line
    delays = secured.security.failures
    assert delays.record("x", "127.0.0.1", "PLAIN", "bob", "again") == pytest.approx(0.08)


#: An ApiVersions v0 request, framed: api key 18, version 0, correlation id 1, client "t".
API_VERSIONS_V0 = b"\x00\x00\x00\x0b\x00\x12\x00\x00\x00\x00\x00\x01\x00\x01t"


async def test_wrong_protocol_on_a_listener_is_named_in_the_log(
    secured: Broker, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain Kafka to a TLS listener, TLS or HTTP to a plain one: the connection closes and
    the broker's log says what the client spoke (the client gets no answer to misread)."""
    caplog.set_level(logging.INFO, logger="backbone.broker")
    plain_to_tls = await Wire.open(int(secured.bootstraps["secure"].rsplit(":", 1)[1]))
    plain_to_tls.writer.write(API_VERSIONS_V0)
    assert await plain_to_tls.closed_by_broker()
    await plain_to_tls.close()
    internal = int(secured.bootstraps["internal"].rsplit(":", 1)[1])
    with pytest.raises((ConnectionError, OSError)):  # the handshake meets a closed socket
        tls_to_plain = await asyncio.wait_for(Wire.open(internal, client_context(certs)), 20)
        await tls_to_plain.close()
    http = await Wire.open(internal)
    http.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await http.closed_by_broker()
    await http.close()

    def said(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    await wait_until(lambda: len(said("HTTP request")) == 1, within=40, what="the HTTP request")
    assert (
        len(
            said(
                "listener secure (SASL_SSL): TLS handshake failed: WRONG_VERSION_NUMBER: "
                "the client does not speak TLS"
            )
        )
        == 1
    )
    assert (
        len(
            said(
                "it opened with a TLS handshake on a listener without TLS (the client's "
                "security.protocol is SSL or SASL_SSL: use a TLS listener)"
            )
        )
        == 1
    )
    assert said("it sent an HTTP request to the Kafka listener")
    assert secured.logs.topics.keys() == {"__consumer_offsets", "orders"}


# -- listeners ----------------------------------------------------------------------


async def test_each_listener_advertises_its_own_address(tmp_path: Path, certs: Certs) -> None:
    """Metadata through a listener names that listener's advertised address: clients of the
    loopback PLAINTEXT listener stay on it, clients of the SASL_SSL one are sent to its
    ``advertised`` name (here ``localhost``, which the server certificate also holds)."""
    from backbone.broker.config import parse_listener
    from tests.servers import free_port

    secure_port = free_port()
    data = tmp_path / "data"
    add_users(data)
    config = secured_config(data, certs)
    config = BrokerConfig(
        data_dir=data,
        listeners=(
            parse_listener("internal", "127.0.0.1:0", "PLAINTEXT"),
            parse_listener(
                "secure", f"127.0.0.1:{secure_port}", "SASL_SSL", f"localhost:{secure_port}"
            ),
        ),
        tls=config.tls,
        sasl_mechanisms=config.sasl_mechanisms,
        super_users=("admin", "ANONYMOUS"),
    )
    async with Broker(config) as broker:
        await broker.logs.create_topic("orders", 1)
        internal = broker.bootstraps["internal"]
        assert broker.bootstraps["secure"] == f"localhost:{secure_port}"

        def brokers(conf: dict[str, Any]) -> list[tuple[str, int]]:
            from confluent_kafka.admin import AdminClient

            metadata = AdminClient(conf).list_topics(timeout=30)
            return [(b.host, b.port) for b in metadata.brokers.values()]

        host, port = internal.rsplit(":", 1)
        assert await blocking(brokers, {"bootstrap.servers": internal}) == [(host, int(port))]
        secure_conf = {
            "bootstrap.servers": f"127.0.0.1:{secure_port}",
            **confluent_settings(certs, "admin"),
        }
        assert await blocking(brokers, secure_conf) == [("localhost", secure_port)]
        # a client that follows the advertised address gets there over TLS and SASL
        values = await blocking(
            confluent_roundtrip, f"127.0.0.1:{secure_port}", confluent_settings(certs, "admin"),
            "orders", 2,
        )  # fmt: skip
        assert values == [b"v0", b"v1"]
