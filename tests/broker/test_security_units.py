"""The broker's security package without sockets: SCRAM (RFC 7677's exchange), PLAIN and
OAUTHBEARER messages and JWT checks, the user and ACL stores, the authorizer's rules,
the SASL session's transition table, failure delays and principals from certificates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from backbone.broker.errors import InvalidRequest
from backbone.broker.listeners import OAuthBearerSettings
from backbone.broker.security import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    AclStore,
    Authorizer,
    PatternType,
    ResourceType,
    SaslAuthenticationFailed,
    SaslSession,
    SaslState,
    ScramCredential,
    UserStore,
)
from backbone.broker.security.errors import IllegalSaslState, UnacceptableCredential
from backbone.broker.security.failures import MAX_DELAY_S, AuthFailures
from backbone.broker.security.mechanisms import TokenValidator, parse_oauthbearer, parse_plain
from backbone.broker.security.scram import ScramExchange
from backbone.broker.security.tls import certificate_principal
from tests.broker.expect import exactly

# -- SCRAM ------------------------------------------------------------------------------

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"


def rfc7677_exchange() -> ScramExchange:
    credential = ScramCredential.from_password(
        "SCRAM-SHA-256", "pencil", iterations=4096, salt=RFC7677_SALT
    )
    return ScramExchange(
        "SCRAM-SHA-256",
        lambda user: credential if user == "user" else None,
        b"k" * 32,
        nonce=RFC7677_NONCE,
    )


def test_scram_sha_256_exchange_of_rfc_7677() -> None:
    exchange = rfc7677_exchange()
    server_first = exchange.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert server_first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    server_final = exchange.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert server_final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert exchange.complete and exchange.user == "user"


def test_scram_wrong_proof_fails_without_saying_why_beyond_credentials() -> None:
    exchange = rfc7677_exchange()
    exchange.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    bad = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(SaslAuthenticationFailed, match=exactly("invalid credentials")):
        exchange.step(f"c=biws,r=rOprNGfwEbeRWgbNEkqO{RFC7677_NONCE},p={bad}".encode())
    assert not exchange.complete


def test_scram_unknown_user_gets_a_stable_fake_salt_and_fails_at_the_proof() -> None:
    first = rfc7677_exchange().step(b"n,,n=nobody,r=abc").decode()
    again = rfc7677_exchange().step(b"n,,n=nobody,r=abc").decode()
    assert first.split(",")[1] == again.split(",")[1]  # same salt: looks like a real user
    assert first.endswith(",i=4096")
    exchange = rfc7677_exchange()
    exchange.step(b"n,,n=nobody,r=abc")
    proof = base64.b64encode(b"\1" * 32).decode()
    with pytest.raises(SaslAuthenticationFailed, match=exactly("invalid credentials")):
        exchange.step(f"c=biws,r=abc{RFC7677_NONCE},p={proof}".encode())


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"p=tls-unique,,n=user,r=x", "SCRAM channel binding is not supported"),
        (b"n,,r=x,n=user", "malformed SCRAM client-first message"),
        (b"n,,n=us=er,r=x", "malformed SCRAM user name"),
        (b"n,a=other,n=user,r=x", "SCRAM authorization id must be the user name"),
        (b"n,,n=user,r=x,t=true", "SCRAM extensions are not supported"),
        (b"\xff", "SCRAM messages must be UTF-8"),
    ],
)
def test_scram_refuses_malformed_first_messages(message: bytes, reason: str) -> None:
    with pytest.raises(SaslAuthenticationFailed, match=exactly(reason)):
        rfc7677_exchange().step(message)


def test_scram_accepts_the_nonce_of_librdkafka_before_2_6_1() -> None:
    credential = ScramCredential.from_password("SCRAM-SHA-256", "pencil", salt=RFC7677_SALT)
    exchange = ScramExchange("SCRAM-SHA-256", lambda _u: credential, b"k", nonce="SRV")
    exchange.step(b"n,,n=user,r=CLI")
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", RFC7677_SALT, 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = "c=biws,r=CLICLISRV"  # librdkafka#4895: client nonce twice
    auth = f"n=user,r=CLI,r=CLISRV,s={base64.b64encode(RFC7677_SALT).decode()},i=4096,"
    signature = hmac.new(
        hashlib.sha256(client_key).digest(), (auth + without_proof).encode(), "sha256"
    ).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    assert exchange.step(f"{without_proof},p={proof.decode()}".encode()).startswith(b"v=")
    assert exchange.complete


def test_scram_final_message_must_repeat_nonce_and_binding() -> None:
    exchange = rfc7677_exchange()
    exchange.step(b"n,,n=user,r=abc")
    with pytest.raises(SaslAuthenticationFailed, match=exactly("SCRAM nonce does not match")):
        exchange.step(b"c=biws,r=abcX,p=AAAA")
    exchange = rfc7677_exchange()
    exchange.step(b"n,,n=user,r=abc")
    with pytest.raises(
        SaslAuthenticationFailed, match=exactly("SCRAM channel binding does not match")
    ):
        exchange.step(f"c=eSws,r=abc{RFC7677_NONCE},p=AAAA".encode())


def test_scram_credential_keeps_no_password_and_checks_one() -> None:
    credential = ScramCredential.from_password("SCRAM-SHA-512", "s3cret", iterations=4096)
    salted = hashlib.pbkdf2_hmac("sha512", b"s3cret", credential.salt, 4096)
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    assert credential.stored_key == hashlib.sha512(client_key).digest()
    assert credential.server_key == hmac.new(salted, b"Server Key", "sha512").digest()
    assert credential.check_password("s3cret")
    assert not credential.check_password("S3cret")
    stored = json.dumps(credential.to_json())
    assert "s3cret" not in stored and base64.b64encode(salted).decode() not in stored


@pytest.mark.parametrize(
    ("mechanism", "iterations", "salted", "reason"),
    [
        ("SCRAM-SHA-256", 4095, 32, "iterations must be 4096-16384 (got 4095)"),
        ("SCRAM-SHA-512", 16385, 64, "iterations must be 4096-16384 (got 16385)"),
        ("SCRAM-SHA-512", 4096, 32, "a SCRAM-SHA-512 salted password has 64 bytes (got 32)"),
        ("SCRAM-SHA-1", 4096, 20, "'SCRAM-SHA-1' is not a SCRAM mechanism"),
    ],
)
def test_scram_credentials_kafka_would_refuse(
    mechanism: str, iterations: int, salted: int, reason: str
) -> None:
    with pytest.raises(UnacceptableCredential, match=exactly(reason)):
        ScramCredential.from_salted_password(mechanism, b"salt", iterations, b"x" * salted)


# -- PLAIN and OAUTHBEARER messages ---------------------------------------------------


def test_plain_message() -> None:
    assert parse_plain(b"\0alice\0pw").password == "pw"
    assert parse_plain(b"alice\0alice\0pw").user == "alice"
    with pytest.raises(
        SaslAuthenticationFailed, match=exactly("SASL/PLAIN authorization id must be the user name")
    ):
        parse_plain(b"admin\0alice\0pw")
    with pytest.raises(SaslAuthenticationFailed, match=exactly("malformed SASL/PLAIN message")):
        parse_plain(b"alice:pw")


def test_oauthbearer_message() -> None:
    assert parse_oauthbearer(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01") == "abc.def.ghi"
    assert parse_oauthbearer(b"n,a=svc,\x01host=x\x01auth=Bearer t\x01\x01") == "t"
    with pytest.raises(
        SaslAuthenticationFailed, match=exactly("SASL/OAUTHBEARER message without a token")
    ):
        parse_oauthbearer(b"n,,\x01host=x\x01\x01")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict[str, object], secret: str = "shh", alg: str = "HS256") -> str:
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    digest = {"HS256": "sha256", "HS512": "sha512"}.get(alg, "sha256")
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64url(sig)}"


NOW = 1_700_000_000.0


def validator(**options: object) -> TokenValidator:
    settings = OAuthBearerSettings(**{"secret": "shh", **options})  # type: ignore[arg-type]
    return TokenValidator(settings, clock=lambda: NOW)


def test_jwt_hs256_principal_and_expiry() -> None:
    token = validator().validate(hs256({"sub": "svc-etl", "exp": NOW + 60}))
    assert token.principal == "User:svc-etl"
    assert token.expires_at == NOW + 60
    other = validator(principal_claim="client_id").validate(
        hs256({"sub": "x", "client_id": "gateway", "exp": NOW + 60}, alg="HS512")
    )
    assert other.principal == "User:gateway"


@pytest.mark.parametrize(
    ("token", "options", "reason"),
    [
        (hs256({"sub": "a", "exp": NOW + 60}, secret="other"), {}, "invalid token signature"),
        (hs256({"sub": "a", "exp": NOW - 31}), {}, "token expired"),
        (hs256({"sub": "a"}), {}, "token has no exp claim"),
        (hs256({"exp": NOW + 60}), {}, "token has no sub claim"),
        (hs256({"sub": "a", "exp": NOW + 60, "nbf": NOW + 100}), {}, "token not valid yet (nbf)"),
        (
            hs256({"sub": "a", "exp": NOW + 60, "iss": "evil"}),
            {"issuer": "https://idp"},
            "token issuer is not 'https://idp'",
        ),
        (
            hs256({"sub": "a", "exp": NOW + 60, "aud": ["x", "y"]}),
            {"audience": "kafka"},
            "token audience is not 'kafka'",
        ),
        (
            b64url(b'{"alg":"none"}') + "." + b64url(b'{"sub":"a","exp":2e9}') + ".",
            {},
            "token algorithm 'none' is not accepted",
        ),
        ("not-a-jwt", {}, "malformed token: not a JWT"),
    ],
)
def test_jwt_refusals(token: str, options: dict[str, object], reason: str) -> None:
    with pytest.raises(SaslAuthenticationFailed, match=exactly(reason)):
        validator(**options).validate(token)


def _signed(key: object, alg: str, claims: dict[str, object]) -> str:
    head = b64url(json.dumps({"alg": alg}).encode())
    body = b64url(json.dumps(claims).encode())
    data = f"{head}.{body}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{head}.{body}.{b64url(sig)}"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_jwt_signed_with_a_public_key(tmp_path: Path, alg: str) -> None:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = tmp_path / "idp.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    checker = TokenValidator(OAuthBearerSettings(public_key=pem), clock=lambda: NOW)
    assert checker.validate(_signed(key, alg, {"sub": "svc", "exp": NOW + 5})).principal == (
        "User:svc"
    )
    forged = _signed(
        ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else key,
        alg,
        {"sub": "svc", "exp": NOW + 5},
    )
    if alg == "RS256":  # tamper with the claims instead
        head, _, sig = forged.split(".")
        forged = f"{head}.{b64url(json.dumps({'sub': 'admin', 'exp': NOW + 5}).encode())}.{sig}"
    with pytest.raises(SaslAuthenticationFailed, match=exactly("invalid token signature")):
        checker.validate(forged)
    with pytest.raises(
        SaslAuthenticationFailed, match=exactly("token algorithm 'HS256' is not accepted")
    ):
        checker.validate(hs256({"sub": "svc", "exp": NOW + 5}))


# -- users and ACL stores ---------------------------------------------------------------


def test_user_store_keeps_salted_credentials_only_and_survives_reload(tmp_path: Path) -> None:
    store = UserStore.in_data_dir(tmp_path)
    store.apply(
        [
            ("alice", ScramCredential.from_password("SCRAM-SHA-512", "wonderland")),
            ("alice", ScramCredential.from_password("SCRAM-SHA-256", "wonderland")),
            ("bob", ScramCredential.from_password("SCRAM-SHA-256", "builder", iterations=8192)),
        ]
    )
    path = tmp_path / "security" / "users.json"
    text = path.read_text()
    assert "wonderland" not in text and "builder" not in text
    assert path.stat().st_mode & 0o777 == 0o600
    reloaded = UserStore.in_data_dir(tmp_path)
    assert {n: [(c.mechanism, c.iterations) for c in cs] for n, cs in reloaded.users().items()} == {
        "alice": [("SCRAM-SHA-512", 4096), ("SCRAM-SHA-256", 4096)],
        "bob": [("SCRAM-SHA-256", 8192)],
    }
    assert reloaded.check_password("alice", "wonderland")
    assert not reloaded.check_password("alice", "builder")
    assert not reloaded.check_password("carol", "x")
    reloaded.apply(deletions=[("bob", "SCRAM-SHA-256")])
    assert list(UserStore.in_data_dir(tmp_path).users()) == ["alice"]


def acl(
    name: str,
    operation: AclOperation,
    permission: AclPermission = AclPermission.ALLOW,
    *,
    principal: str = "User:alice",
    resource_type: ResourceType = ResourceType.TOPIC,
    pattern: PatternType = PatternType.LITERAL,
    host: str = "*",
) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def test_acl_store_is_durable_and_deduplicates(tmp_path: Path) -> None:
    store = AclStore.in_data_dir(tmp_path)
    store.add([acl("orders", AclOperation.READ), acl("orders", AclOperation.READ)])
    store.add([acl("pay.", AclOperation.WRITE, pattern=PatternType.PREFIXED)])
    again = AclStore.in_data_dir(tmp_path)
    assert again.acls == (
        acl("orders", AclOperation.READ),
        acl("pay.", AclOperation.WRITE, pattern=PatternType.PREFIXED),
    )
    removed = again.remove([AclFilter(operation=AclOperation.WRITE)])
    assert removed == [[acl("pay.", AclOperation.WRITE, pattern=PatternType.PREFIXED)]]
    assert AclStore.in_data_dir(tmp_path).acls == (acl("orders", AclOperation.READ),)


def test_acl_filter_match_finds_every_acl_for_one_resource() -> None:
    acls = [
        acl("orders", AclOperation.READ),
        acl("*", AclOperation.DESCRIBE),
        acl("ord", AclOperation.WRITE, pattern=PatternType.PREFIXED),
        acl("other", AclOperation.READ),
        acl("orders", AclOperation.READ, resource_type=ResourceType.GROUP),
    ]
    match = AclFilter(ResourceType.TOPIC, "orders", PatternType.MATCH)
    assert [a for a in acls if match.matches(a)] == acls[:3]
    literal = AclFilter(ResourceType.ANY, "orders", PatternType.LITERAL)
    assert [a for a in acls if literal.matches(a)] == [acls[0], acls[4]]
    anything = AclFilter(ResourceType.ANY, "ord", PatternType.ANY)
    assert [a for a in acls if anything.matches(a)] == [acls[2]]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ((1, "x", 3, "User:a", "*", 3, 3), "an ACL needs a resource type (not ANY)"),
        ((2, "x", 2, "User:a", "*", 3, 3), "an ACL's pattern type must be LITERAL or PREFIXED"),
        (
            (2, "x", 3, "alice", "*", 3, 3),
            "principal 'alice' must be written TYPE:NAME (User:alice)",
        ),
        (
            (4, "x", 3, "User:a", "*", 7, 3),
            "the cluster resource is named 'kafka-cluster' (got 'x')",
        ),
        ((2, "x", 3, "User:a", "*", 1, 3), "an ACL needs an operation (not ANY)"),
        ((2, "x", 3, "User:a", "*", 3, 9), "unknown permission type code 9"),
    ],
)
def test_acl_creations_kafka_refuses(fields: tuple[int | str, ...], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=exactly(reason)):
        AclBinding.checked(*fields)  # type: ignore[arg-type]


def test_authorizer_rules(tmp_path: Path) -> None:
    store = AclStore.in_data_dir(tmp_path)
    authorizer = Authorizer(store, super_users=["admin", "User:CN=ops"])
    T, G = ResourceType.TOPIC, ResourceType.GROUP
    Op = AclOperation

    def may(
        op: AclOperation,
        name: str,
        who: str = "User:alice",
        rtype: ResourceType = T,
        host: str = "10.0.0.1",
    ) -> bool:
        return authorizer.authorize(who, host, op, rtype, name)

    assert not may(Op.READ, "orders")  # nothing allowed without an ACL
    assert may(Op.DELETE, "anything", "User:admin") and may(Op.ALTER, "x", "User:CN=ops")
    store.add([acl("orders", Op.READ), acl("pay.", Op.WRITE, pattern=PatternType.PREFIXED)])
    assert may(Op.READ, "orders") and may(Op.DESCRIBE, "orders")  # READ implies DESCRIBE
    assert not may(Op.WRITE, "orders") and not may(Op.READ, "orders", "User:bob")
    assert may(Op.WRITE, "pay.eu") and not may(Op.WRITE, "payments")
    store.add([acl("*", Op.ALL, principal="User:bob")])
    assert may(Op.ALTER_CONFIGS, "whatever", "User:bob")
    store.add([acl("secret", Op.READ, AclPermission.DENY, principal="User:*")])
    assert not may(Op.READ, "secret", "User:bob")  # DENY wins over ALLOW
    assert may(Op.DESCRIBE, "secret", "User:bob")  # a DENY covers its own operation only
    store.add([acl("orders", Op.READ, principal="User:carol", host="10.0.0.2")])
    assert may(Op.READ, "orders", "User:carol", host="10.0.0.2")
    assert not may(Op.READ, "orders", "User:carol", host="10.0.0.3")
    store.add([acl("g1", Op.ALTER_CONFIGS, resource_type=G)])
    assert may(Op.DESCRIBE_CONFIGS, "g1", rtype=G) and not may(Op.READ, "g1", rtype=G)
    # an idempotent producer: WRITE on some topic, unless a DENY covers it
    assert authorizer.authorize_any("User:alice", "10.0.0.1", Op.WRITE, T)
    assert not authorizer.authorize_any("User:dave", "10.0.0.1", Op.WRITE, T)
    store.add([acl("pay.", Op.WRITE, AclPermission.DENY, pattern=PatternType.PREFIXED)])
    assert not authorizer.authorize_any("User:alice", "10.0.0.1", Op.WRITE, T)


# -- SASL session, failures, certificates ----------------------------------------------


def test_sasl_session_transitions_and_gate() -> None:
    session = SaslSession(sasl=True)
    session.admit(18, "ApiVersions", NOW)
    session.admit(17, "SaslHandshake", NOW)
    with pytest.raises(
        IllegalSaslState,
        match=exactly("Metadata is not allowed before SASL authentication (SASL listener)"),
    ):
        session.admit(3, "Metadata", NOW)
    session.move("handshake")
    assert session.state == SaslState.AUTHENTICATING
    with pytest.raises(IllegalSaslState, match="ApiVersions is not allowed during SASL"):
        session.admit(18, "ApiVersions", NOW)
    session.move("success")
    session.expires_at = NOW + 10
    session.admit(3, "Metadata", NOW + 9)
    with pytest.raises(
        IllegalSaslState,
        match=exactly("Metadata after the SASL session expired (re-authenticate first, KIP-368)"),
    ):
        session.admit(3, "Metadata", NOW + 10)
    session.admit(17, "SaslHandshake", NOW + 10)
    session.move("handshake")
    assert session.state == SaslState.REAUTHENTICATING
    session.move("failure")
    with pytest.raises(IllegalSaslState, match="after a failed SASL authentication"):
        session.admit(18, "ApiVersions", NOW)
    with pytest.raises(IllegalSaslState, match=exactly("handshake is not allowed while failed")):
        session.move("handshake")
    plain = SaslSession(sasl=False)
    plain.admit(3, "Metadata", NOW)
    assert plain.state == SaslState.OPEN and plain.principal == "User:ANONYMOUS"


def test_failures_delay_grows_per_host_and_logs_without_flood(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = AuthFailures(0.1, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "backbone.broker.security")
    delays = [
        failures.record("10.0.0.9:5000", "10.0.0.9", "PLAIN", "bob", "invalid credentials")
        for _ in range(10)
    ]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == MAX_DELAY_S
    assert failures.record("10.0.0.7:1", "10.0.0.7", "PLAIN", None, "x") == 0.1  # another host
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "failed authentication from 10.0.0.9:5000 (PLAIN, user 'bob'): invalid credentials"
    )
    assert len([line for line in lines if "10.0.0.9" in line]) == 5
    now[0] = 61.0
    assert (
        failures.record("10.0.0.9:5001", "10.0.0.9", "PLAIN", "bob", "invalid credentials") == 0.1
    )
    assert "5 more failed authentications from 10.0.0.9 in the last minute (not logged)" in [
        r.getMessage() for r in caplog.records
    ]


def test_certificate_principal_is_kafkas_rfc_2253_subject() -> None:
    cert = {
        "subject": (
            (("countryName", "DE"),),
            (("organizationName", "Acme, Inc"),),
            (("organizationalUnitName", "ops"),),
            (("commonName", "alice"),),
        )
    }
    assert certificate_principal(cert) == "User:CN=alice,OU=ops,O=Acme\\, Inc,C=DE"
    assert certificate_principal({}) is None and certificate_principal(None) is None


def test_tls_context_refuses_old_protocols(tmp_path: Path) -> None:
    from backbone.broker.listeners import TlsSettings
    from backbone.broker.security.tls import server_context
    from backbone.certs import create_ca, issue

    ca = create_ca()
    issue(ca, "localhost", hosts=["localhost"]).write(tmp_path / "s.pem", tmp_path / "s.key")
    context = server_context(TlsSettings(tmp_path / "s.pem", tmp_path / "s.key"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    with pytest.raises(
        FileNotFoundError, match=exactly(f"TLS file {tmp_path / 'nope.pem'} does not exist")
    ):
        server_context(TlsSettings(tmp_path / "nope.pem", tmp_path / "s.key"))


def test_tls_keys_encrypted_or_mismatched_are_named_never_prompted(tmp_path: Path) -> None:
    """An encrypted server key loads with its password; without one, with a wrong one, or
    with another certificate's key the error says which (OpenSSL never asks on a tty)."""
    from backbone.broker.listeners import TlsSettings
    from backbone.broker.security.tls import KeyPairError, server_context
    from backbone.certs import create_ca, issue

    ca = create_ca()
    issue(ca, "localhost", hosts=["localhost"]).write(tmp_path / "s.pem", tmp_path / "plain.key")
    issue(ca, "other", hosts=["other"]).write(tmp_path / "o.pem", tmp_path / "other.key")
    key = serialization.load_pem_private_key((tmp_path / "plain.key").read_bytes(), None)
    (tmp_path / "s.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"k3y"),
        )
    )
    cert, encrypted = tmp_path / "s.pem", tmp_path / "s.key"
    assert server_context(TlsSettings(cert, encrypted, password="k3y")).minimum_version == (
        ssl.TLSVersion.TLSv1_2
    )
    start = f"cannot load the certificate {cert} and key"
    for key_file, password, why in (
        (encrypted, None, "the key is encrypted: give its password"),
        (encrypted, "nope", "the key's password is wrong, or the key is not the certificate's"),
        (tmp_path / "other.key", None, "the key is not the certificate's, or a file is not PEM"),
    ):
        with pytest.raises(KeyPairError) as failed:
            server_context(TlsSettings(cert, key_file, password=password))
        assert str(failed.value).startswith(f"{start} {key_file}: {why} ("), str(failed.value)
        assert "nope" not in str(failed.value)
