"""The ``http`` sink: records to an HTTP endpoint, reliably (httpx).

Each ``write`` sends its records as requests to ``url`` (a template:
``https://x/orders/{value.id}``), one per record, or with ``batch`` a JSON array
of up to ``batch.size`` values per request, and returns once every request was
answered 2xx.

- **Order.** With ``concurrency: N`` requests run in parallel on N lanes; the
  records of one key always share a lane (CRC-32 of the key), so per-key order
  holds; keyless records are spread over the lanes. A lane stops at its first
  failure, so a later record of a key never overtakes an earlier one.
- **Errors, by type.** A status in ``retry_on`` (default 408, 429, 5xx) or a
  connection error or timeout -> :class:`RetriableError` with ``Retry-After``
  (seconds or HTTP date) as ``retry_after``; the runner's ``retry:`` block
  decides attempts and backoff. Any other 4xx/5xx -> :class:`DataError` with
  headers ``backbone.error.http.status`` and ``backbone.error.http.body`` (the
  first 1 KiB of the answer): the record goes to the dead-letter topic and the
  sink goes on. A record the sink cannot render (a URL field it lacks; a value
  that is not JSON in batch mode) is a :class:`DataError` before anything of
  the batch is sent.
- **Nothing twice.** A request that failed leaves the others of the batch
  delivered; the sink remembers them (by topic, partition, offset) and skips
  them when the runner writes the batch again (after a retriable error, or one
  record at a time after a ``DataError``). ``Idempotency-Key`` (the record's
  ``ce_id``, or a UUIDv5 of the batch's ``ce_id``\\ s) lets the receiver drop what
  it got twice after a crash.
- **Headers.** ``headers`` (secrets: ``${VAR}``, never printed), per record the
  CloudEvents attributes as ``ce-*`` (HTTP binary mode) and its ``content-type``;
  with ``sign``, Standard Webhooks ``webhook-id``/``-timestamp``/``-signature``
  so the receiver can verify Backbone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from backbone.sdk import (
    ConnectorKind,
    ConnectorOptions,
    DataError,
    Duration,
    FatalError,
    RetriableError,
    Sink,
    SinkRecord,
    Template,
    parse_retry_after,
    standard_webhook_key,
    standard_webhook_signature,
)

__all__ = ["CONNECTOR", "HttpSink", "HttpSinkOptions"]

_NAMESPACE = uuid.UUID("0b3c0a52-6e0e-4f4e-9d3c-6a1d4bd1c1a7")
_CE_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion", "ce_subject")
_BODY_EXCERPT = 1024


class BatchOptions(ConnectorOptions):
    """Several records per request: the body is a JSON array of their values."""

    size: int = Field(default=500, ge=1, le=100_000)
    """Most records per request."""
    max_wait: Duration = 0.0
    """How long to wait for ``size`` records before sending fewer."""


class SignOptions(ConnectorOptions):
    """Sign each request as the Standard Webhooks spec says."""

    secret: SecretStr
    """``whsec_`` followed by the base64 key (the receiver holds the same)."""

    @field_validator("secret")
    @classmethod
    def _base64(cls, value: SecretStr) -> SecretStr:
        standard_webhook_key(value.get_secret_value())
        return value


class HttpSinkOptions(ConnectorOptions):
    """Options of the ``http`` sink."""

    url: str
    """Endpoint; may use record fields: ``{value.PATH}``, ``{key}``, ``{key.PATH}``,
    ``{headers.NAME}``, ``{topic}``, ``{partition}``, ``{offset}`` (URL-quoted)."""
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    """HTTP method."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers, e.g. ``Authorization: "Bearer ${API_TOKEN}"`` (never printed)."""
    batch: BatchOptions | None = None
    """Send a JSON array of up to ``size`` values per request; default one request per
    record (its value as the body, as is)."""
    timeout: Duration = Field(default=30.0, gt=0)
    """Per request: connect, write and wait for the answer."""
    concurrency: int = Field(default=1, ge=1, le=256)
    """Requests in flight at once (per-key order is kept)."""
    retry_on: list[int | Literal["5xx", "4xx"]] = Field(
        default_factory=lambda: [408, 429, "5xx"]  # type: ignore[arg-type]
    )
    """Statuses retried with backoff (besides connection errors and timeouts); other
    4xx/5xx send the record to the dead-letter topic."""
    sign: SignOptions | None = None
    """Sign requests (Standard Webhooks) with this secret."""
    idempotency_header: str | None = "Idempotency-Key"
    """Header carrying the record's ``ce_id`` (null: none)."""
    cloudevents: bool = True
    """Send each record's CloudEvents attributes as ``ce-*`` headers (one request per
    record only)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        Template(value)  # ValueError names a bad field
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL (got {value!r})")
        return value


def _lane(record: SinkRecord, index: int, lanes: int) -> int:
    if lanes == 1:
        return 0
    if record.key is None:
        return index % lanes
    return zlib.crc32(record.key) % lanes


class _Request:
    """One request to send: its records, URL, body and headers."""

    __slots__ = ("body", "headers", "records", "url")

    def __init__(
        self, records: list[SinkRecord], url: str, body: bytes | None, headers: dict[str, str]
    ) -> None:
        self.records = records
        self.url = url
        self.body = body
        self.headers = headers


class HttpSink(Sink[HttpSinkOptions]):
    """Sends records to ``url`` (see the module docstring)."""

    async def open(self) -> None:
        options = self.options
        self._template = Template(options.url)
        self._static = {name: value.get_secret_value() for name, value in options.headers.items()}
        self._sign_key = (
            standard_webhook_key(options.sign.secret.get_secret_value()) if options.sign else None
        )
        codes = {item for item in options.retry_on if isinstance(item, int)}
        classes = {item[0] for item in options.retry_on if isinstance(item, str)}
        self._retry = lambda status: status in codes or str(status)[0] in classes
        self._delivered: set[tuple[str, int, int]] = set()
        if options.batch is not None:
            self.batch_size = options.batch.size
            self.batch_wait = options.batch.max_wait
        # one client (one keep-alive connection) per lane: a shared httpx pool costs
        # far more per request once many requests wait on it
        tls = httpx.create_ssl_context()  # one TLS context for every lane
        self._clients: list[httpx.AsyncClient] | None = [
            httpx.AsyncClient(
                verify=tls,
                timeout=options.timeout,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                follow_redirects=True,
            )
            for _ in range(options.concurrency)
        ]

    async def close(self) -> None:
        clients = getattr(self, "_clients", None)
        if clients is not None:
            self._clients = None
            for client in clients:
                await client.aclose()

    # -- building requests ----------------------------------------------------

    def _url(self, record: SinkRecord) -> str:
        template = self._template
        if template.constant:
            return template.text

        def lookup(root: str) -> Any:
            if root == "value":
                return record.json()
            if root == "key":
                return record.key_json()
            if root == "headers":
                return {name: value.decode("utf-8", "replace") for name, value in record.headers}
            return getattr(record, root)

        try:
            return template.render(lookup)
        except KeyError as exc:
            raise DataError(
                f"record {record.topic}/{record.partition}@{record.offset} has no "
                f"{exc.args[0]} for the url {template.text}"
            ) from None

    @staticmethod
    def _event_id(record: SinkRecord) -> str:
        found = record.header("ce_id")
        if found:
            return found.decode("utf-8", "replace")
        return f"{record.topic}-{record.partition}-{record.offset}"

    def _headers(self, event_id: str, body: bytes | None) -> dict[str, str]:
        headers = dict(self._static)
        if self.options.idempotency_header:
            headers[self.options.idempotency_header] = event_id
        if self._sign_key is not None:
            stamp = int(time.time())
            headers["webhook-id"] = event_id
            headers["webhook-timestamp"] = str(stamp)
            headers["webhook-signature"] = standard_webhook_signature(
                self._sign_key, event_id, stamp, body or b""
            )
        return headers

    def _single(self, record: SinkRecord) -> _Request:
        event_id = self._event_id(record)
        headers = self._headers(event_id, record.value)
        content_type = record.header("content-type")
        if record.value is not None:
            headers["Content-Type"] = (
                content_type.decode("latin-1") if content_type else "application/json"
            )
        if self.options.cloudevents:
            for name in _CE_HEADERS:
                value = record.header(name)
                if value is not None:
                    headers["ce-" + name[3:]] = value.decode("latin-1")
        return _Request([record], self._url(record), record.value, headers)

    def _batched(self, records: list[SinkRecord], url: str) -> _Request:
        for record in records:
            record.json()  # DataError for a value that is not JSON: nothing is sent
        body = b"[" + b",".join(r.value if r.value is not None else b"null" for r in records) + b"]"
        ids = "\n".join(self._event_id(r) for r in records)
        event_id = str(uuid.uuid5(_NAMESPACE, ids))
        headers = self._headers(event_id, body)
        headers["Content-Type"] = "application/json"
        return _Request(records, url, body, headers)

    def _plan(self, records: Sequence[SinkRecord]) -> list[tuple[int, list[_Request]]]:
        """Requests per lane, in order; raises DataError before anything is sent."""
        lanes_count = self.options.concurrency
        lanes: list[list[SinkRecord]] = [[] for _ in range(lanes_count)]
        for index, record in enumerate(records):
            if (record.topic, record.partition, record.offset) in self._delivered:
                continue
            lanes[_lane(record, index, lanes_count)].append(record)
        batch = self.options.batch
        plans: list[tuple[int, list[_Request]]] = []
        for number, lane in enumerate(lanes):
            if not lane:
                continue
            if batch is None:
                plans.append((number, [self._single(record) for record in lane]))
                continue
            requests: list[_Request] = []
            chunk: list[SinkRecord] = []
            chunk_url = ""
            for record in lane:
                url = self._url(record)
                if chunk and (url != chunk_url or len(chunk) >= batch.size):
                    requests.append(self._batched(chunk, chunk_url))
                    chunk = []
                chunk.append(record)
                chunk_url = url
            if chunk:
                requests.append(self._batched(chunk, chunk_url))
            plans.append((number, requests))
        return plans

    # -- sending --------------------------------------------------------------

    async def _send(self, lane: int, request: _Request) -> None:
        clients = self._clients
        if clients is None:
            raise FatalError("the http sink is closed")
        client = clients[lane]
        method = self.options.method
        try:
            response = await client.request(
                method, request.url, content=request.body, headers=request.headers
            )
        except httpx.TimeoutException as exc:
            raise RetriableError(
                f"{method} {request.url} timed out ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RetriableError(
                f"{method} {request.url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            for record in request.records:
                self._delivered.add((record.topic, record.partition, record.offset))
            return
        excerpt = response.content[:_BODY_EXCERPT]
        text = excerpt[:200].decode("utf-8", "replace")
        message = f"{method} {request.url} answered {status}: {text}"
        if self._retry(status):
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=time.time())
            raise RetriableError(message, retry_after=retry_after)
        raise DataError(
            message,
            headers=[
                ("backbone.error.http.status", str(status).encode()),
                ("backbone.error.http.body", excerpt),
            ],
        )

    async def _lane(self, lane: int, requests: list[_Request]) -> BaseException | None:
        for request in requests:
            try:
                await self._send(lane, request)
            except (RetriableError, DataError) as exc:
                return exc  # the lane stops: later records of its keys wait
        return None

    async def write(self, records: Sequence[SinkRecord]) -> None:
        plans = self._plan(records)
        if len(plans) == 1:
            errors = [await self._lane(*plans[0])]
        else:
            errors = list(await asyncio.gather(*(self._lane(*plan) for plan in plans)))
        failures = [error for error in errors if error is not None]
        if not failures:
            for record in records:
                self._delivered.discard((record.topic, record.partition, record.offset))
            return
        if len(self._delivered) > 1_000_000:  # a bound: duplicates at worst
            self._delivered.clear()
        retriable = [e for e in failures if isinstance(e, RetriableError)]
        if retriable:
            waits = [e.retry_after for e in retriable if e.retry_after is not None]
            raise RetriableError(str(retriable[0]), retry_after=max(waits) if waits else None)
        raise failures[0]


CONNECTOR = ConnectorKind(
    name="http",
    summary="Records to an HTTP endpoint: batching, retries honouring Retry-After, DLQ.",
    sink=HttpSink,
    sink_options=HttpSinkOptions,
    example="""\
sinks:
  orders-api:
    type: http
    topics: [shop.orders]
    url: https://api.example.com/orders/{value.id}
    method: PUT
    headers: {Authorization: "Bearer ${ORDERS_API_TOKEN}"}
    concurrency: 8                  # per-key order is kept
    dead_letter_topic: shop.orders.dlq
    retry: {max_attempts: 10, initial_backoff: 500ms, max_backoff: 1m}
""",
)
