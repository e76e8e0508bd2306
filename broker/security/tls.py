"""TLS for the broker's listeners (Python's ``ssl``) and principals from client certificates.

:func:`server_context` builds the one server-side context every SSL/SASL_SSL listener
uses: TLS 1.2 at least, the server certificate chain and key, and — with
``client_auth`` ``requested`` or ``required`` — the CA bundle client certificates
must chain to (``required`` is mutual TLS: the handshake fails without a valid
certificate, before any Kafka request is read). :func:`certificate_principal` is
Kafka's default SSL principal: ``User:`` + the subject's distinguished name in RFC 2253
form, most specific part first (``User:CN=alice,OU=ops,O=Acme``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from ..listeners import TlsSettings

__all__ = ["KeyPairError", "certificate_principal", "load_key_pair", "server_context"]

_SHORT = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


class KeyPairError(ssl.SSLError):
    """A certificate and key that cannot be loaded; the message says why."""

    def __str__(self) -> str:
        return str(self.args[0])


def load_key_pair(
    context: ssl.SSLContext, cert: str | Path, key: str | Path, password: str | None
) -> None:
    """Load a certificate and its private key; raises ssl.SSLError saying what is wrong
    (an encrypted key without a password, a wrong password, a key of another
    certificate), never the password. OpenSSL never prompts on the terminal for one."""
    try:
        context.load_cert_chain(cert, key, password if password is not None else "")
    except ssl.SSLError as exc:
        try:
            encrypted = b"ENCRYPTED" in Path(key).read_bytes()
        except OSError:
            encrypted = False
        if encrypted and password is None:
            why = "the key is encrypted: give its password"
        elif encrypted:
            why = "the key's password is wrong, or the key is not the certificate's"
        else:
            why = "the key is not the certificate's, or a file is not PEM"
        raise KeyPairError(
            f"cannot load the certificate {cert} and key {key}: {why} ({exc})"
        ) from None


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The listeners' server context; raises OSError/ssl.SSLError naming a bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (settings.cert, settings.key, settings.ca):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"TLS file {path} does not exist")
    load_key_pair(context, settings.cert, settings.key, settings.password)
    if settings.ca is not None:
        context.load_verify_locations(cafile=settings.ca)
    context.verify_mode = {
        "none": ssl.CERT_NONE,
        "requested": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[settings.client_auth]
    return context


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def certificate_principal(peercert: dict[str, Any] | None) -> str | None:
    """``User:<RFC 2253 subject>`` of a verified client certificate (None without one)."""
    if not peercert:
        return None
    rdns = []
    for rdn in reversed(peercert.get("subject", ())):
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn))
    return "User:" + ",".join(rdns) if rdns else None
