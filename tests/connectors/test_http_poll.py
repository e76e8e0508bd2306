"""The http_poll source against a real local API server (uvicorn on loopback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backbone import testing
from backbone.connectors.http_poll import HttpPollOptions, HttpPollSource
from backbone.sdk import FatalError, RetriableError
from tests.receiver import Receiver, Seen, receiver

pytestmark = pytest.mark.timeout(90)


class Api:
    """A paginated API: items with ``updated_at``, ``?since=`` inclusive, ``?page=`` tokens."""

    def __init__(self, server: Receiver, count: int, page: int = 5) -> None:
        self.server = server
        self.items = [{"id": n, "updated_at": n, "name": f"item {n}"} for n in range(1, count + 1)]
        self.page = page
        self.broken = False
        server.on("/items", self.answer)

    def answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if self.broken:
            return 200, {}, b"<html>maintenance</html>"
        since = int(seen.query.get("since", 0))
        start = int(seen.query.get("page", 0))
        chosen = [item for item in self.items if item["updated_at"] >= since]
        body: dict[str, Any] = {"data": chosen[start : start + self.page]}
        if start + self.page < len(chosen):
            body["next"] = start + self.page
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def source_options(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": f"{self.server.url}/items",
            "interval": "100ms",
            "items": "/data",
            "key": "/id",
            "cursor": {"field": "/updated_at", "param": "since"},
            "pagination": {"next": "/next", "param": "page"},
            **extra,
        }


@pytest.fixture
async def server() -> AsyncIterator[Receiver]:
    async with receiver() as running:
        yield running


def make(tmp_path: Path, options: dict[str, Any]) -> HttpPollSource:
    return HttpPollSource(
        HttpPollOptions.model_validate(options), testing.context(tmp_path, "poll")
    )


async def test_conformance(server: Receiver, tmp_path: Path) -> None:
    api = Api(server, count=30, page=4)

    async def bad_input() -> None:
        api.broken = True

    await testing.check_source(
        lambda: make(tmp_path, api.source_options()), minimum=20, bad_input=bad_input
    )


async def test_pages_cursor_and_seen_items(server: Receiver, tmp_path: Path) -> None:
    api = Api(server, count=12, page=5)
    source = make(tmp_path, api.source_options(interval="50ms"))
    await source.open(None)
    try:
        first = await testing.read_at_least(source, 12)
        assert [r.value["id"] for r in first] == list(range(1, 13))
        assert [r.key for r in first] == list(range(1, 13))
        positions = [r.position for r in first]
        assert positions[4]["next"] == f"{server.url}/items?page=5"
        assert positions[-1] == {"cursor": 12, "seen": ["12"], "poll": 1}
        assert [p is None for p in positions].count(False) == 3  # one per page
        # a new item at the cursor value and a later one; 12 itself is not repeated
        api.items += [{"id": 13, "updated_at": 12}, {"id": 14, "updated_at": 15}]
        more = await testing.read_at_least(source, 2)
        assert [r.value["id"] for r in more] == [13, 14]
        assert more[-1].position == {"cursor": 15, "seen": ["14"], "poll": 2}
    finally:
        await source.close()
    polls = [r.query for r in server.requests if "page" not in r.query]
    assert polls[0] == {} and polls[1] == {"since": "12"}


async def test_link_header_pagination_and_resuming_mid_poll(
    server: Receiver, tmp_path: Path
) -> None:
    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        page = int(seen.query.get("p", "1"))
        headers = {"Link": f'</items?p={page + 1}>; rel="next"'} if page < 3 else {}
        return 200, headers, json.dumps([{"id": f"{page}-{n}"} for n in range(2)]).encode()

    server.on("/items", answer)
    options = {
        "url": f"{server.url}/items",
        "interval": "1h",
        "key": "/id",
        "pagination": {"next": "link"},
    }
    source = make(tmp_path, options)
    await source.open(None)
    try:
        records = await testing.read_at_least(source, 6)
    finally:
        await source.close()
    assert [r.value["id"] for r in records] == ["1-0", "1-1", "2-0", "2-1", "3-0", "3-1"]
    middle = records[3].position
    assert middle["next"] == f"{server.url}/items?p=3"
    again = make(tmp_path, options)
    await again.open(middle)  # a restart after page 2: page 3 comes next, at once
    try:
        rest = await testing.read_at_least(again, 2)
    finally:
        await again.close()
    assert [r.value["id"] for r in rest] == ["3-0", "3-1"]
    assert testing.event_ids("poll", rest) == testing.event_ids("poll", records[4:])


async def test_errors_are_typed(server: Receiver, tmp_path: Path) -> None:
    answers = iter(
        [
            (503, {"Retry-After": "4"}, b"busy"),
            (429, {}, b""),
            (401, {}, b'{"message": "Bad credentials"}'),
        ]
    )
    server.on("/items", lambda seen: next(answers))
    source = make(tmp_path, {"url": f"{server.url}/items", "headers": {"Authorization": "t0k"}})
    await source.open(None)
    try:
        with pytest.raises(RetriableError) as caught:
            await source.read()
        assert caught.value.retry_after == 4.0
        assert str(caught.value) == f"GET {server.url}/items answered 503: busy"
        with pytest.raises(RetriableError, match="answered 429"):
            await source.read()
        with pytest.raises(FatalError) as fatal:
            await source.read()
        assert str(fatal.value) == (
            f'GET {server.url}/items answered 401: {{"message": "Bad credentials"}}'
        )
    finally:
        await source.close()
    assert server.requests[0].headers["authorization"] == "t0k"
    assert "t0k" not in repr(source.options)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="give either interval or cron, not both"):
        HttpPollOptions(url="http://x", interval=1, cron="* * * * *")
    with pytest.raises(ValueError, match="invalid cron expression 'every minute'"):
        HttpPollOptions(url="http://x", cron="every minute")
    with pytest.raises(ValueError, match="expected a JSON pointer like /data/items"):
        HttpPollOptions(url="http://x", items="data")


async def test_resumes_from_its_cursor_after_a_sigkill(server: Receiver, tmp_path: Path) -> None:
    api = Api(server, count=60, page=3)
    server.delay = 0.05  # a page every ~50 ms: the kill lands mid-poll
    options = json.dumps(api.source_options(interval="200ms"))

    def ids(lines: list[dict[str, Any]]) -> set[int]:
        return {line["value"]["id"] for line in lines}

    def kill_when(lines: list[dict[str, Any]]) -> bool:
        return len(ids(lines)) >= 20

    lines = await testing.check_source_through_crash(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "data"),
        tmp_path=tmp_path,
        source="{type: http_poll, " + options[1:],
        kill_when=kill_when,
        done_when=lambda lines: ids(lines) == set(range(1, 61)),
    )
    assert ids(lines) == set(range(1, 61))
    # after the restart the poller went on from its saved position (a page token or
    # the cursor): the very first page (no parameters) was asked for once only
    assert sum(1 for r in server.requests if r.query == {}) == 1
    assert len(lines) < 60 + 20  # duplicates only for what was in flight


async def test_an_answer_that_is_not_json_reaches_the_dead_letter_topic(
    server: Receiver, tmp_path: Path
) -> None:
    api = Api(server, count=3)

    async def inject() -> None:
        api.broken = True

    options = json.dumps(api.source_options(interval="200ms"))
    dead = await testing.check_source_dead_letters(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "data"),
        tmp_path=tmp_path,
        source="{type: http_poll, " + options[1:-1] + "}",
        inject=inject,
        count=1,
    )
    assert dead[0].value == b"<html>maintenance</html>"
    message = dict(dead[0].headers)["backbone.error.message"].decode()
    assert message.startswith(f"GET {server.url}/items")
    assert ": the answer is not JSON: Expecting value: line 1 column 1 (char 0)" in message
