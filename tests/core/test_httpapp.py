"""The gateway's HTTP server on a real loopback port, with a real HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from backbone.httpapp import HttpApp
from backbone.sdk import HttpError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def app() -> AsyncIterator[HttpApp]:
    async with HttpApp(port=0, max_body=1000, read_timeout=0.5, grace=1) as server:
        yield server


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"size": len(body)})


async def test_health_and_json_errors(app: HttpApp) -> None:
    async with httpx.AsyncClient(base_url=app.url) as client:
        response = await client.get("/health")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
        response = await client.get("/nowhere")
        assert (response.status_code, response.json()) == (404, {"error": "Not Found"})
        response = await client.post("/health")
        assert (response.status_code, response.json()) == (405, {"error": "Method Not Allowed"})


async def test_routes_are_added_and_removed_by_owner_while_running(app: HttpApp) -> None:
    async def teapot(request: Request) -> Response:
        raise HttpError(418, "short and stout", headers={"Retry-After": "3"})

    async def bug(request: Request) -> Response:
        raise RuntimeError("secret detail")

    routes = app.routes_for("hook")
    routes.add("/hooks/echo", echo)
    routes.add("/hooks/teapot", teapot, methods=("GET",))
    app.add_route("/bug", bug, owner="tests")
    async with httpx.AsyncClient(base_url=app.url) as client:
        assert (await client.post("/hooks/echo", content=b"abc")).json() == {"size": 3}
        response = await client.get("/hooks/teapot")
        assert response.status_code == 418
        assert response.json() == {"error": "short and stout"}
        assert response.headers["retry-after"] == "3"
        response = await client.get("/bug")
        assert (response.status_code, response.json()) == (500, {"error": "internal error"})
        routes.clear()
        assert (await client.post("/hooks/echo", content=b"abc")).status_code == 404
        assert (await client.get("/bug")).status_code == 500


async def test_a_taken_path_is_refused_naming_its_owner(app: HttpApp) -> None:
    app.add_route("/connectors/{name}", echo, methods=("GET", "POST"), owner="admin")
    with pytest.raises(ValueError, match=r"HTTP path /health \(GET\) is already served by http"):
        app.routes_for("hook").add("/health", echo, methods=("GET",))
    with pytest.raises(ValueError, match="already served by admin"):
        app.routes_for("hook").add("/connectors/x", echo)
    app.routes_for("hook").add("/health", echo, methods=("PUT",))  # another method is free
    with pytest.raises(ValueError, match="starts with '/'"):
        app.routes_for("hook").add("hooks", echo)


async def test_mounts_never_hide_routes(app: HttpApp) -> None:
    async def console(scope, receive, send):  # type: ignore[no-untyped-def]
        await PlainTextResponse("console")(scope, receive, send)

    app.add_mount("/", console, owner="console")
    app.routes_for("hook").add("/hooks/late", echo)  # added after the mount
    async with httpx.AsyncClient(base_url=app.url) as client:
        assert (await client.get("/anything")).text == "console"
        assert (await client.post("/hooks/late", content=b"x")).json() == {"size": 1}
    with pytest.raises(ValueError, match="already served by console"):
        app.add_mount("/", console, owner="other")


async def test_body_limit_by_length_and_while_streaming(app: HttpApp) -> None:
    app.routes_for("hook").add("/echo", echo)
    async with httpx.AsyncClient(base_url=app.url) as client:
        assert (await client.post("/echo", content=b"x" * 1000)).json() == {"size": 1000}
        response = await client.post("/echo", content=b"x" * 1001)
        assert response.status_code == 413
        assert response.json() == {"error": "request body of 1001 bytes exceeds the limit of 1000"}

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"y" * 100

        response = await client.post("/echo", content=chunks())  # chunked: no length
        assert response.status_code == 413
        assert response.json() == {"error": "request body exceeds the limit of 1000 bytes"}


async def test_a_body_that_never_comes_gets_408(app: HttpApp) -> None:
    app.routes_for("hook").add("/echo", echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = HttpApp(port=0)
    await server.start()
    port = server.port
    assert server.running
    await server.stop()
    await server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/health")
