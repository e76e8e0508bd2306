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

__all__ = ["certificate_principal", "server_context"]

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


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The listeners' server context; raises OSError/ssl.SSLError naming a bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (settings.cert, settings.key, settings.ca):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"TLS file {path} does not exist")
    try:
        context.load_cert_chain(settings.cert, settings.key, settings.password)
    except ssl.SSLError as exc:
        raise ssl.SSLError(
            f"cannot load the TLS certificate {settings.cert} and key {settings.key}: {exc}"
        ) from None
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
