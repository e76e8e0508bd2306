"""The ``webhook`` connector kind: HTTP deliveries to a topic, stored before they are answered.

A system POSTs an event to Backbone once, and every consumer of the topic gets
it. :class:`WebhookSource` serves one path on the gateway's HTTP server
(``http.listen``) and answers 2xx only after the broker acknowledged the record
(``acks=all``): ``{"topic", "partition", "offset"}``. Bad credentials or
signatures (401), wrong content types (415), invalid JSON (400), schema
violations (422) and oversized bodies (413) store nothing; a broker that does
not acknowledge in time gets 503 with ``Retry-After``, never a silent drop.
Repeated deliveries (a delivery id seen within ``dedupe_window``) are answered
with the first record's coordinates. The window is kept in the connector's
state folder (:class:`~backbone.sdk.DedupeWindow`), not rebuilt from the topic:
it costs nothing at start, does not depend on the topic's retention or on other
producers, and every delivery answered 2xx is in it (fsynced before the answer).

See :mod:`._options` for the options and :class:`WebhookSource` for the record.
"""

from __future__ import annotations

from backbone.sdk import ConnectorKind

from ._options import (
    BearerAuth,
    GithubAuth,
    HmacAuth,
    StandardWebhooksAuth,
    StripeAuth,
    WebhookOptions,
)
from ._source import WebhookSource

__all__ = [
    "CONNECTOR",
    "BearerAuth",
    "GithubAuth",
    "HmacAuth",
    "StandardWebhooksAuth",
    "StripeAuth",
    "WebhookOptions",
    "WebhookSource",
]

CONNECTOR = ConnectorKind(
    name="webhook",
    summary="HTTP deliveries (webhooks) to a topic, answered 2xx only once stored.",
    source=WebhookSource,
    source_options=WebhookOptions,
    example="""\
http: {listen: 127.0.0.1:8080}
sources:
  github:
    type: webhook
    topic: github.events
    path: /hooks/github
    auth: {type: github, secret: "${GITHUB_WEBHOOK_SECRET}"}
    key: /repository/full_name
""",
)
