"""The web console in a real browser: Debian's Chromium driven by Playwright.

A gateway runs in-process (embedded broker, HTTP app on a free port) with a
generator -> topic -> stdout pipeline, and a journal sink that dead-letters one
record. Each page is opened in headless Chromium, its figures compared with the
admin API's; the test pauses a sink by clicking, browses a message by offset,
redrives a dead letter and replays a sink. A screenshot of each page is saved in
``build/artifacts/console/`` (``BACKBONE_ARTIFACTS`` overrides the folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backbone.runner import Runner
from backbone.testing import FAST_RUNTIME, running, wait_until
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(240)

JOURNAL = "tests.core.ops_plugins:JOURNAL"
COUNT = "tests.core.ops_plugins:COUNT"
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(
    os.environ.get("BACKBONE_ARTIFACTS", Path(__file__).parents[2] / "build" / "artifacts")
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def config(tmp_path: Path, *, http: str = "{listen: 127.0.0.1:0}") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f'broker: {{embedded: {{listen: "127.0.0.1:0", data_dir: "{tmp_path / "data"}"}}}}\n'
        f"http: {http}\n"
        + FAST_RUNTIME
        + f"""
topics: {{events: {{partitions: 2}}, orders: {{partitions: 1}}}}
sources:
  ticks: {{type: generator, topic: events, rate: 400, count: 40, keys: 4}}
  counter: {{type: "{COUNT}", topic: orders, count: 10}}
sinks:
  out: {{type: stdout, topics: [events], start: earliest}}
  journal:
    type: "{JOURNAL}"
    topics: [orders]
    path: journal.jsonl
    refuse: refuse.json
    dead_letter_topic: orders.dlq
"""
    )
    (tmp_path / "refuse.json").write_text(json.dumps([{"n": 3}, {"n": 5}]))
    return path


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Runner, httpx.AsyncClient]]:
    async with running(config(tmp_path)) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url, timeout=60) as client:
            await wait_until(lambda: len(journal(tmp_path)) == 8, what="8 records journalled")
            await wait_until(
                lambda: (
                    runner.status["out"].records_out == 40
                    and runner.status["journal"].dead_lettered == 2
                    and runner.status["ticks"].position == 40
                    and runner.status["counter"].position == 10
                ),
                what="the pipelines done",
            )
            yield runner, client


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        unavailable("chromium is not installed (make system-deps installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(30_000)
            yield context
        finally:
            await chromium.close()


async def api(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def shot(page: Any, name: str) -> None:
    folder = ARTIFACTS / "console"
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"))


async def text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).inner_text()).strip()


async def test_console_pages_actions_and_figures(
    gateway: tuple[Runner, httpx.AsyncClient], browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    runner, client = gateway
    assert runner.http is not None
    base = runner.http.url
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # -- overview: the flow's cards and the broker summary agree with the API ----------
    await page.goto(base + "/")
    await expect(page.locator("h1")).to_have_text("Overview")
    connectors = {c["name"]: c for c in await api(client, "/connectors")}
    assert set(connectors) == {"ticks", "counter", "out", "journal"}
    for name, view in connectors.items():
        card = page.locator(f'article[data-connector="{name}"]')
        assert await card.locator(".state").inner_text() == view["state"] == "RUNNING"
        assert await card.locator('[data-field="records_out"]').inner_text() == str(
            view["records_out"]
        )
    assert await text(page, '[data-connector="out"] [data-field="records_out"]') == "40"
    assert await text(page, '[data-connector="journal"] [data-field="records_out"]') == "8"
    topics = {t["name"]: t for t in await api(client, "/topics")}
    assert await text(page, '#broker [data-field="topics"]') == str(len(topics))
    assert await text(page, '#broker [data-field="records"]') == str(
        sum(t["records"] for t in topics.values())
    )
    for name, view in topics.items():
        shown = await text(page, f'article[data-topic="{name}"] [data-field="records"]')
        assert shown == str(view["records"]), name
    await shot(page, "overview")

    # -- connector page: figures, then pause by clicking; the API agrees -----------------
    await page.click('article[data-connector="out"] h3 a')
    await expect(page.locator("h1")).to_contain_text("out")
    detail = await api(client, "/connectors/out")
    assert await text(page, "#records-in") == str(detail["records_in"]) == "40"
    assert await text(page, "#records-out") == str(detail["records_out"]) == "40"
    assert await text(page, "#lag") == str(detail["lag"]) == "0"
    rows = page.locator("#partitions tbody tr")
    assert await rows.count() == len(detail["partitions"]) == 2
    for p in detail["partitions"]:
        row = page.locator(f'#partitions tr[data-partition="events/{p["partition"]}"] td')
        assert await row.nth(2).inner_text() == str(p["committed"])
        assert await row.nth(4).inner_text() == str(p["lag"])
    await page.click("#pause")
    await expect(page.locator("#note")).to_have_text("Paused.")
    await expect(page.locator("#state .state")).to_have_text("PAUSED")
    assert (await api(client, "/connectors/out"))["state"] == "PAUSED"
    await shot(page, "connector")

    # live refresh: the overview follows a resume made elsewhere (the API), no reload
    await page.goto(base + "/")
    state = page.locator('article[data-connector="out"] .state')
    await expect(state).to_have_text("PAUSED")
    resumed = await client.post("/connectors/out/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "RUNNING"
    await expect(state).to_have_text("RUNNING", timeout=30_000)

    # a source: its saved position; restart by clicking
    await page.goto(base + "/ui/connectors/ticks")
    ticks = await api(client, "/connectors/ticks")
    assert json.loads(await text(page, "#position")) == ticks["position"] == 40
    await page.click("#restart")
    await expect(page.locator("#note")).to_have_text("Restarted.")
    assert (await api(client, "/connectors/ticks"))["restarts"] == 1
    await wait_until(lambda: runner.status["ticks"].state.value == "RUNNING", what="RUNNING")

    # -- topics: the list, then one topic, browsing a message by offset -------------------
    await page.goto(base + "/ui/topics")
    for name, view in topics.items():
        row = page.locator(f'#topics tr[data-topic="{name}"] [data-field="records"]')
        assert await row.inner_text() == str(view["records"])
    await shot(page, "topics")
    await page.click('#topics a:text-is("events")')
    await expect(page.locator("h1")).to_have_text("events")
    assert await text(page, "#topic-records") == "40"
    await page.check("#mode-offset")
    await page.select_option("#b-partition", "1")
    await page.fill("#b-offset", "3")
    await page.fill("#b-limit", "1")
    await page.click("#browse")
    record = page.locator("#records li.record")
    await expect(record).to_have_count(1)
    assert await record.get_attribute("data-partition") == "1"
    assert await record.get_attribute("data-offset") == "3"
    (expected,) = (await api(client, "/topics/events/records?partition=1&offset=3&limit=1"))[
        "records"
    ]
    assert json.loads(await record.locator("pre.value").inner_text()) == expected["value"]
    assert await record.locator("pre.value").inner_text() == json.dumps(
        expected["value"], indent=2, ensure_ascii=False
    )  # pretty-printed
    assert await record.locator("code.key").inner_text() == expected["key"]
    headers = await record.locator("dl.headers").inner_text()
    for name, value in expected["headers"].items():
        assert name in headers and value in headers
    await shot(page, "topic")
    # newest first, and the filter box
    await page.check('input[name="mode"][value="newest"]')
    await page.select_option("#b-partition", "")
    await page.fill("#b-limit", "50")
    await page.fill("#b-filter", "no such text")
    await page.click("#browse")
    await expect(page.locator("#records li.record")).to_have_count(0)
    await page.fill("#b-filter", "event 7")
    await page.click("#browse")
    found = page.locator("#records li.record")
    await expect(found).to_have_count(1)
    assert '"seq": 7' in await found.locator("pre.value").inner_text()
    await page.fill("#b-filter", "")
    await page.click("#browse")
    offsets = await page.locator("#records li.record").evaluate_all(
        "items => items.map(i => Number(new Date(i.querySelector('time').dateTime)))"
    )
    assert len(offsets) == 40 and offsets == sorted(offsets, reverse=True)  # newest first

    # -- consumer groups ---------------------------------------------------------------------
    await page.goto(base + "/ui/groups")
    groups = {g["name"]: g for g in await api(client, "/groups")}
    assert {"backbone.out", "backbone.journal"} <= set(groups)
    for name in ("backbone.out", "backbone.journal"):
        row = page.locator(f'#groups tr[data-group="{name}"] [data-field="lag"]')
        assert await row.inner_text() == str(groups[name]["lag"])
    await shot(page, "groups")
    await page.click('#groups a:text-is("backbone.journal")')
    group = await api(client, "/groups/backbone.journal")
    assert await text(page, "#group-lag") == str(group["lag"]) == "0"
    await expect(page.locator("#members tbody tr")).to_have_count(len(group["members"]))
    cells = page.locator('#group-partitions tr[data-partition="orders/0"] td')
    assert await cells.nth(2).inner_text() == str(group["partitions"][0]["committed"]) == "10"
    await shot(page, "group")

    # -- dead letters: see the record and its error, fix the sink, redrive --------------------
    await page.goto(base + "/ui/dead-letters")
    await page.click('#dead-connectors a:text-is("journal")')
    letters = await api(client, "/connectors/journal/dead-letters")
    assert [d["error_message"] for d in letters] == [
        'refused value {"n": 3}',
        'refused value {"n": 5}',
    ]
    shown = page.locator("#letters li.record")
    await expect(shown).to_have_count(2)
    for index, letter in enumerate(letters):
        item = shown.nth(index)
        assert await item.locator(".error-message").inner_text() == letter["error_message"]
        assert json.loads(await item.locator("pre.value").inner_text()) == letter["record"]["value"]
    await shot(page, "dead-letters")
    (tmp_path / "refuse.json").unlink()  # the fix
    # redrive one (n=3): it is delivered, the other stays pending
    await shown.nth(0).locator("button.redrive-one").click()
    await expect(page.locator("#redrive-result")).to_have_text(
        "Redrive: 1 record(s) sent back, 1 delivered, 0 failed again."
    )
    await expect(page.locator("#letters li.record")).to_have_count(1)
    assert json.loads(await page.locator("#letters pre.value").inner_text()) == {"n": 5}
    pending = await api(client, "/connectors/journal/dead-letters")
    assert [d["record"]["value"] for d in pending] == [{"n": 5}]
    assert sorted(line["value"]["n"] for line in journal(tmp_path)) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    # then all the pending ones: n=5 only (n=3 is not delivered twice)
    await page.click("#redrive-all")
    await expect(page.locator("#redrive-result")).to_have_text(
        "Redrive: 1 record(s) sent back, 1 delivered, 0 failed again."
    )
    await expect(page.locator("#letters li.record")).to_have_count(0)
    assert await api(client, "/connectors/journal/dead-letters") == []
    assert sorted(line["value"]["n"] for line in journal(tmp_path)) == list(range(10))

    # -- replay a sink from the beginning, with the confirmation page -------------------------
    await page.goto(base + "/ui/connectors/journal")
    view = await api(client, "/connectors/journal")
    assert view["last_error"] == 'DataError: refused value {"n": 5}'
    assert view["last_error"] in await text(page, "#last-error")
    assert await text(page, "#dead-lettered") == str(view["dead_lettered"]) == "2"
    await page.check('input[name="earliest"]')
    await page.click("#replay")
    await expect(page.locator("h1")).to_have_text("Replay journal from earliest?")
    assert "delivers 10 record(s) again" in await text(page, "#replay-summary")
    assert len(journal(tmp_path)) == 10  # nothing moved before the confirmation
    await shot(page, "replay-confirm")
    await page.click("#confirm")
    await expect(page.locator("#note")).to_have_text(
        "Replay started: the sink's group was moved back 10 record(s)."
    )
    await wait_until(lambda: len(journal(tmp_path)) == 20, what="the replayed records")
    assert sorted(line["value"]["n"] for line in journal(tmp_path)) == sorted(list(range(10)) * 2)
    assert errors == []


def test_rate_chart_scales_the_rates_between_samples() -> None:
    from backbone.console._format import rate_chart
    from backbone.views import RateSample

    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    samples = [
        RateSample(at=at + dt.timedelta(seconds=5 * i), records_in=i * 50, records_out=i * 25)
        for i in range(4)
    ]
    chart = rate_chart(samples)
    assert (chart["samples"], chart["peak"], chart["last_in"], chart["last_out"]) == (3, 10, 10, 5)
    assert chart["points_in"] == "0.0,4.0 300.0,4.0 600.0,4.0"  # 10/s: the top
    assert chart["points_out"] == "0.0,62.0 300.0,62.0 600.0,62.0"  # 5/s: half way
    assert rate_chart(samples[:2])["points_in"] == ""  # one rate: no line yet


async def test_console_refuses_cross_site_posts_and_needs_the_token(tmp_path: Path) -> None:
    path = config(tmp_path, http='{listen: 127.0.0.1:0, admin_token: "s3cret"}')
    async with running(path) as runner:
        assert runner.http is not None
        async with httpx.AsyncClient(base_url=runner.http.url, timeout=60) as client:
            # without the token: the login page, for pages and POSTs alike
            page = await client.get("/ui/topics")
            assert (page.status_code, page.headers["location"]) == (
                303,
                "/ui/login?next=/ui/topics",
            )
            post = await client.post("/ui/connectors/out/pause", data={"csrf": "x"})
            assert post.status_code == 401
            assert "missing or wrong bearer token" in post.text
            wrong = await client.post("/ui/login", data={"token": "nope", "next": "/"})
            assert wrong.status_code == 401 and "That token is not right." in wrong.text
            # the bearer token of the admin API works too
            bearer = await client.get("/ui/topics", headers={"Authorization": "Bearer s3cret"})
            assert bearer.status_code == 200 and "<h1>Topics</h1>" in bearer.text
            # errors are pages too, with the reason
            for path, status, message in [
                ("/ui/connectors/nope", 404, "no connector &#39;nope&#39;"),
                ("/ui/topics/nope", 404, "nope"),
                ("/ui/topics/events?mode=offset", 400, "offset: give the offset to browse from"),
                ("/ui/topics/events?mode=offset&offset=x", 400, "offset: expected a whole number"),
                ("/ui/topics/events?mode=time&from=soon", 400, "from: expected a date-time"),
            ]:
                answer = await client.get(path, headers={"Authorization": "Bearer s3cret"})
                assert answer.status_code == status, (path, answer.text)
                assert "text/html" in answer.headers["content-type"]
                assert message in answer.text, (path, answer.text)
            # browsing from a date-time shows what the admin API answers for it
            bearer_only = {"Authorization": "Bearer s3cret"}
            await wait_until(lambda: runner.status["out"].records_out == 40, what="40 events")
            newest = await client.get("/topics/events/records?partition=0", headers=bearer_only)
            stamps = sorted(r["timestamp"] for r in newest.json()["records"])
            middle = stamps[len(stamps) // 2]
            when = dt.datetime.fromtimestamp(middle / 1000, dt.UTC).isoformat()
            query = {"partition": "0", "from": when, "limit": "5"}
            expected = await client.get("/topics/events/records", params=query, headers=bearer_only)
            offsets = [r["offset"] for r in expected.json()["records"]]
            assert offsets and all(r["timestamp"] >= middle for r in expected.json()["records"])
            shown = await client.get(
                "/ui/topics/events", params={**query, "mode": "time"}, headers=bearer_only
            )
            assert shown.status_code == 200
            assert [
                int(part.split('"')[0]) for part in shown.text.split('data-offset="')[1:]
            ] == offsets
            login = await client.post(
                "/ui/login", data={"token": "s3cret", "next": "//evil.example/"}
            )
            assert (login.status_code, login.headers["location"]) == (303, "/")
            cookie = login.cookies["backbone_console"]
            assert "s3cret" not in cookie
            assert "httponly" in login.headers["set-cookie"].lower()
            assert "samesite=strict" in login.headers["set-cookie"].lower()
            overview = await client.get("/")
            assert overview.status_code == 200 and "<h1>Overview</h1>" in overview.text
            connector = await client.get("/ui/connectors/out")
            token = connector.text.split('name="csrf" value="')[1].split('"')[0]

            # a POST without the form token, with a wrong one, or from another origin
            for data, headers, message in [
                ({}, {}, "missing or stale form token (csrf)"),
                ({"csrf": "0" * 64}, {}, "missing or stale form token (csrf)"),
                ({"csrf": token}, {"Origin": "http://evil.example"}, "cross-site request"),
                ({"csrf": token}, {"Sec-Fetch-Site": "cross-site"}, "cross-site request"),
            ]:
                refused = await client.post("/ui/connectors/out/pause", data=data, headers=headers)
                assert refused.status_code == 403, refused.text
                assert message in refused.text
            assert runner.status["out"].state.value == "RUNNING"
            own = runner.http.url
            paused = await client.post(
                "/ui/connectors/out/pause", data={"csrf": token}, headers={"Origin": own}
            )
            assert (paused.status_code, paused.headers["location"]) == (
                303,
                "/ui/connectors/out?done=paused",
            )
            assert runner.status["out"].state.value == "PAUSED"
            # logging out forgets the session
            out = await client.post("/ui/logout")
            assert out.status_code == 303
            client.cookies.clear()
            again = await client.get("/")
            assert again.status_code == 303
