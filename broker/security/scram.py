"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, sans-I/O.

What is stored per user and mechanism (:class:`ScramCredential`) is what RFC 5802
calls the server's authentication information, never the password::

    SaltedPassword = Hi(password, salt, iterations)      (PBKDF2-HMAC)
    StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

The exchange (:class:`ScramExchange`), one SaslAuthenticate round trip per step::

    client-first  n,,n=<user>,r=<client nonce>
    server-first  r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
    client-final  c=biws,r=<nonce>,p=<proof b64>
    server-final  v=<server signature b64>

The proof is checked by recovering ClientKey = proof XOR HMAC(StoredKey, AuthMessage)
and comparing H(ClientKey) with StoredKey. An unknown user gets a server-first
message built from a salt derived from the name (the same on every attempt), so
the answer does not tell whether the user exists; the exchange then fails at the
proof like a wrong password. Channel binding is refused (``p=`` gs2 header), as in
Kafka.

librdkafka before 2.6.1 (Debian's kcat has 2.0.2) answers with its client nonce in
front of the whole nonce (``r=<client nonce><client nonce><server nonce>``,
librdkafka#4895); that form is accepted too, as Kafka 3.8.1-3.9 did: it still
carries this exchange's server nonce, and the proof covers what the client sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SaslAuthenticationFailed, UnacceptableCredential

__all__ = [
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "SCRAM_MECHANISMS",
    "ScramCredential",
    "ScramExchange",
    "salted_password",
]

SCRAM_MECHANISMS: dict[str, str] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
"""Mechanism name -> hashlib name."""
MIN_ITERATIONS = 4096  # Kafka's bounds for SCRAM-SHA-256/512
MAX_ITERATIONS = 16384


def _hash(mechanism: str) -> str:
    try:
        return SCRAM_MECHANISMS[mechanism]
    except KeyError:
        raise UnacceptableCredential(f"{mechanism!r} is not a SCRAM mechanism") from None


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """``Hi(password, salt, iterations)``: PBKDF2-HMAC with the mechanism's hash."""
    return hashlib.pbkdf2_hmac(_hash(mechanism), password.encode(), salt, iterations)


def _hmac(name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, name).digest()


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """The salted credential of one user for one mechanism (see the module docstring)."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_salted_password(
        cls, mechanism: str, salt: bytes, iterations: int, salted: bytes
    ) -> ScramCredential:
        """From ``SaltedPassword`` (what AlterUserScramCredentials carries).

        Raises UnacceptableCredential for iterations outside 4096-16384, an empty salt
        or a salted password of the wrong length.
        """
        name = _hash(mechanism)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise UnacceptableCredential(
                f"iterations must be {MIN_ITERATIONS}-{MAX_ITERATIONS} (got {iterations})"
            )
        if not salt:
            raise UnacceptableCredential("the salt is empty")
        if len(salted) != hashlib.new(name).digest_size:
            raise UnacceptableCredential(
                f"a {mechanism} salted password has {hashlib.new(name).digest_size} bytes "
                f"(got {len(salted)})"
            )
        client_key = _hmac(name, salted, b"Client Key")
        return cls(
            mechanism,
            salt,
            iterations,
            hashlib.new(name, client_key).digest(),
            _hmac(name, salted, b"Server Key"),
        )

    @classmethod
    def from_password(
        cls,
        mechanism: str,
        password: str,
        *,
        iterations: int = MIN_ITERATIONS,
        salt: bytes | None = None,
    ) -> ScramCredential:
        """A new credential for ``password`` with a random 32-byte salt."""
        salt = salt if salt is not None else secrets.token_bytes(32)
        salted = salted_password(mechanism, password, salt, iterations)
        return cls.from_salted_password(mechanism, salt, iterations, salted)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is the one this credential was made from (for SASL/PLAIN)."""
        name = _hash(self.mechanism)
        salted = salted_password(self.mechanism, password, self.salt, self.iterations)
        stored = hashlib.new(name, _hmac(name, salted, b"Client Key")).digest()
        return hmac.compare_digest(stored, self.stored_key)

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {
            "salt": b64(self.salt).decode(),
            "iterations": self.iterations,
            "stored_key": b64(self.stored_key).decode(),
            "server_key": b64(self.server_key).decode(),
        }

    @classmethod
    def from_json(cls, mechanism: str, data: dict[str, Any]) -> ScramCredential:
        b64 = base64.b64decode
        return cls(
            mechanism,
            b64(data["salt"]),
            int(data["iterations"]),
            b64(data["stored_key"]),
            b64(data["server_key"]),
        )


def _attributes(message: str) -> list[tuple[str, str]]:
    """``a=1,b=2`` -> [("a", "1"), ("b", "2")]; raises on a malformed attribute."""
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslAuthenticationFailed(f"malformed SCRAM message attribute {part[:20]!r}")
        pairs.append((part[0], part[2:]))
    return pairs


def _unescape_name(name: str) -> str:
    """RFC 5802 saslname: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is an error."""
    out = name.replace("=2C", ",").replace("=3D", "=")
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise SaslAuthenticationFailed("malformed SCRAM user name")
    return out


class ScramExchange:
    """One SCRAM authentication, server side (see the module docstring).

    ``lookup(user)`` returns the user's credential for this mechanism (None when
    unknown); ``fake_key`` seeds the salts of unknown users. :meth:`step` takes each
    client message and returns the answer; it raises SaslAuthenticationFailed (the
    message says why, never a secret). ``user`` is set after the first message,
    ``complete`` once the proof checked out.
    """

    def __init__(
        self,
        mechanism: str,
        lookup: Callable[[str], ScramCredential | None],
        fake_key: bytes,
        *,
        nonce: str | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._hash = _hash(mechanism)
        self._lookup = lookup
        self._fake_key = fake_key
        self._server_nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        self.user: str | None = None
        self.complete = False
        self._credential: ScramCredential | None = None
        self._unknown = False
        self._first_bare = ""
        self._server_first = ""
        self._gs2_header = ""
        self._client_nonce = ""
        self._nonce = ""
        self._step = 0

    def step(self, message: bytes) -> bytes:
        """The answer to the client's next message (server-first, then server-final)."""
        try:
            text = message.decode()
        except UnicodeDecodeError:
            raise SaslAuthenticationFailed("SCRAM messages must be UTF-8") from None
        self._step += 1
        if self._step == 1:
            return self._first(text).encode()
        if self._step == 2:
            return self._final(text).encode()
        raise SaslAuthenticationFailed("SCRAM exchange already finished")

    def _first(self, text: str) -> str:
        flag, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if flag.startswith("p="):
            raise SaslAuthenticationFailed("SCRAM channel binding is not supported")
        if flag not in ("n", "y") or (authzid and not authzid.startswith("a=")):
            raise SaslAuthenticationFailed("malformed SCRAM client-first message")
        attrs = _attributes(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise SaslAuthenticationFailed("malformed SCRAM client-first message")
        user = _unescape_name(attrs[0][1])
        if authzid and _unescape_name(authzid[2:]) != user:
            raise SaslAuthenticationFailed("SCRAM authorization id must be the user name")
        for key, value in attrs[2:]:
            if key == "e" or (key == "t" and value == "true"):  # extensions: tokenauth
                raise SaslAuthenticationFailed("SCRAM extensions are not supported")
        self.user = user
        self._gs2_header = f"{flag},{authzid},"
        self._first_bare = bare
        self._client_nonce = attrs[1][1]
        self._nonce = self._client_nonce + self._server_nonce
        credential = self._lookup(user)
        if credential is None:
            self._unknown = True
            salt = _hmac("sha256", self._fake_key, user.encode())
            iterations = MIN_ITERATIONS
        else:
            self._credential = credential
            salt, iterations = credential.salt, credential.iterations
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        return self._server_first

    def _final(self, text: str) -> str:
        attrs = _attributes(text)
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise SaslAuthenticationFailed("malformed SCRAM client-final message")
        try:
            binding = base64.b64decode(attrs[0][1], validate=True)
            proof = base64.b64decode(attrs[-1][1], validate=True)
        except ValueError:
            raise SaslAuthenticationFailed("malformed SCRAM client-final message") from None
        if binding != self._gs2_header.encode():
            raise SaslAuthenticationFailed("SCRAM channel binding does not match")
        if attrs[1][1] not in (self._nonce, self._client_nonce + self._nonce):
            raise SaslAuthenticationFailed("SCRAM nonce does not match")
        credential = self._credential
        if credential is None or self._unknown:
            raise SaslAuthenticationFailed("invalid credentials")
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self._hash, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise SaslAuthenticationFailed("invalid credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(
            hashlib.new(self._hash, client_key).digest(), credential.stored_key
        ):
            raise SaslAuthenticationFailed("invalid credentials")
        self.complete = True
        server_signature = _hmac(self._hash, credential.server_key, auth_message)
        return f"v={base64.b64encode(server_signature).decode()}"
