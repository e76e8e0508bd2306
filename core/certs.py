"""A small local certificate authority for trying TLS: ``backbone certs create``.

Makes, with the ``cryptography`` package, a CA (``ca.pem``/``ca.key``), a server
certificate for the broker (``server.pem``/``server.key``, with the host names and
IP addresses clients connect to as subject alternative names) and optionally client
certificates for mutual TLS (``<name>.pem``/``<name>.key``, subject ``CN=<name>``,
so the principal is ``User:CN=<name>``). Keys are ECDSA P-256, written unencrypted
with mode 0600; certificates are PEM. For production use your organisation's CA.

The functions are also what the test suite makes its certificates with
(:func:`create_ca`, :func:`issue`: any validity window, expired ones included).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "create_ca", "create_files", "issue"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert: bytes
    key: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write both files (the key with mode 0600)."""
        cert_path.write_bytes(self.cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.key)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(common_name: str = "Backbone local CA", days: int = 3650) -> Issued:
    """A self-signed CA certificate valid from now for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Issued,
    common_name: str,
    *,
    hosts: Sequence[str] = (),
    server: bool = True,
    client: bool = True,
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate for ``common_name`` signed by ``ca``.

    ``hosts`` (DNS names or IP addresses) become subject alternative names (what TLS
    clients check the server's name against). ``not_before``/``not_after`` override
    the validity window (now - 5 min .. now + ``days``), e.g. for an expired one.
    """
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key made by create_ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def create_files(
    folder: Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    clients: Sequence[str] = (),
    days: int = 825,
) -> list[Path]:
    """``ca.pem``/``ca.key``, ``server.pem``/``server.key`` and ``<client>.pem``/``.key``
    in ``folder`` (created); an existing CA there is reused. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ca_cert, ca_key = folder / "ca.pem", folder / "ca.key"
    if ca_cert.exists() and ca_key.exists():
        ca = Issued(ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = create_ca()
        ca.write(ca_cert, ca_key)
        written += [ca_cert, ca_key]
    server = issue(ca, hosts[0] if hosts else "localhost", hosts=hosts, client=False, days=days)
    server.write(folder / "server.pem", folder / "server.key")
    written += [folder / "server.pem", folder / "server.key"]
    for name in clients:
        issued = issue(ca, name, server=False, days=days)
        issued.write(folder / f"{name}.pem", folder / f"{name}.key")
        written += [folder / f"{name}.pem", folder / f"{name}.key"]
    return written
