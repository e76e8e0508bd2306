"""The ``http_poll`` source: a REST API polled on an interval or a cron, with a cursor.

Replaces "cron + curl": every ``interval`` (or at each ``cron`` time) the source
GETs ``url``, takes the array at ``items`` (a JSON pointer; ``""`` = the whole
body) and emits one record per item (key from ``key``), following ``pagination``
(``next`` from a body field, or the ``Link: <...>; rel="next"`` header) page by
page, one page per ``read()``.

**Cursor and position.** With ``cursor: {field: /updated_at, param: since}`` the
largest ``field`` seen becomes the position, and the next poll sends it as
``?since=<value>``. Items at exactly that value that were already emitted are
remembered in the position (``seen``) and skipped, so an API that answers
``since`` inclusively does not repeat them; items below it are skipped too.
The position is ``{"cursor", "seen", "poll"}`` between polls; in the middle of a
paginated poll the last record of each page carries ``next`` (the next page's
URL) and the poll's running maximum, so a crash resumes at the next page.
Records within a page share that position and carry an ``identity`` (the
item's cursor value and key, or a hash of the item), so a re-read repeats their
``ce_id``.

**Errors.** 5xx, 429, 408, timeouts and connection errors are
:class:`RetriableError` (the runtime backs off, honouring ``Retry-After``; the
same page is asked again); other 4xx stop the source FAILED with the status and
the start of the body. A body that is not JSON (or has no array at ``items``)
becomes a record with ``error`` (the dead-letter topic) and ends that poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from backbone.sdk import (
    MISSING,
    ConnectorKind,
    ConnectorOptions,
    Duration,
    FatalError,
    RetriableError,
    Source,
    SourceRecord,
    json_pointer,
    parse_retry_after,
)

__all__ = ["CONNECTOR", "HttpPollOptions", "HttpPollSource"]

_RETRIABLE = {408, 425, 429}
_EXCERPT = 500


def _pointer(value: str | None) -> str | None:
    if value is None or value == "" or value.startswith("/"):
        return value
    raise ValueError(
        f"expected a JSON pointer like /data/items ('' = the whole body), got {value!r}"
    )


class CursorOptions(ConnectorOptions):
    """Where the cursor comes from and how it is sent."""

    field: str
    """JSON pointer into an item, e.g. ``/updated_at`` or ``/id``; items should come in
    ascending order of it within a page sequence (any order works, but a crash mid-poll
    then repeats that poll)."""
    param: str
    """Query parameter the cursor is sent as on the next poll, e.g. ``since``."""
    initial: str | int | float | None = None
    """Cursor of the very first poll (default: none sent)."""

    @field_validator("field")
    @classmethod
    def _field(cls, value: str) -> str:
        return str(_pointer(value))


class PaginationOptions(ConnectorOptions):
    """How to find the next page."""

    next: str = "link"
    """``link`` (the ``Link: <url>; rel="next"`` header) or a JSON pointer into the body
    (``/next``, ``/meta/next_cursor``) holding the next page's URL, or, with ``param``,
    a token."""
    param: str | None = None
    """Send the token found at ``next`` as this query parameter (instead of following a
    URL)."""

    @field_validator("next")
    @classmethod
    def _next(cls, value: str) -> str:
        return value if value == "link" else str(_pointer(value))


class HttpPollOptions(ConnectorOptions):
    """Options of the ``http_poll`` source."""

    url: str
    """The API endpoint."""
    method: Literal["GET", "POST"] = "GET"
    """HTTP method."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Request headers, e.g. ``Authorization: "Bearer ${API_TOKEN}"`` (never printed)."""
    params: dict[str, str] = Field(default_factory=dict)
    """Query parameters sent on every first page."""
    interval: Duration | None = None
    """Poll every so long (default 1m when ``cron`` is not given)."""
    cron: str | None = None
    """Poll at these times instead (crontab ``m h dom mon dow``, UTC)."""
    items: str = ""
    """JSON pointer to the array of items (``""``: the body is the array)."""
    key: str | None = None
    """JSON pointer into an item for the record key, e.g. ``/id``."""
    cursor: CursorOptions | None = None
    """Incremental polling: the cursor field and its query parameter."""
    pagination: PaginationOptions | None = None
    """Follow pages within one poll."""
    max_pages: int = Field(default=1000, ge=1)
    """Most pages followed in one poll."""
    timeout: Duration = Field(default=30.0, gt=0)
    """Per request."""
    event_type: str = "backbone.http_poll.item"
    """CloudEvents ``ce_type`` of the records."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL (got {value!r})")
        return value

    @field_validator("items", "key")
    @classmethod
    def _pointers(cls, value: str | None) -> str | None:
        return _pointer(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            _trigger(value)
        return value

    @model_validator(mode="after")
    def _one(self) -> HttpPollOptions:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either interval or cron, not both")
        return self


def _trigger(expression: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    try:
        return CronTrigger.from_crontab(expression, timezone=dt.UTC)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None


def _with_params(url: str, params: dict[str, Any]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (
        isinstance(a, str) and isinstance(b, str)
    )


class HttpPollSource(Source[HttpPollOptions]):
    """Polls ``url`` (see the module docstring)."""

    async def open(self, position: Any | None) -> None:
        options = self.options
        initial = options.cursor.initial if options.cursor else None
        state = position or {"cursor": initial, "seen": [], "poll": 0}
        self._cursor = state.get("cursor")
        self._seen = set(state.get("seen") or ())
        self._poll = int(state.get("poll") or 0)
        self._next_url: str | None = state.get("next")
        self._max = state.get("max", self._cursor)
        self._at_max = set(state.get("at_max") or ())
        self._pages = int(state.get("pages") or 0)
        self._polling = self._next_url is not None
        self._started = self._due = time.monotonic()  # the first (or resumed) poll: now
        self._trigger = _trigger(options.cron) if options.cron else None
        if self._trigger is not None and not self._polling:
            self._due = self._next_fire()
        self._client: httpx.AsyncClient | None = httpx.AsyncClient(
            timeout=options.timeout,
            headers={k: v.get_secret_value() for k, v in options.headers.items()},
            follow_redirects=True,
        )

    def _next_fire(self) -> float:
        now = dt.datetime.now(dt.UTC)
        assert self._trigger is not None
        fire = self._trigger.get_next_fire_time(None, now)
        return time.monotonic() + max((fire - now).total_seconds(), 0.0)

    async def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            self._client = None
            await client.aclose()

    async def check(self) -> None:
        await self.open(None)
        try:
            await self._fetch(self._first_url())
        finally:
            await self.close()

    # -- polling --------------------------------------------------------------

    def _first_url(self) -> str:
        params: dict[str, Any] = dict(self.options.params)
        if self.options.cursor is not None and self._cursor is not None:
            params[self.options.cursor.param] = self._cursor
        return _with_params(self.options.url, params) if params else self.options.url

    def _position(self, *, done: bool) -> dict[str, Any]:
        if done:
            return {"cursor": self._max, "seen": sorted(self._at_max), "poll": self._poll + 1}
        return {
            "cursor": self._cursor,
            "seen": sorted(self._seen),
            "poll": self._poll,
            "next": self._next_url,
            "max": self._max,
            "at_max": sorted(self._at_max),
            "pages": self._pages,
        }

    def _finish(self) -> None:
        self._cursor, self._seen = self._max, self._at_max
        self._poll += 1
        self._polling = False
        self._next_url = None
        self._pages = 0
        if self._trigger is not None:
            self._due = self._next_fire()
        else:
            self._due = self._started + (self.options.interval or 60.0)

    async def read(self) -> list[SourceRecord]:
        if not self._polling:
            wait = self._due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                return []
            self._polling = True
            self._started = time.monotonic()
            self._next_url = self._first_url()
            self._max, self._at_max = self._cursor, set(self._seen)
        assert self._next_url is not None
        url = self._next_url
        response = await self._fetch(url)
        try:
            body = response.json()
        except ValueError as exc:
            return self._bad(response.content, f"GET {url}: the answer is not JSON: {exc}")
        items = json_pointer(body, self.options.items)
        if not isinstance(items, list):
            where = self.options.items or "the body"
            return self._bad(response.content, f"GET {url}: {where} is not an array of items")
        records = self._records(items)
        self._pages += 1
        following = self._following(url, response, body)
        if following is None or self._pages >= self.options.max_pages:
            if records:
                records[-1].position = self._position(done=True)
            self._finish()
        else:
            self._next_url = following
            if records:
                records[-1].position = self._position(done=False)
        return records

    def _bad(self, raw: bytes, reason: str) -> list[SourceRecord]:
        position = {"cursor": self._cursor, "seen": sorted(self._seen), "poll": self._poll + 1}
        self._max, self._at_max = self._cursor, set(self._seen)
        self._finish()
        return [SourceRecord(value=raw, error=reason, position=position)]

    def _records(self, items: list[Any]) -> list[SourceRecord]:
        options = self.options
        records = []
        for index, item in enumerate(items):
            key = json_pointer(item, options.key) if options.key is not None else MISSING
            ident = (
                key
                if key is not MISSING
                else hashlib.sha1(
                    json.dumps(item, sort_keys=True, default=str).encode(), usedforsecurity=False
                ).hexdigest()[:20]
            )
            ident_text = json.dumps(ident, sort_keys=True, default=str)
            identity: dict[str, Any]
            if options.cursor is not None:
                value = json_pointer(item, options.cursor.field)
                if value is MISSING:
                    value = None
                if self._cursor is not None and _comparable(value, self._cursor):
                    if value < self._cursor:
                        continue
                    if value == self._cursor and ident_text in self._seen:
                        continue
                if value is not None:
                    if self._max is None or (_comparable(value, self._max) and value > self._max):
                        self._max, self._at_max = value, set()
                    if value == self._max:
                        self._at_max.add(ident_text)
                identity = {"cursor": value, "item": ident}
            else:
                identity = {"poll": self._poll, "page": self._pages, "index": index}
            records.append(
                SourceRecord(
                    value=item,
                    key=None if key is MISSING else key,
                    identity=identity,
                    event_type=options.event_type,
                )
            )
        return records

    def _following(self, url: str, response: httpx.Response, body: Any) -> str | None:
        pagination = self.options.pagination
        if pagination is None:
            return None
        if pagination.next == "link":
            link = response.links.get("next", {}).get("url")
            return urljoin(url, link) if link else None
        found = json_pointer(body, pagination.next, None)
        if found is None or found == "":
            return None
        if pagination.param:
            return _with_params(url, {pagination.param: found})
        return urljoin(url, str(found))

    async def _fetch(self, url: str) -> httpx.Response:
        client = self._client
        if client is None:
            raise FatalError("the http_poll source is closed")
        method = self.options.method
        try:
            response = await client.request(method, url)
        except httpx.TimeoutException as exc:
            raise RetriableError(f"{method} {url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetriableError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        excerpt = response.content[:_EXCERPT].decode("utf-8", "replace")
        message = f"{method} {url} answered {status}: {excerpt}"
        if status >= 500 or status in _RETRIABLE:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=time.time())
            raise RetriableError(message, retry_after=retry_after)
        raise FatalError(message)


CONNECTOR = ConnectorKind(
    name="http_poll",
    summary="A REST API polled on an interval or cron: pagination, cursor as position.",
    source=HttpPollSource,
    source_options=HttpPollOptions,
    example="""\
sources:
  tickets:
    type: http_poll
    topic: support.tickets
    url: https://api.example.com/tickets
    headers: {Authorization: "Bearer ${TICKETS_TOKEN}"}
    interval: 30s
    items: /data
    key: /id
    cursor: {field: /updated_at, param: updated_since}
    pagination: {next: /links/next}
""",
)
