"""Options of the ``webhook`` source: the route, the checks, what becomes the record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator

from backbone.sdk import ConnectorOptions, Duration, standard_webhook_key

__all__ = [
    "BearerAuth",
    "GithubAuth",
    "HmacAuth",
    "StandardWebhooksAuth",
    "StripeAuth",
    "WebhookOptions",
]


class BearerAuth(ConnectorOptions):
    """``Authorization: Bearer <token>`` must carry one of ``tokens``."""

    type: Literal["bearer"]
    """Bearer-token check."""
    tokens: list[SecretStr] = Field(min_length=1)
    """Accepted tokens (several, to rotate them); e.g. ``["${HOOK_TOKEN}"]``."""


class HmacAuth(ConnectorOptions):
    """An HMAC of the raw body in a header (most in-house webhooks)."""

    type: Literal["hmac"]
    """HMAC signature check."""
    secret: SecretStr
    """The shared secret (UTF-8)."""
    header: str = "X-Signature"
    """Header carrying the signature."""
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    """Hash function of the HMAC."""
    prefix: str = ""
    """Text before the signature in the header, e.g. ``sha256=``."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the signature is written."""


class GithubAuth(ConnectorOptions):
    """GitHub: ``X-Hub-Signature-256``; delivery id ``X-GitHub-Delivery``; event
    ``X-GitHub-Event`` (``ce_type`` ``com.github.<event>``)."""

    type: Literal["github"]
    """GitHub webhook preset."""
    secret: SecretStr
    """The webhook's secret, as entered in GitHub."""


class StripeAuth(ConnectorOptions):
    """Stripe: ``Stripe-Signature`` (timestamped); delivery id = the event's ``id``;
    ``ce_type`` ``com.stripe.<type>``."""

    type: Literal["stripe"]
    """Stripe webhook preset."""
    secret: SecretStr
    """The endpoint's signing secret (``whsec_...``)."""
    tolerance: Duration = 300.0
    """Largest age (and clock skew) of the signed timestamp; older deliveries get 401."""


class StandardWebhooksAuth(ConnectorOptions):
    """The Standard Webhooks spec: ``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature`` (several signatures allowed); delivery id = ``webhook-id``."""

    type: Literal["standard-webhooks"]
    """Standard Webhooks preset."""
    secret: SecretStr
    """``whsec_`` followed by the base64 key."""
    tolerance: Duration = 300.0
    """Largest age (and clock skew) of ``webhook-timestamp``; older deliveries get 401."""

    @field_validator("secret")
    @classmethod
    def _base64(cls, value: SecretStr) -> SecretStr:
        standard_webhook_key(value.get_secret_value())  # ValueError names the format
        return value


Auth = Annotated[
    BearerAuth | HmacAuth | GithubAuth | StripeAuth | StandardWebhooksAuth,
    Field(discriminator="type"),
]


def _pointer_or_header(value: str | None) -> str | None:
    if value is None or value.startswith("header:"):
        return value
    if value == "" or value.startswith("/"):
        return value
    raise ValueError(
        f"expected a JSON pointer into the body like /order/id, or header:NAME (got {value!r})"
    )


class WebhookOptions(ConnectorOptions):
    """Options of the ``webhook`` source."""

    model_config = ConfigDict(populate_by_name=True)

    path: str
    """URL path served on ``http.listen``, e.g. ``/hooks/github``."""
    methods: list[Literal["POST", "PUT", "PATCH"]] = Field(default=["POST"], min_length=1)
    """HTTP methods accepted on ``path``."""
    key: str | None = None
    """Record key: a JSON pointer into the body (``/order/id``) or ``header:NAME``.
    A delivery without it is refused (400). Default: no key."""
    auth: Auth | None = None
    """Who may deliver: ``{type: bearer, tokens}``, ``{type: hmac, secret, header,
    algorithm, prefix, encoding}``, or a preset ``{type: github|stripe|standard-webhooks,
    secret}``. Default: anyone who can reach the port."""
    idempotency_header: str | None = None
    """Header naming a delivery (e.g. ``Idempotency-Key``): a repeated delivery within
    ``dedupe_window`` is answered with the first record's coordinates and not stored
    again. The presets use their delivery id without this option; a structured
    CloudEvent uses its ``source`` + ``id``."""
    dedupe_window: Duration = 86400.0
    """How long a delivery id is remembered (across restarts)."""
    content_types: list[str] = Field(
        default=["application/json", "application/cloudevents+json"], min_length=1
    )
    """Accepted media types (``type/*`` and ``*/*`` allowed); others get 415. JSON types
    (``application/json``, ``*/*+json``) must parse (else 400); other bodies are kept as
    bytes."""
    schema_: dict[str, Any] | str | None = Field(default=None, alias="schema")
    """A JSON Schema the body must match (422 with the reason): inline, or the path of a
    JSON file (relative to the config file)."""
    event_type: str | None = None
    """CloudEvents ``ce_type``: a text, ``header:NAME`` or a JSON pointer (``/type``).
    Default: the preset's, else ``backbone.webhook``."""
    keep_headers: list[str] = Field(default_factory=list)
    """Request headers kept as record headers ``http.<name>`` (besides ``user-agent``,
    the delivery id and the preset's event header, which are always kept)."""
    ack_timeout: Duration = Field(default=5.0, gt=0)
    """How long a request waits for the broker's acknowledgement before it is answered
    503 with ``Retry-After``."""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "{" in value or "?" in value:
            raise ValueError(f"expected a URL path like /hooks/orders (got {value!r})")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return _pointer_or_header(value)

    @field_validator("content_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            text = item.strip().lower()
            if text.count("/") != 1:
                raise ValueError(f"expected media types like application/json (got {item!r})")
            out.append(text)
        return out
