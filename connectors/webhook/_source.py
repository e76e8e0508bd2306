"""The ``webhook`` source: one route on the gateway's HTTP server; each delivery -> one record."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backbone.sdk import (
    MISSING,
    DedupeWindow,
    FatalError,
    HttpError,
    RetriableError,
    SignatureError,
    Source,
    SourceRecord,
    json_pointer,
    standard_webhook_key,
    verify_github,
    verify_hmac,
    verify_standard_webhook,
    verify_stripe,
)

from ._options import (
    BearerAuth,
    GithubAuth,
    HmacAuth,
    StandardWebhooksAuth,
    StripeAuth,
    WebhookOptions,
)

__all__ = ["WebhookSource"]

_STRUCTURED = "application/cloudevents+json"
_CE_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "dataschema")
_CE_SKIP = frozenset((*_CE_ATTRIBUTES, "data", "data_base64", "datacontenttype"))


@dataclass(frozen=True, slots=True)
class _Preset:
    """What an auth preset adds: its delivery id, its event type, headers worth keeping."""

    delivery: str | None = None  # "header:NAME" or a JSON pointer into the body
    event_type: str | None = None  # "header:NAME" or a pointer; prefixed by type_prefix
    type_prefix: str = ""
    keep: tuple[str, ...] = ()


_PRESETS: dict[type[Any], _Preset] = {
    GithubAuth: _Preset(
        "header:x-github-delivery",
        "header:x-github-event",
        "com.github.",
        ("x-github-delivery", "x-github-event", "x-github-hook-id"),
    ),
    StripeAuth: _Preset("/id", "/type", "com.stripe."),
    StandardWebhooksAuth: _Preset(
        "header:webhook-id", "/type", "", ("webhook-id", "webhook-timestamp")
    ),
}


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepted(media: str, accepted: list[str]) -> bool:
    kind = media.split("/", 1)[0]
    return any(item in (media, "*/*", f"{kind}/*") for item in accepted)


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


class WebhookSource(Source[WebhookOptions]):
    """Serves ``options.path``; answers 2xx only after the broker acknowledged the record.

    Each request is checked in this order, and every refusal stores nothing:
    body size and read time (the HTTP server: 413, 408), ``auth`` (401), content
    type (415), JSON (400), ``schema`` (422), ``key`` present (400). A delivery
    id seen within ``dedupe_window`` is answered 200 with the first record's
    ``{"topic", "partition", "offset"}`` and header ``Idempotent-Replayed: true``.
    Otherwise the record is pushed (``context.push``) and the answer is 200 with
    its coordinates once the broker acknowledged it, or 503 with ``Retry-After``
    if it did not within ``ack_timeout``.

    The record: value = the raw body (its ``content-type`` kept), or for a
    structured CloudEvent (``application/cloudevents+json``) its ``data``, with
    its ``id``/``source``/``type``/``time``/``subject`` as ``ce_*`` headers (binary
    mode ``ce-*`` request headers are kept the same way); key from ``key``;
    headers ``http.user-agent``, the delivery id, the preset's event header and
    ``keep_headers`` as ``http.<name>``. ``ce_id`` comes from the delivery id (a
    repeated delivery keeps its ``ce_id``), else a fresh UUID per request.
    """

    ingress = True

    async def open(self, position: Any | None) -> None:
        options = self.options
        if self.context.http is None:
            raise FatalError(
                f"webhook source {self.context.name} needs the gateway's HTTP server: add "
                "an http section, e.g. `http: {listen: 127.0.0.1:8080}`, to the config"
            )
        if self.context.push is None:
            raise FatalError(f"webhook source {self.context.name} needs the runtime's push path")
        self._auth = options.auth
        self._preset = _PRESETS.get(type(options.auth), _Preset())
        self._sw_key = (
            standard_webhook_key(options.auth.secret.get_secret_value())
            if isinstance(options.auth, StandardWebhooksAuth)
            else b""
        )
        self._tokens = (
            [t.get_secret_value().encode() for t in options.auth.tokens]
            if isinstance(options.auth, BearerAuth)
            else []
        )
        keep = {"user-agent", *self._preset.keep, *(h.lower() for h in options.keep_headers)}
        if options.idempotency_header:
            keep.add(options.idempotency_header.lower())
        self._keep = sorted(keep)
        self._validator = self._load_schema()
        self._stopped = asyncio.Event()
        self._window = DedupeWindow(
            self.context.state_dir, window=options.dedupe_window, name="deliveries"
        )
        await self._window.open()
        try:
            self.context.http.add(options.path, self._endpoint, methods=tuple(options.methods))
        except ValueError as exc:
            await self._window.close()
            raise FatalError(f"webhook source {self.context.name}: {exc}") from exc
        self.context.logger.info(
            "webhook %s listening on %s%s", self.context.name, self.context.http.url, options.path
        )

    def _load_schema(self) -> Any:
        schema = self.options.schema_
        if schema is None:
            return None
        import jsonschema  # type: ignore[import-untyped]

        if isinstance(schema, str):
            path = self.context.resolve(schema)
            try:
                schema = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise FatalError(f"cannot read the JSON Schema {path}: {exc}") from exc
        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise FatalError(
                f"the webhook's schema is not a valid JSON Schema: {exc.message}"
            ) from None
        return cls(schema)

    async def check(self) -> None:
        self._load_schema()

    async def read(self) -> list[SourceRecord]:
        # every record arrives through the push path; read() only idles
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), 1.0)
        return []

    async def close(self) -> None:
        stopped = getattr(self, "_stopped", None)
        if stopped is None:
            return
        stopped.set()
        if self.context.http is not None:
            self.context.http.clear()
        await self._window.close()

    # -- one request ----------------------------------------------------------

    def _authenticate(self, request: Request, body: bytes) -> None:
        auth = self._auth
        headers = request.headers
        try:
            if auth is None:
                return
            if isinstance(auth, BearerAuth):
                scheme, _, given = (headers.get("authorization") or "").partition(" ")
                token = given.strip().encode()
                ok = scheme.lower() == "bearer" and token
                matched = False
                for accepted in self._tokens:  # every token is compared: constant time
                    matched |= hmac.compare_digest(token, accepted)
                if not (ok and matched):
                    raise SignatureError("missing or wrong bearer token")
            elif isinstance(auth, HmacAuth):
                verify_hmac(
                    auth.secret.get_secret_value().encode(),
                    body,
                    headers.get(auth.header),
                    algorithm=auth.algorithm,
                    encoding=auth.encoding,
                    prefix=auth.prefix,
                    name=auth.header,
                )
            elif isinstance(auth, GithubAuth):
                secret = auth.secret.get_secret_value().encode()
                verify_github(secret, body, headers.get("x-hub-signature-256"))
            elif isinstance(auth, StripeAuth):
                verify_stripe(
                    auth.secret.get_secret_value().encode(),
                    body,
                    headers.get("stripe-signature"),
                    now=time.time(),
                    tolerance=auth.tolerance,
                )
            elif isinstance(auth, StandardWebhooksAuth):
                verify_standard_webhook(
                    self._sw_key,
                    body,
                    msg_id=headers.get("webhook-id"),
                    timestamp=headers.get("webhook-timestamp"),
                    signatures=headers.get("webhook-signature"),
                    now=time.time(),
                    tolerance=auth.tolerance,
                )
        except SignatureError as exc:
            raise HttpError(401, f"unauthorized: {exc}") from None

    def _lookup(self, spec: str | None, request: Request, document: Any) -> Any:
        if spec is None:
            return MISSING
        if spec.startswith("header:"):
            value = request.headers.get(spec[7:])
            return MISSING if value is None else value
        if document is MISSING:
            return MISSING
        return json_pointer(document, spec)

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        self._authenticate(request, body)
        options = self.options
        media = _media_type(request.headers.get("content-type"))
        if not _accepted(media, options.content_types):
            raise HttpError(
                415,
                f"content type {media or '(none)'!r} is not accepted here (accepted: "
                f"{', '.join(options.content_types)})",
            )
        document: Any = MISSING
        if _is_json(media):
            try:
                document = json.loads(body)
            except ValueError as exc:
                raise HttpError(400, f"the body is not valid JSON: {exc}") from None
        if self._validator is not None:
            self._validate(media, document)
        record = self._record(request, body, media, document)
        delivery = self._delivery_id(request, document)
        if delivery is not None:
            record.identity = {"delivery": delivery}
            found, fresh = await self._guarded(
                self._window.once(delivery, lambda: self._push(record))
            )
            headers = {} if fresh else {"Idempotent-Replayed": "true"}
            return JSONResponse(found, headers=headers)
        record.identity = {"request": str(uuid.uuid4())}
        return JSONResponse(await self._guarded(self._push(record)))

    def _validate(self, media: str, document: Any) -> None:
        target = document
        if media == _STRUCTURED and isinstance(document, dict):
            target = document.get("data", MISSING)
        if target is MISSING:
            raise HttpError(422, "the body does not match the schema: it is not JSON")
        error = next(iter(self._validator.iter_errors(target)), None)
        if error is not None:
            where = "/" + "/".join(str(part) for part in error.absolute_path)
            raise HttpError(422, f"the body does not match the schema at {where}: {error.message}")

    async def _guarded(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except RetriableError as exc:
            retry = max(int(exc.retry_after or 5), 1)
            raise HttpError(
                503, f"not stored: {exc}", headers={"Retry-After": str(retry)}
            ) from None

    async def _push(self, record: SourceRecord) -> dict[str, Any]:
        assert self.context.push is not None
        deliveries = await self.context.push([record], ack_timeout=self.options.ack_timeout)
        return deliveries[0].as_dict()

    def _delivery_id(self, request: Request, document: Any) -> str | None:
        options = self.options
        if options.idempotency_header:
            value = request.headers.get(options.idempotency_header)
            if value:
                return f"h:{value}"
        found = self._lookup(self._preset.delivery, request, document)
        if isinstance(found, str | int) and found != "":
            return f"p:{found}"
        if _media_type(request.headers.get("content-type")) == _STRUCTURED and isinstance(
            document, dict
        ):
            ce_id, source = document.get("id"), document.get("source")
            if ce_id is not None and source is not None:
                return "ce:" + json.dumps([source, ce_id])
        return None

    def _record(self, request: Request, body: bytes, media: str, document: Any) -> SourceRecord:
        options = self.options
        headers: list[tuple[str, bytes]] = []
        value: Any = body
        content_type = request.headers.get("content-type")
        for name, text in request.headers.items():
            if name.startswith("ce-") and name != "ce-":
                headers.append(("ce_" + name[3:], text.encode()))
        if media == _STRUCTURED:
            if not isinstance(document, dict):
                raise HttpError(400, "a structured CloudEvent is a JSON object")
            for attribute in _CE_ATTRIBUTES:
                if document.get(attribute) is not None:
                    headers.append((f"ce_{attribute}", str(document[attribute]).encode()))
            for attribute, item in document.items():
                if attribute not in _CE_SKIP and isinstance(item, str | int | bool):
                    headers.append((f"ce_{attribute}", str(item).encode()))
            if "data_base64" in document:
                try:
                    value = base64.b64decode(document["data_base64"], validate=True)
                except (ValueError, TypeError):
                    raise HttpError(400, "data_base64 of the CloudEvent is not base64") from None
                content_type = document.get("datacontenttype") or "application/octet-stream"
            else:
                data = document.get("data")
                value = None if data is None else json.dumps(data, separators=(",", ":")).encode()
                content_type = document.get("datacontenttype") or "application/json"
        if content_type and value is not None:
            headers.append(("content-type", content_type.encode()))
        for name in self._keep:
            kept = request.headers.get(name)
            if kept is not None:
                headers.append((f"http.{name}", kept.encode()))
        key = self._lookup(options.key, request, document)
        if options.key is not None and (key is MISSING or key is None):
            raise HttpError(400, f"the delivery has no {options.key} (the record key)")
        event_type = None
        if not any(name == "ce_type" for name, _ in headers):
            event_type = self._event_type(request, document)
        return SourceRecord(
            value=value,
            key=None if key is MISSING else key,
            headers=headers,
            event_type=event_type,
        )

    def _event_type(self, request: Request, document: Any) -> str | None:
        spec = self.options.event_type
        if spec is not None and not (spec.startswith("header:") or spec.startswith("/")):
            return spec
        prefix = "" if spec is not None else self._preset.type_prefix
        found = self._lookup(spec or self._preset.event_type, request, document)
        if isinstance(found, str) and found:
            return prefix + found
        return None
