"""A real HTTP server on loopback that records requests and answers as a test scripts it.

Stands in for "the far side of the internet" of the http sink and the http_poll
source: starlette + uvicorn on a free port, in the test's event loop.
``Receiver.script`` maps a path to a function ``(request, body) -> (status,
headers, body)``; without one, 200 ``{}``. Every request is kept in
``Receiver.requests`` (method, path, query, headers, body, time).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from backbone.httpapp import HttpApp

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    """One request the receiver got."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Scripted answers per path (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.script: dict[str, Callable[[Seen], Answer]] = {}
        self.delay = 0.0
        self.app = HttpApp(port=0, max_body=64 << 20)
        self.app.add_mount("/", self._asgi, owner="receiver")

    @property
    def url(self) -> str:
        return self.app.url

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        seen = Seen(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.requests.append(seen)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.script.get(seen.path)
        status, headers, content = answer(seen) if answer else (200, {}, b"{}")
        await Response(content, status_code=status, headers=headers)(scope, receive, send)

    def on(self, path: str, answer: Callable[[Seen], Answer]) -> None:
        self.script[path] = answer

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.json() for r in self.requests if path is None or r.path == path]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    async with server.app:
        yield server
