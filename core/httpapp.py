"""The gateway's one HTTP server: a starlette app served by uvicorn inside the gateway's loop.

The runner creates one :class:`HttpApp` when the config has an ``http:`` section
and enters it (``async with``) before the connectors start; it stops it first when
the gateway stops (no new requests; requests in flight get ``grace`` seconds).
uvicorn runs in the gateway's own event loop and installs no signal handlers:
SIGINT/SIGTERM stay the runner's.

**Routes are added by the parts that own them**, at any time (before or after the
server started), and removed by owner:

- core parts (admin API, ``/metrics``, console) call :meth:`HttpApp.add_route` /
  :meth:`HttpApp.add_mount` with an ``owner`` name;
- a connector gets ``context.http``, an :class:`HttpRoutes` bound to its own name
  (``context.http.add("/hooks/github", endpoint, methods=("POST",))``); the
  runtime removes a connector's routes when it stops.

An endpoint is a starlette endpoint (``async def endpoint(request) -> Response``).
A path (or path + method) already served is refused with :class:`ValueError`
naming its owner. Mounts (sub-apps, static files) are matched after every route,
so a console mounted at ``/`` never hides a webhook.

**For every request**: the body is limited to ``max_body`` bytes (a larger
``Content-Length`` is refused before anything is read; a chunked body is cut as
soon as it passes the limit: 413), each read of the body waits at most
``read_timeout`` (408), idle keep-alive connections close after ``keep_alive``.
Every error answer is JSON ``{"error": "..."}`` (404, 405, 408, 413, a raised
:class:`HttpError` or starlette ``HTTPException``; 500 for a bug, logged with its
traceback, the body saying only "internal error"). ``GET /health`` answers
``{"status": "ok"}`` while the server runs.

**Cross-site requests.** :func:`refuse_cross_site` is the one check that a
request changing state (the admin API's and the console's POSTs) was not sent by
a browser from another site: 403 when ``Sec-Fetch-Site`` is anything but
``same-origin``/``none``, or when ``Origin`` is ``null`` or another origin than
this server's. Clients that are not browsers (curl, httpx, the ``backbone`` CLI)
send neither header and pass. :func:`form_body` tells the body types an HTML form
(or a script without a CORS preflight) can send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "FORM_TYPES",
    "HttpApp",
    "HttpError",
    "HttpRoutes",
    "error_response",
    "form_body",
    "refuse_cross_site",
]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class HttpError(HTTPException):
    """Raise from an endpoint to answer ``status`` with ``{"error": message}``."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=dict(headers or {}))


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _bug(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
"""The body types a page on another site can POST without a CORS preflight."""

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin(scheme: str, host: str) -> str:
    scheme, host = scheme.lower(), host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def refuse_cross_site(request: Request) -> None:
    """Raise :class:`HttpError` 403 if a browser sent ``request`` from another site.

    ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` (typed in the address
    bar) is refused, and so is an ``Origin`` that is ``null`` (a sandboxed frame, a
    local file) or not this server's own (scheme and ``Host``). A request with
    neither header (curl, httpx, the CLI) passes.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null":
        raise HttpError(403, "cross-site request refused (Origin: null)")
    own = _origin(request.url.scheme, request.headers.get("host", ""))
    scheme, _, host = origin.partition("://")
    if _origin(scheme, host) != own:
        raise HttpError(403, f"cross-site request refused (Origin {origin}, not {own})")


def form_body(request: Request) -> str | None:
    """The media type of ``request``'s body if it is one of :data:`FORM_TYPES`, else ``None``."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media if media in FORM_TYPES else None


class _Limits:
    """ASGI middleware: body size limit and body read timeout (see the module docstring)."""

    def __init__(self, app: ASGIApp, owner: HttpApp) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.owner.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "Content-Length is not a number")(
                        scope, receive, send
                    )
                    return
                if declared > limit:
                    await error_response(
                        413, f"request body of {declared} bytes exceeds the limit of {limit}"
                    )(scope, receive, send)
                    return
        received = 0
        done = False
        timeout = self.owner.read_timeout

        async def limited() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            try:
                async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"request body not received within {timeout:g}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
                done = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class _Endpoint:
    """``endpoint(request) -> Response`` as a plain ASGI app (lighter than starlette's
    per-request wrapper; errors still reach the app's exception handlers)."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the gateway owns SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


class HttpApp:
    """One starlette app + uvicorn server (see the module docstring).

    ``port=0`` picks a free port; :attr:`port` and :attr:`url` tell which once started.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_body: int = 1 << 20,
        read_timeout: float = 30.0,
        keep_alive: float = 5.0,
        grace: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.keep_alive = keep_alive
        self.grace = grace
        self._owners: dict[int, str] = {}  # id(route) -> owner
        self.app = Starlette(
            exception_handlers={HTTPException: _http_error, Exception: _bug},
        )
        self._asgi = _Limits(self.app, self)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.add_route("/health", self._health, methods=("GET",), owner="http")

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (the bound port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server accepts requests."""
        return self._task is not None and not self._task.done()

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # -- routes ---------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        """The app's routes, in matching order (routes first, then mounts)."""
        return self.app.router.routes

    def owner_of(self, route: BaseRoute) -> str:
        """Who added ``route``."""
        return self._owners.get(id(route), "?")

    def _conflict(self, path: str, methods: Sequence[str]) -> BaseRoute | None:
        for route in self.routes:
            if isinstance(route, Mount):
                continue
            if not isinstance(route, Route):
                continue
            same_path = route.path == path
            if not same_path and "{" not in path:
                match, _ = route.matches({"type": "http", "path": path, "method": "GET"})
                same_path = match.name != "NONE"
            if same_path and set(route.methods or ()) & {m.upper() for m in methods}:
                return route
        return None

    def add_route(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: Sequence[str] = ("GET",),
        owner: str,
        name: str | None = None,
    ) -> Route:
        """Serve ``methods`` on ``path`` with ``endpoint``; :class:`ValueError` if taken."""
        if not path.startswith("/"):
            raise ValueError(f"an HTTP route path starts with '/' (got {path!r})")
        taken = self._conflict(path, methods)
        if taken is not None:
            assert isinstance(taken, Route)
            raise ValueError(
                f"HTTP path {path} ({', '.join(methods)}) is already served by "
                f"{self.owner_of(taken)} (route {taken.path})"
            )
        route = Route(path, _Endpoint(endpoint), methods=list(methods), name=name)
        mounts = [i for i, r in enumerate(self.routes) if isinstance(r, Mount)]
        self.routes.insert(mounts[0] if mounts else len(self.routes), route)
        self._owners[id(route)] = owner
        return route

    def add_mount(self, path: str, app: ASGIApp, *, owner: str, name: str | None = None) -> Mount:
        """Serve the sub-app ``app`` under ``path`` (matched after every route)."""
        for route in self.routes:
            if isinstance(route, Mount) and route.path == path.rstrip("/"):
                raise ValueError(f"HTTP mount {path} is already served by {self.owner_of(route)}")
        mount = Mount(path, app=app, name=name)
        self.routes.append(mount)
        self._owners[id(mount)] = owner
        return mount

    def remove(self, owner: str) -> int:
        """Remove every route and mount of ``owner``; how many there were."""
        keep = [r for r in self.routes if self._owners.get(id(r)) != owner]
        removed = len(self.routes) - len(keep)
        for route in self.routes:
            if self._owners.get(id(route)) == owner:
                del self._owners[id(route)]
        self.routes[:] = keep
        return removed

    def routes_for(self, owner: str) -> HttpRoutes:
        """The :class:`HttpRoutes` handle a connector gets as ``context.http``."""
        return HttpRoutes(self, owner)

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> HttpApp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and serve; returns once the server accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections
        # (a response written in two parts would wait ~40 ms for a delayed ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"cannot listen on {self.host}:{self.port} (http.listen): {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=max(int(self.keep_alive), 1),
            timeout_graceful_shutdown=max(int(self.grace), 1),
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.01)
        logger.info("HTTP server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop accepting; let requests in flight finish (``grace`` s); idempotent."""
        server, task, self._task = self._server, self._task, None
        if server is None or task is None:
            return
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=self.grace + 5)
        if not done:
            logger.warning("HTTP server did not stop within %.1fs: cancelled", self.grace + 5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            logger.error("HTTP server failed", exc_info=task.exception())
        logger.info("HTTP server stopped")


class HttpRoutes:
    """Routes of one owner (a connector's ``context.http``; part of :mod:`backbone.sdk`).

    ``add(path, endpoint, methods=("POST",))`` serves ``endpoint`` on the gateway's
    HTTP server (:class:`ValueError` if the path is taken); ``clear()`` removes every
    route of this owner (the runtime calls it when the connector stops).
    ``max_body`` is the server's body limit, ``url`` its base URL.
    """

    def __init__(self, app: HttpApp, owner: str) -> None:
        self._app = app
        self.owner = owner

    @property
    def max_body(self) -> int:
        return self._app.max_body

    @property
    def url(self) -> str:
        return self._app.url

    def add(self, path: str, endpoint: Endpoint, *, methods: Sequence[str] = ("POST",)) -> None:
        self._app.add_route(path, endpoint, methods=methods, owner=self.owner)

    def clear(self) -> None:
        self._app.remove(self.owner)
