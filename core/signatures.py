"""Webhook signatures: sign and verify, sans-I/O (bytes and header values in, a verdict out).

Part of the connector SDK (:mod:`backbone.sdk`). Every comparison is constant-time
(:func:`hmac.compare_digest`); every function takes the time as ``now`` (seconds)
so that a caller -- and a test with a published vector -- controls the clock.
A refusal raises :class:`SignatureError` with a reason safe to show the sender
(it never contains the secret or the expected signature).

- :func:`hmac_signature` / :func:`verify_hmac`: a plain HMAC of the raw body
  (``sha1``, ``sha256``, ``sha512``; hex or base64; optional prefix such as
  ``sha256=``), the shape of most in-house webhooks;
- :func:`verify_github`: GitHub's ``X-Hub-Signature-256: sha256=<hex>``;
- :func:`stripe_signature` / :func:`verify_stripe`: Stripe's
  ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`` over ``"<t>.<body>"``, with a
  replay window (``tolerance``);
- :func:`standard_webhook_signature` / :func:`verify_standard_webhook`: the
  Standard Webhooks spec (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64> [v1,<base64> ...]`` over ``"<id>.<t>.<body>"``,
  secrets ``whsec_<base64>``), which the ``http`` sink also uses to sign.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal

__all__ = [
    "SignatureError",
    "hmac_signature",
    "standard_webhook_key",
    "standard_webhook_signature",
    "stripe_signature",
    "verify_github",
    "verify_hmac",
    "verify_standard_webhook",
    "verify_stripe",
]

Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]


class SignatureError(ValueError):
    """A signature, token or timestamp was refused; the message says why (no secrets)."""


def hmac_signature(
    secret: bytes, body: bytes, *, algorithm: Algorithm = "sha256", encoding: Encoding = "hex"
) -> str:
    """The HMAC of ``body`` under ``secret``, hex or base64 encoded."""
    digest = hmac.new(secret, body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def verify_hmac(
    secret: bytes,
    body: bytes,
    header: str | None,
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    prefix: str = "",
    name: str = "the signature header",
) -> None:
    """Check ``header`` (``<prefix><signature>``) against the HMAC of ``body``."""
    if not header:
        raise SignatureError(f"missing {name}")
    value = header.strip()
    if prefix and not value.startswith(prefix):
        raise SignatureError(f"{name} does not start with {prefix!r}")
    given = value[len(prefix) :]
    expected = hmac_signature(secret, body, algorithm=algorithm, encoding=encoding)
    if encoding == "hex":
        given = given.lower()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignatureError(f"{name} does not match the body")


def verify_github(secret: bytes, body: bytes, header: str | None) -> None:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``."""
    verify_hmac(secret, body, header, prefix="sha256=", name="X-Hub-Signature-256")


def stripe_signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """A ``Stripe-Signature`` header value for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac_signature(secret, signed)}"


def _timestamp(text: str | None, now: float, tolerance: float, what: str) -> int:
    if not text:
        raise SignatureError(f"missing {what}")
    try:
        stamp = int(text.strip())
    except ValueError:
        raise SignatureError(f"{what} is not a Unix timestamp") from None
    if abs(now - stamp) > tolerance:
        raise SignatureError(
            f"{what} is outside the tolerance of {tolerance:g}s (a replayed or delayed delivery)"
        )
    return stamp


def verify_stripe(
    secret: bytes, body: bytes, header: str | None, *, now: float, tolerance: float = 300.0
) -> None:
    """Stripe: any ``v1`` of ``t=<unix>,v1=<hex>`` matches ``"<t>.<body>"`` and ``t`` is
    within ``tolerance`` seconds of ``now``. Other schemes (``v0``) are ignored."""
    if not header:
        raise SignatureError("missing Stripe-Signature")
    stamp: str | None = None
    given: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            stamp = value
        elif key == "v1":
            given.append(value.lower())
    if not given:
        raise SignatureError("Stripe-Signature has no v1 signature")
    checked = _timestamp(stamp, now, tolerance, "the Stripe-Signature timestamp")
    expected = hmac_signature(secret, f"{checked}.".encode() + body).encode()
    if not any(hmac.compare_digest(value.encode(), expected) for value in given):
        raise SignatureError("Stripe-Signature does not match the body")


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after ``whsec_``.

    A secret without the prefix is decoded as base64 too (as the reference
    libraries do); :class:`ValueError` if it is not base64.
    """
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a Standard Webhooks secret is 'whsec_' followed by base64 (e.g. whsec_"
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw); this one is not base64"
        ) from None


def standard_webhook_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value ``v1,<base64>`` for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + hmac_signature(key, signed, encoding="base64")


def verify_standard_webhook(
    key: bytes,
    body: bytes,
    *,
    msg_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    now: float,
    tolerance: float = 300.0,
) -> None:
    """Standard Webhooks: one of the space-separated ``v1,<base64>`` in ``signatures``
    matches ``"<msg_id>.<timestamp>.<body>"``, and ``timestamp`` is within ``tolerance``."""
    if not msg_id:
        raise SignatureError("missing webhook-id")
    if not signatures:
        raise SignatureError("missing webhook-signature")
    stamp = _timestamp(timestamp, now, tolerance, "webhook-timestamp")
    expected = standard_webhook_signature(key, msg_id, stamp, body).encode()
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("webhook-signature does not match the body")
