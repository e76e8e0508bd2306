"""The admin HTTP API over a real port, on a gateway running in-process (embedded broker)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from backbone.adminclient import AdminClient
from backbone.httpapp import HttpError, refuse_cross_site
from backbone.runner import Runner
from backbone.testing import FAST_RUNTIME, running, wait_until

pytestmark = pytest.mark.timeout(120)

JOURNAL = "tests.core.ops_plugins:JOURNAL"
COUNT = "tests.core.ops_plugins:COUNT"
FILE = "tests.core.plugins:FILE"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def config(
    tmp_path: Path, body: str, *, http: str = "{listen: 127.0.0.1:0}", runtime: str = ""
) -> Path:
    """A gateway config: embedded broker in tmp_path/data, the HTTP app on a free port."""
    path = tmp_path / "gateway.yaml"
    fast = FAST_RUNTIME.replace("}", f", {runtime}}}") if runtime else FAST_RUNTIME
    path.write_text(
        f'broker: {{embedded: {{listen: "127.0.0.1:0", data_dir: "{tmp_path / "data"}"}}}}\n'
        + f"http: {http}\n"
        + fast
        + body
    )
    return path


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Runner, httpx.AsyncClient]]:
    path = config(
        tmp_path,
        f"""
topics: {{orders: {{partitions: 2}}}}
sources:
  counter: {{type: "{COUNT}", topic: orders, count: 300, keys: 7}}
sinks:
  journal: {{type: "{JOURNAL}", topics: [orders], path: journal.jsonl}}
""",
    )
    async with running(path) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url, timeout=60) as client:
            yield runner, client


async def get(client: httpx.AsyncClient, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status_code == status, response.text
    return response.json()


async def test_connectors_pause_resume_restart(
    gateway: tuple[Runner, httpx.AsyncClient], tmp_path: Path
) -> None:
    runner, client = gateway
    journal = tmp_path / "journal.jsonl"
    await wait_until(lambda: len(lines(journal)) == 300, what="300 records in the journal")
    await wait_until(lambda: runner.status["counter"].position == 300, what="position saved")
    listed = {c["name"]: c for c in await get(client, "/connectors")}
    assert set(listed) == {"counter", "journal"}
    source, sink = listed["counter"], listed["journal"]
    assert (source["role"], source["kind"], source["state"]) == ("source", COUNT, "RUNNING")
    assert (source["records_in"], source["records_out"], source["position"]) == (300, 300, 300)
    assert source["topics"] == ["orders"] and source["group"] is None
    assert (sink["role"], sink["state"], sink["group"]) == ("sink", "RUNNING", "backbone.journal")
    assert (sink["records_in"], sink["records_out"], sink["dead_lettered"]) == (300, 300, 0)
    assert sink["worker"].endswith(f":{os.getpid()}")
    detail = await get(client, "/connectors/journal")
    assert sorted(
        (p["partition"], p["committed"] == p["end_offset"]) for p in detail["partitions"]
    ) == [
        (0, True),
        (1, True),
    ]
    assert sum(p["end_offset"] for p in detail["partitions"]) == 300

    # a static member (group.instance.id), which does not leave its group on stop
    assert runner.connectors["journal"].worker.instance_id.endswith(".journal")
    paused = await client.post("/connectors/journal/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "PAUSED"
    group = await get(client, "/groups/backbone.journal")
    assert (group["state"], group["members"]) == ("Empty", [])  # it left its group
    again = await client.post("/connectors/journal/pause")
    assert again.status_code == 200 and again.json()["state"] == "PAUSED"
    resumed = await client.post("/connectors/journal/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "RUNNING"
    await wait_until(
        lambda: (
            runner.status["journal"].state.value == "RUNNING"
            and runner.connectors["journal"].lag() != {}
        ),
        what="the sink holding its partitions again",
    )

    # the source runs under the gateway cluster here: pause and resume reach its worker
    paused = await client.post("/connectors/counter/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "PAUSED"
    resumed = await client.post("/connectors/counter/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "RUNNING"

    restarted = await client.post("/connectors/counter/restart")
    assert restarted.status_code == 200
    assert restarted.json()["restarts"] == 1
    await wait_until(lambda: runner.status["counter"].state.value == "RUNNING", what="RUNNING")
    # resumed from its saved position: nothing emitted twice
    assert len(lines(journal)) == 300
    assert runner.status["counter"].records_in == 300

    missing = await client.post("/connectors/nope/pause")
    assert (missing.status_code, missing.json()) == (404, {"error": "no connector 'nope'"})


async def test_a_post_from_another_site_changes_nothing(
    gateway: tuple[Runner, httpx.AsyncClient],
) -> None:
    """A page on another site, open in the operator's browser, cannot pause or restart."""
    runner, client = gateway
    assert runner.http is not None
    own = runner.http.url
    await wait_until(lambda: runner.status["journal"].state.value == "RUNNING", what="RUNNING")
    refused_by = {
        "Origin": [
            ("http://evil.example", f"Origin http://evil.example, not {own}"),
            ("http://127.0.0.1:1", f"Origin http://127.0.0.1:1, not {own}"),  # another port
            ("null", "Origin: null"),  # a sandboxed frame, a local file
        ],
        "Sec-Fetch-Site": [
            ("cross-site", "Sec-Fetch-Site: cross-site"),
            ("same-site", "Sec-Fetch-Site: same-site"),  # another port of this host
        ],
    }
    actions = ("pause", "resume", "restart", "dead-letters/redrive")
    for header, cases in refused_by.items():
        for value, why in cases:
            for action in actions:
                refused = await client.post(
                    f"/connectors/journal/{action}", headers={header: value}
                )
                assert refused.status_code == 403, (header, value, action, refused.text)
                assert refused.json() == {"error": f"cross-site request refused ({why})"}
    # what a cross-site HTML form sends, from a browser that sent neither header
    for media in (
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain;charset=UTF-8",
    ):
        refused = await client.post(
            "/connectors/journal/pause", content=b"a=1", headers={"Content-Type": media}
        )
        assert refused.status_code == 415, refused.text
        assert refused.json() == {
            "error": f"the admin API takes no form body (Content-Type: {media.split(';')[0]}), "
            "since a page on another site could send one: send no body "
            "or Content-Type: application/json"
        }
    status = runner.status["journal"]
    assert (status.state.value, status.restarts) == ("RUNNING", 0)
    # reads stay open (another site cannot read them: no CORS headers)
    listed = await client.get("/connectors", headers={"Origin": "http://evil.example"})
    assert listed.status_code == 200
    assert "access-control-allow-origin" not in listed.headers

    # the gateway's own pages (same origin) and clients that are not browsers work
    paused = await client.post(
        "/connectors/journal/pause", headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}
    )
    assert (paused.status_code, paused.json()["state"]) == (200, "PAUSED")
    typed = await client.post(
        "/connectors/journal/resume", headers={"Sec-Fetch-Site": "none"}
    )  # typed in the address bar
    assert (typed.status_code, typed.json()["state"]) == (200, "RUNNING")
    as_json = await client.post("/connectors/journal/pause", json={})
    assert (as_json.status_code, as_json.json()["state"]) == (200, "PAUSED")
    cli = AdminClient(own)  # what `backbone replay` uses: no Origin, no Sec-Fetch-Site
    try:
        assert (await cli.resume("journal"))["state"] == "RUNNING"
    finally:
        await cli.close()
    assert runner.status["journal"].state.value == "RUNNING"


def _browser_request(host: str, origin: str) -> Request:
    headers = [(b"host", host.encode()), (b"origin", origin.encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


def test_an_origin_is_compared_without_its_default_port() -> None:
    refuse_cross_site(_browser_request("127.0.0.1", "http://127.0.0.1"))
    refuse_cross_site(_browser_request("127.0.0.1:80", "HTTP://127.0.0.1"))
    refuse_cross_site(_browser_request("LocalHost:8080", "http://localhost:8080"))
    with pytest.raises(HttpError) as refused:
        refuse_cross_site(_browser_request("127.0.0.1:8080", "https://127.0.0.1:8080"))
    assert refused.value.status_code == 403
    assert refused.value.detail == (
        "cross-site request refused (Origin https://127.0.0.1:8080, not http://127.0.0.1:8080)"
    )


async def test_topics_records_and_groups(
    gateway: tuple[Runner, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, client = gateway
    await wait_until(lambda: len(lines(tmp_path / "journal.jsonl")) == 300, what="300 records")
    topics = {t["name"]: t for t in await get(client, "/topics")}
    assert "_backbone.positions" not in topics
    assert topics["orders"]["records"] == 300 and len(topics["orders"]["partitions"]) == 2
    assert topics["orders"]["size_bytes"] > 0
    internal = {t["name"] for t in await get(client, "/topics?internal=true")}
    assert "_backbone.positions" in internal
    orders = await get(client, "/topics/orders")
    assert {c["name"] for c in orders["configs"]} >= {"retention.ms", "cleanup.policy"}
    newest = await get(client, "/topics/orders/records?limit=3")
    stamps = [r["timestamp"] for r in newest["records"]]
    assert len(stamps) == 3 and stamps == sorted(stamps, reverse=True)
    first = await get(client, "/topics/orders/records?partition=0&offset=0&limit=2")
    assert [(r["partition"], r["offset"]) for r in first["records"]] == [(0, 0), (0, 1)]
    assert set(first["records"][0]["value"]) == {"n"} and "ce_id" in first["records"][0]["headers"]
    bad = await client.get("/topics/orders/records?limit=zero")
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": "limit: expected a whole number (got 'zero')"},
    )
    unknown = await client.get("/topics/nowhere")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "topic 'nowhere' does not exist"},
    )
    groups = {g["name"]: g for g in await get(client, "/groups")}
    assert groups["backbone.journal"]["lag"] == 0 and groups["backbone.journal"]["members"] == 1
    schema = await get(client, "/openapi.json")
    assert schema["openapi"] == "3.1.0"
    assert {"/connectors", "/connectors/{name}/pause", "/topics/{name}/records", "/metrics"} <= set(
        schema["paths"]
    )
    view = schema["components"]["schemas"]["ConnectorView"]
    assert {"state", "records_in", "lag", "last_error_at"} <= set(view["properties"])
    assert schema["paths"]["/connectors"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"type": "array", "items": {"$ref": "#/components/schemas/ConnectorView"}}


async def test_metrics_count_the_records_that_flowed(
    gateway: tuple[Runner, httpx.AsyncClient], tmp_path: Path
) -> None:
    runner, client = gateway
    await wait_until(lambda: len(lines(tmp_path / "journal.jsonl")) == 300, what="300 records")
    await wait_until(lambda: runner.status["counter"].records_out == 300, what="300 acked")
    caught_up = {("orders", 0): 0, ("orders", 1): 0}
    await wait_until(lambda: runner.connectors["journal"].lag() == caught_up, what="commits")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    source = {"connector": "counter", "role": "source"}
    sink = {"connector": "journal", "role": "sink"}
    assert value("backbone_connector_records_in_total", **source) == 300
    assert value("backbone_connector_records_out_total", **source) == 300
    assert value("backbone_connector_records_in_total", **sink) == 300
    assert value("backbone_connector_records_out_total", **sink) == 300
    assert value("backbone_connector_dead_lettered_total", **sink) == 0
    assert value("backbone_connector_errors_total", **sink) == 0
    assert value("backbone_connector_up", state="RUNNING", **sink) == 1
    assert value("backbone_connector_up", state="PAUSED", **sink) == 0
    assert value("backbone_source_freshness_seconds", connector="counter") >= 0
    assert value("backbone_sink_lag_records", topic="orders", partition="0", **sink) == 0
    assert value("backbone_sink_lag_records", topic="orders", partition="1", **sink) == 0
    produced = value("backbone_broker_requests_total", api="Produce")
    assert produced >= 1
    assert value("backbone_broker_request_seconds_count", api="Produce") == produced
    assert value("backbone_broker_request_seconds_bucket", api="Produce", le="+Inf") == produced
    assert value("backbone_broker_request_bytes_total", api="Produce") > 300 * 8


async def test_ready_health_and_a_failed_connector(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        f"""
sources:
  feed: {{type: "{COUNT}", topic: feed, count: 3}}
sinks:
  broken: {{type: "{JOURNAL}", topics: [feed], path: j.jsonl, refuse: refuse.json}}
""",
    )
    (tmp_path / "refuse.json").write_text(json.dumps([{"n": 1}]))
    async with running(path) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url) as client:
            status = runner.status["broken"]
            await wait_until(lambda: status.state.value == "FAILED", what="the sink FAILED")
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert ready.json() == {
                "ready": False,
                "reasons": ['sink broken is FAILED: DataError: refused value {"n": 1}'],
            }
            assert (await get(client, "/health")) == {"status": "ok"}
            view = await get(client, "/connectors/broken")
            assert view["error"] == view["last_error"] == 'DataError: refused value {"n": 1}'
            assert view["last_error_at"] is not None
            refused = await client.post("/connectors/broken/pause")
            assert refused.status_code == 409
            assert refused.json() == {
                "error": "sink broken is FAILED: only a running connector can be paused "
                "(restart it)"
            }
            (tmp_path / "refuse.json").unlink()  # the fix
            restarted = await client.post("/connectors/broken/restart")
            assert restarted.status_code == 200 and restarted.json()["error"] is None
            # at least once: record 0 (written before the failure) comes again with 1 and 2
            await wait_until(
                lambda: [r["value"]["n"] for r in lines(tmp_path / "j.jsonl")] == [0, 0, 1, 2],
                what="the batch written after the fix",
            )

            async def ready_now() -> bool:
                return (await client.get("/ready")).status_code == 200

            await wait_until(ready_now, what="ready once both run")
            assert (await get(client, "/ready")) == {"ready": True, "reasons": []}


async def test_the_token_guards_every_admin_route(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        f'sources:\n  one: {{type: "{COUNT}", topic: t, count: 1}}\n',
        http='{listen: "127.0.0.1:0", admin_token: "s3cret"}',
    )
    async with running(path) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url) as client:
            for route in ("/connectors", "/topics", "/groups", "/metrics", "/openapi.json"):
                refused = await client.get(route)
                assert refused.status_code == 401, route
                assert refused.headers["www-authenticate"] == "Bearer"
                assert refused.json() == {
                    "error": "missing or wrong bearer token "
                    "(Authorization: Bearer <http.admin_token>)"
                }
                wrong = await client.get(route, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                right = await client.get(route, headers={"Authorization": "Bearer s3cret"})
                assert right.status_code == 200, route
            posted = await client.post("/connectors/one/pause")
            assert posted.status_code == 401
            bearer = {"Authorization": "Bearer s3cret"}
            await wait_until(lambda: runner.status["one"].state.value == "RUNNING", what="RUN")
            evil = await client.post(
                "/connectors/one/pause", headers={**bearer, "Origin": "http://evil.example"}
            )
            assert evil.status_code == 403
            assert evil.json()["error"].startswith("cross-site request refused (Origin ")
            assert runner.status["one"].state.value == "RUNNING"
            # the token proves the sender: a bearer request works, with any body type
            paused = await client.post(
                "/connectors/one/pause",
                headers={**bearer, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert (paused.status_code, paused.json()["state"]) == (200, "PAUSED")
            resumed = await client.post("/connectors/one/resume", headers=bearer)
            assert (resumed.status_code, resumed.json()["state"]) == (200, "RUNNING")
            assert (await client.get("/health")).status_code == 200  # probes stay open
            assert (await client.get("/ready")).status_code in (200, 503)


def _request(host: str, host_header: str = "127.0.0.1:8080") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/connectors",
                    "headers": [(b"host", host_header.encode())],
                    "client": (host, 40000)})  # fmt: skip


async def test_without_a_token_only_loopback_is_served(tmp_path: Path) -> None:
    path = config(tmp_path, f'sources:\n  one: {{type: "{COUNT}", topic: t, count: 1}}\n')
    async with running(path) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url) as client:
            assert (await client.get("/connectors")).status_code == 200  # we are on loopback
            port = runner.http.url.rsplit(":", 1)[1].strip("/")
            for name in (f"localhost:{port}", f"[::1]:{port}", f"app.localhost:{port}"):
                answer = await client.get("/connectors", headers={"Host": name})
                assert answer.status_code == 200, (name, answer.text)
            # DNS rebinding: a page of evil.example, whose name now resolves to 127.0.0.1,
            # reaches the server with its own name as Host (and a matching Origin)
            for path in ("/connectors", "/"):
                answer = await client.get(
                    path, headers={"Host": f"evil.example:{port}", "Origin": "http://evil.example"}
                )
                assert answer.status_code == 403, (path, answer.text)
            answer = await client.post(
                "/connectors/one/pause",
                headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
            )
            assert answer.status_code == 403
            assert answer.json()["error"] == (
                "Host 'evil.example' is not a loopback name: without http.admin_token the "
                "admin API answers only requests for localhost or a loopback address"
            )
            assert runner.status["one"].state.name != "PAUSED"
    from backbone.admin import AdminApi

    api = AdminApi(runner)
    api.authorize(_request("127.0.0.1"))
    api.authorize(_request("::1"))
    with pytest.raises(HttpError) as refused:
        api.authorize(_request("192.0.2.10"))
    assert refused.value.status_code == 403
    assert refused.value.detail == (
        "the admin API answers only on loopback unless http.admin_token is set"
    )


async def test_progress_lines_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = config(
        tmp_path,
        f"""
sources:
  ticks: {{type: "{COUNT}", topic: ticks, count: 40}}
sinks:
  sink: {{type: "{JOURNAL}", topics: [ticks], path: j.jsonl}}
""",
        runtime="progress_interval: 200ms",
    )
    caplog.set_level(logging.INFO, logger="backbone.progress")

    def logged(prefix: str, end: str) -> logging.LogRecord | None:
        found = (r for r in caplog.records if r.getMessage().startswith(prefix))
        return next((r for r in found if r.getMessage().endswith(end)), None)

    async with running(path):
        await wait_until(
            lambda: logged("source ticks RUNNING: ", "totals 40 in, 40 out, 0 dead-lettered"),
            what="the source's line",
        )
        await wait_until(
            lambda: logged("sink sink RUNNING: ", "totals 40 in, 40 out, 0 dead-lettered; lag 0"),
            what="the sink's line, caught up",
        )
    sink_line = logged("sink sink RUNNING: ", "lag 0")
    assert sink_line is not None and sink_line.levelno == logging.INFO
    assert getattr(sink_line, "connector", None) == "sink"
