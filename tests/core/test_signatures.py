"""Webhook signatures against the vectors their publishers document, and openssl."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from backbone.sdk import (
    SignatureError,
    hmac_signature,
    standard_webhook_key,
    standard_webhook_signature,
    stripe_signature,
    verify_github,
    verify_hmac,
    verify_standard_webhook,
    verify_stripe,
)

# GitHub, "Validating webhook deliveries" (docs.github.com): test values
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Standard Webhooks: the test vector of the specification's reference libraries
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def openssl_hmac(algorithm: str, key: bytes, data: bytes) -> str:
    """Hex HMAC computed by the openssl command line (an independent implementation)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = subprocess.run(
        ["openssl", "dgst", f"-{algorithm}", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return out.strip().rsplit(" ", 1)[-1]


def test_github_published_vector() -> None:
    verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)
    verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.upper().replace("SHA256", "sha256"))
    with pytest.raises(SignatureError, match="X-Hub-Signature-256 does not match the body"):
        verify_github(GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE)
    with pytest.raises(SignatureError, match="X-Hub-Signature-256 does not match the body"):
        verify_github(b"another secret", GITHUB_BODY, GITHUB_SIGNATURE)
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256"):
        verify_github(GITHUB_SECRET, GITHUB_BODY, None)
    with pytest.raises(SignatureError, match="does not start with 'sha256='"):
        verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.removeprefix("sha256="))


def test_standard_webhooks_published_vector() -> None:
    key = standard_webhook_key(SW_SECRET)
    assert standard_webhook_signature(key, SW_ID, SW_TIMESTAMP, SW_BODY) == SW_SIGNATURE
    common = {"msg_id": SW_ID, "timestamp": str(SW_TIMESTAMP)}
    verify_standard_webhook(key, SW_BODY, signatures=SW_SIGNATURE, now=SW_TIMESTAMP, **common)
    # several signatures (key rotation): one match is enough
    both = f"v1,bm9wZQ== {SW_SIGNATURE}"
    verify_standard_webhook(key, SW_BODY, signatures=both, now=SW_TIMESTAMP + 299, **common)
    with pytest.raises(SignatureError, match="webhook-signature does not match the body"):
        verify_standard_webhook(
            key, b'{"test": 1}', signatures=SW_SIGNATURE, now=SW_TIMESTAMP, **common
        )
    with pytest.raises(SignatureError, match="webhook-timestamp is outside the tolerance of 300s"):
        verify_standard_webhook(
            key, SW_BODY, signatures=SW_SIGNATURE, now=SW_TIMESTAMP + 301, **common
        )
    with pytest.raises(SignatureError, match="missing webhook-id"):
        verify_standard_webhook(
            key, SW_BODY, msg_id=None, timestamp="1", signatures=SW_SIGNATURE, now=1
        )
    with pytest.raises(ValueError, match="is not base64"):
        standard_webhook_key("whsec_not base64!")


def test_stripe_signature_matches_openssl_and_checks_the_window() -> None:
    secret = b"whsec_test_secret"
    body = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
    header = stripe_signature(secret, body, 1_700_000_000)
    expected = openssl_hmac("sha256", secret, b"1700000000." + body)
    assert header == f"t=1700000000,v1={expected}"
    verify_stripe(secret, body, header + ",v0=6ffbb59b", now=1_700_000_000)
    verify_stripe(secret, body, f"t=1700000000,v1={'0' * 64},v1={expected}", now=1_700_000_100)
    with pytest.raises(SignatureError, match="timestamp is outside the tolerance of 300s"):
        verify_stripe(secret, body, header, now=1_700_000_301)
    with pytest.raises(SignatureError, match="timestamp is outside the tolerance of 60s"):
        verify_stripe(secret, body, header, now=1_699_999_900, tolerance=60)
    with pytest.raises(SignatureError, match="Stripe-Signature does not match the body"):
        verify_stripe(secret, body + b" ", header, now=1_700_000_000)
    with pytest.raises(SignatureError, match="Stripe-Signature has no v1 signature"):
        verify_stripe(secret, body, "t=1700000000,v0=abc", now=1_700_000_000)
    with pytest.raises(SignatureError, match="is not a Unix timestamp"):
        verify_stripe(secret, body, f"t=soon,v1={expected}", now=1_700_000_000)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_plain_hmac_matches_openssl(algorithm: str) -> None:
    secret, body = b"s3cret", b'{"order": 7}'
    hexdigest = openssl_hmac(algorithm, secret, body)
    assert hmac_signature(secret, body, algorithm=algorithm) == hexdigest  # type: ignore[arg-type]
    verify_hmac(
        secret, body, f"{algorithm}={hexdigest}", algorithm=algorithm, prefix=f"{algorithm}="
    )  # type: ignore[arg-type]
    encoded = hmac_signature(secret, body, algorithm=algorithm, encoding="base64")  # type: ignore[arg-type]
    assert bytes.fromhex(hexdigest) == __import__("base64").b64decode(encoded)
    verify_hmac(secret, body, encoded, algorithm=algorithm, encoding="base64")  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="X-Sig does not match the body"):
        verify_hmac(
            secret, body + b"!", encoded, algorithm=algorithm, encoding="base64", name="X-Sig"
        )  # type: ignore[arg-type]
