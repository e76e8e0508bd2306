"""The webhook source on a real HTTP server with a real client: checks, records, dedupe.

The push path here is ``backbone.testing.PushRecorder`` (the runtime's own checks
and encoding, no broker); tests/connectors/test_webhook_pipeline.py runs the same
source inside the runtime against a real broker.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backbone import testing
from backbone.connectors.webhook import WebhookOptions, WebhookSource
from backbone.httpapp import HttpApp
from backbone.sdk import (
    FatalError,
    hmac_signature,
    standard_webhook_key,
    standard_webhook_signature,
    stripe_signature,
)
from tests.core.test_signatures import openssl_hmac

pytestmark = pytest.mark.timeout(60)

GITHUB_SECRET = "It's a Secret to Everybody"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def app() -> AsyncIterator[HttpApp]:
    async with HttpApp(port=0, max_body=4096) as server:
        yield server


@pytest.fixture
async def client(app: HttpApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app.url) as http:
        yield http


class Hook:
    """A webhook source on ``app`` with a PushRecorder; ``async with`` opens and closes it."""

    def __init__(self, app: HttpApp, tmp_path: Path, **options: Any) -> None:
        self.recorder = testing.PushRecorder("hook")
        options.setdefault("path", "/hook")
        self.options = WebhookOptions.model_validate(options)
        self.make: Callable[[], WebhookSource] = lambda: WebhookSource(
            self.options, testing.context(tmp_path, "hook", http=app, push=self.recorder)
        )

    async def __aenter__(self) -> Hook:
        self.source = self.make()
        await self.source.open(None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.source.close()

    def values(self) -> list[Any]:
        return [json.loads(r.value) if r.value else None for r in self.recorder.records]


async def test_conformance(app: HttpApp, client: httpx.AsyncClient, tmp_path: Path) -> None:
    hook = Hook(app, tmp_path, auth={"type": "bearer", "tokens": ["t0k3n"]})

    async def deliver(n: int) -> bool:
        response = await client.post(
            "/hook", json={"n": n}, headers={"Authorization": "Bearer t0k3n"}
        )
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"].startswith("not stored: cannot produce to pushed")
        return response.status_code == 200

    await testing.check_push_source(hook.make, hook.recorder, deliver)
    assert hook.values() == [{"n": n} for n in (0, 1, 2, 3, 4, 5, 7)]


async def test_a_stored_delivery_is_answered_with_its_coordinates(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with Hook(app, tmp_path, key="/order/id", keep_headers=["X-Tenant"]) as hook:
        body = b'{"order": {"id": 42, "total": 9.5}}'
        response = await client.post(
            "/hook",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "shop/1.0",
                "X-Tenant": "acme",
            },
        )
        assert response.status_code == 200
        assert response.json() == {"topic": "pushed", "partition": 0, "offset": 0}
        [record] = hook.recorder.records
    assert record.value == body  # the raw body, byte for byte
    assert record.key == b"42"
    headers = dict(record.headers)
    assert headers["content-type"] == b"application/json; charset=utf-8"
    assert headers["http.user-agent"] == b"shop/1.0"
    assert headers["http.x-tenant"] == b"acme"
    assert headers["ce_type"] == b"backbone.conformance"
    assert headers["ce_source"] == b"backbone://hook"
    uuid.UUID(headers["ce_id"].decode())


async def test_every_rejection_stores_nothing(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    schema = {
        "type": "object",
        "required": ["order"],
        "properties": {"order": {"type": "object", "required": ["id"]}},
    }
    async with Hook(
        app,
        tmp_path,
        key="/order/id",
        schema=schema,
        auth={"type": "hmac", "secret": "s3cret", "header": "X-Sig", "prefix": "sha256="},
    ) as hook:

        def signed(body: bytes) -> dict[str, str]:
            digest = hmac_signature(b"s3cret", body)
            return {"X-Sig": f"sha256={digest}", "Content-Type": "application/json"}

        async def post(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
            response = await client.post("/hook", content=body, headers=headers)
            return response.status_code, response.json()["error"]

        good = b'{"order": {"id": 1}}'
        assert await post(good, {"Content-Type": "application/json"}) == (
            401,
            "unauthorized: missing X-Sig",
        )
        assert await post(good, {**signed(good), "X-Sig": "sha256=" + "0" * 64}) == (
            401,
            "unauthorized: X-Sig does not match the body",
        )
        assert await post(good, {**signed(good), "Content-Type": "text/plain"}) == (
            415,
            "content type 'text/plain' is not accepted here (accepted: application/json, "
            "application/cloudevents+json)",
        )
        assert await post(b"{nope", signed(b"{nope")) == (
            400,
            "the body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        )
        body = b'{"order": {"total": 1}}'
        assert await post(body, signed(body)) == (
            422,
            "the body does not match the schema at /order: 'id' is a required property",
        )
        body = b'{"order": {"id": null}}'
        assert await post(body, signed(body)) == (
            400,
            "the delivery has no /order/id (the record key)",
        )
        big = b'{"order": {"id": 1, "pad": "' + b"x" * 5000 + b'"}}'
        assert await post(big, signed(big)) == (
            413,
            f"request body of {len(big)} bytes exceeds the limit of 4096",
        )
        assert hook.recorder.records == []
        response = await client.post("/hook", content=good, headers=signed(good))
        assert response.status_code == 200
        assert len(hook.recorder.records) == 1


async def test_bearer_tokens_rotate_and_are_never_echoed(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with Hook(app, tmp_path, auth={"type": "bearer", "tokens": ["old", "new"]}) as hook:
        for token, status in (("old", 200), ("new", 200), ("older", 401), ("x", 401)):
            response = await client.post(
                "/hook", json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == status, token
            assert "old" not in response.text.replace("older", "")
        response = await client.post("/hook", json={}, headers={"Authorization": "Basic old"})
        assert response.json() == {"error": "unauthorized: missing or wrong bearer token"}
        assert len(hook.recorder.records) == 2
    assert "old" not in repr(hook.options) and "new" not in repr(hook.options)


async def test_github_delivery_signed_with_openssl_and_deduped(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = json.dumps({"repository": {"full_name": "acme/shop"}, "ref": "main"}).encode()
    signature = "sha256=" + openssl_hmac("sha256", GITHUB_SECRET.encode(), body)
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature,
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    options = {"auth": {"type": "github", "secret": GITHUB_SECRET}, "key": "/repository/full_name"}
    async with Hook(app, tmp_path, **options) as hook:
        first = await client.post("/hook", content=body, headers=headers)
        again = await client.post("/hook", content=body, headers=headers)
        tampered = await client.post("/hook", content=body + b" ", headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"topic": "pushed", "partition": 0, "offset": 0}
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert tampered.status_code == 401
    [record] = hook.recorder.records
    headers_out = dict(record.headers)
    assert record.key == b"acme/shop"
    assert headers_out["ce_type"] == b"com.github.push"
    assert headers_out["http.x-github-delivery"] == b"72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert headers_out["http.x-github-event"] == b"push"

    # a restart remembers the delivery (the window is on disk)
    async with Hook(app, tmp_path, **options) as hook:
        replay = await client.post("/hook", content=body, headers=headers)
        assert replay.json() == {"topic": "pushed", "partition": 0, "offset": 0}
        assert replay.headers["idempotent-replayed"] == "true"
        assert hook.recorder.records == []


async def test_stripe_deliveries_check_the_signature_and_its_age(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    secret = "whsec_test_secret"
    event = {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}
    body = json.dumps(event).encode()

    def headers(at: float) -> dict[str, str]:
        signed = stripe_signature(secret.encode(), body, int(at))
        return {"Content-Type": "application/json", "Stripe-Signature": signed}

    async with Hook(
        app, tmp_path, auth={"type": "stripe", "secret": secret, "tolerance": "5m"}
    ) as hook:
        stale = await client.post("/hook", content=body, headers=headers(time.time() - 301))
        assert stale.status_code == 401
        assert stale.json() == {
            "error": "unauthorized: the Stripe-Signature timestamp is outside the tolerance of "
            "300s (a replayed or delayed delivery)"
        }
        ok = await client.post("/hook", content=body, headers=headers(time.time()))
        dup = await client.post("/hook", content=body, headers=headers(time.time()))
        assert ok.status_code == dup.status_code == 200
        assert dup.headers["idempotent-replayed"] == "true"
        [record] = hook.recorder.records
    assert dict(record.headers)["ce_type"] == b"com.stripe.payment_intent.succeeded"


async def test_standard_webhooks_delivery(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = standard_webhook_key(SW_SECRET)
    body = b'{"type": "invoice.paid", "data": {"id": 3}}'

    def headers(msg_id: str, at: int, body: bytes = body) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(at),
            "webhook-signature": "v1,bm9wZQ== " + standard_webhook_signature(key, msg_id, at, body),
        }

    now = int(time.time())
    async with Hook(app, tmp_path, auth={"type": "standard-webhooks", "secret": SW_SECRET}) as hook:
        assert (
            await client.post("/hook", content=body, headers=headers("msg_1", now))
        ).status_code == 200
        replay = await client.post("/hook", content=body, headers=headers("msg_1", now + 1))
        assert replay.headers["idempotent-replayed"] == "true"
        stale = await client.post("/hook", content=body, headers=headers("msg_2", now - 400))
        assert stale.status_code == 401
        assert "webhook-timestamp is outside the tolerance" in stale.json()["error"]
        [record] = hook.recorder.records
    headers_out = dict(record.headers)
    assert headers_out["http.webhook-id"] == b"msg_1"
    assert headers_out["ce_type"] == b"invoice.paid"


async def test_idempotency_header_and_structured_cloudevents(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with Hook(app, tmp_path, idempotency_header="Idempotency-Key") as hook:
        for _ in range(2):
            response = await client.post("/hook", json={"a": 1}, headers={"Idempotency-Key": "k1"})
            assert response.status_code == 200
        event = {
            "specversion": "1.0",
            "id": "A234-1234-1234",
            "source": "/mycontext",
            "type": "com.example.someevent",
            "time": "2018-04-05T17:31:00Z",
            "subject": "orders/7",
            "comexampleextension1": "value",
            "datacontenttype": "application/json",
            "data": {"appinfoA": "abc"},
        }
        ce = {"Content-Type": "application/cloudevents+json"}
        first = await client.post("/hook", content=json.dumps(event), headers=ce)
        again = await client.post("/hook", content=json.dumps(event), headers=ce)
        binary = {
            "data_base64": base64.b64encode(b"\x00\x01").decode(),
            **{k: v for k, v in event.items() if k not in ("data", "datacontenttype")},
            "id": "B1",
        }
        third = await client.post("/hook", content=json.dumps(binary), headers=ce)
    assert [first.status_code, again.status_code, third.status_code] == [200, 200, 200]
    assert again.headers["idempotent-replayed"] == "true"
    plain, structured, raw = hook.recorder.records
    assert plain.value == b'{"a":1}'
    headers = dict(structured.headers)
    assert structured.value == b'{"appinfoA":"abc"}'
    assert headers["ce_id"] == b"A234-1234-1234"
    assert headers["ce_source"] == b"/mycontext"
    assert headers["ce_type"] == b"com.example.someevent"
    assert headers["ce_time"] == b"2018-04-05T17:31:00Z"
    assert headers["ce_subject"] == b"orders/7"
    assert headers["ce_comexampleextension1"] == b"value"
    assert headers["content-type"] == b"application/json"
    assert raw.value == b"\x00\x01"
    assert dict(raw.headers)["content-type"] == b"application/octet-stream"


async def test_a_schema_file_and_other_content_types(
    app: HttpApp, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    (tmp_path / "order.json").write_text(json.dumps({"type": "object", "required": ["id"]}))
    async with Hook(app, tmp_path, schema="order.json", content_types=["application/*"]) as hook:
        assert (await client.post("/hook", json={"id": 1})).status_code == 200
        response = await client.post("/hook", json={"x": 1})
        assert response.status_code == 422
        response = await client.post(
            "/hook", content=b"a,b\n", headers={"Content-Type": "application/csv"}
        )
        assert response.status_code == 422  # a schema needs JSON
    async with Hook(app, tmp_path, content_types=["text/plain"], event_type="csv.line") as hook:
        response = await client.post(
            "/hook", content=b"a,b\n", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 200
        [record] = hook.recorder.records
        assert record.value == b"a,b\n"
        assert dict(record.headers)["ce_type"] == b"csv.line"


async def test_without_an_http_server_or_with_a_taken_path(tmp_path: Path, app: HttpApp) -> None:
    options = WebhookOptions(path="/health")
    source = WebhookSource(options, testing.context(tmp_path, push=testing.PushRecorder()))
    with pytest.raises(FatalError, match="needs the gateway's HTTP server: add an http section"):
        await source.open(None)
    await source.close()
    source = WebhookSource(
        WebhookOptions(path="/health", methods=["POST"]),
        testing.context(tmp_path, http=app, push=testing.PushRecorder()),
    )
    await source.open(None)  # /health is GET only: POST is free
    await source.close()
    app.add_route("/taken", lambda r: None, methods=("POST",), owner="admin")  # type: ignore[arg-type,return-value]
    source = WebhookSource(
        WebhookOptions(path="/taken"),
        testing.context(tmp_path, http=app, push=testing.PushRecorder()),
    )
    with pytest.raises(FatalError, match=r"HTTP path /taken \(POST\) is already served by admin"):
        await source.open(None)
    await source.close()


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="expected a URL path like /hooks/orders"):
        WebhookOptions(path="hooks")
    with pytest.raises(ValueError, match="expected a JSON pointer into the body like /order/id"):
        WebhookOptions(path="/h", key="order.id")
    with pytest.raises(
        ValueError, match="a Standard Webhooks secret is 'whsec_' followed by base64"
    ):
        WebhookOptions.model_validate(
            {"path": "/h", "auth": {"type": "standard-webhooks", "secret": "whsec_%%%"}}
        )
    options = WebhookOptions.model_validate(
        {"path": "/h", "auth": {"type": "github", "secret": "hush"}}
    )
    assert "hush" not in repr(options) and "hush" not in options.model_dump_json()
