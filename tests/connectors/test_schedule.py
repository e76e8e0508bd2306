"""The schedule source under an injected clock (``backbone.testing.ManualClock``): fire
times, catch-up after a downtime, concurrency, deterministic ids, and the four jobs
(tick; sql on SQLite and PostgreSQL; http against a local server; command)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from backbone import RetriableError, SourceRecord, Timetable, testing
from backbone.connectors.schedule import ScheduleOptions, ScheduleSource

pytestmark = pytest.mark.timeout(60)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def source(
    tmp_path: Path, clock: testing.ManualClock, name: str = "sched", **options: Any
) -> ScheduleSource:
    context = testing.context(tmp_path, name, clock=clock)
    return ScheduleSource(ScheduleOptions(**options), context)


def produced(records: list[SourceRecord]) -> list[SourceRecord]:
    return [r for r in records if r.produce]


async def fire(src: ScheduleSource, clock: testing.ManualClock, when: str) -> list[SourceRecord]:
    """Move the clock to ``when`` and read until the fire's position arrives."""
    clock.set(when)
    records: list[SourceRecord] = []
    while not records or records[-1].position is None:
        records += await testing.read_at_least(src, 1, within=20)
    return records


# ----------------------------------------------------------------------------- fire times


def test_crontab_weekdays_and_the_day_or_rule() -> None:
    sundays = Timetable(cron="0 2 * * 0", interval=None, timezone="UTC")
    start = at("2024-05-01T00:00:00+00:00")  # a Wednesday
    assert [t.strftime("%a %H:%M") for t in sundays.between(start, start + dt.timedelta(14))] == [
        "Sun 02:00",
        "Sun 02:00",
    ]
    seven = Timetable(cron="0 2 * * 7", interval=None, timezone="UTC")
    assert seven.after(start) == sundays.after(start)
    either = Timetable(cron="0 0 1 * mon", interval=None, timezone="UTC")
    got = list(either.between(at("2024-04-28T00:00:00+00:00"), at("2024-05-14T00:00:00+00:00")))
    assert [t.date().isoformat() for t in got] == [
        "2024-04-29",  # Monday
        "2024-05-01",  # the 1st (a Wednesday)
        "2024-05-06",
        "2024-05-13",
    ]
    weekend = Timetable(cron="30 8 * * 6-7", interval=None, timezone="UTC")
    got = list(weekend.between(start, start + dt.timedelta(7)))
    assert [t.strftime("%a") for t in got] == ["Sat", "Sun"]


def test_time_zones_macros_and_intervals() -> None:
    berlin = Timetable(cron="@daily", interval=None, timezone="Europe/Berlin")
    got = list(berlin.between(at("2024-03-30T12:00:00+00:00"), at("2024-04-01T12:00:00+00:00")))
    # midnight in Berlin: 23:00 UTC before the DST change, 22:00 UTC after it
    assert [t.isoformat() for t in got] == [
        "2024-03-30T23:00:00+00:00",
        "2024-03-31T22:00:00+00:00",
    ]
    # a time skipped by the spring change fires right after it; a repeated one, once
    early = Timetable(cron="30 2 * * *", interval=None, timezone="Europe/Berlin")
    got = list(early.between(at("2024-03-30T12:00:00+00:00"), at("2024-04-01T12:00:00+00:00")))
    assert [t.isoformat() for t in got] == [
        "2024-03-31T01:00:00+00:00",  # 03:00 CEST, the instant after the jump
        "2024-04-01T00:30:00+00:00",
    ]
    got = list(early.between(at("2024-10-26T12:00:00+00:00"), at("2024-10-28T12:00:00+00:00")))
    assert [t.isoformat() for t in got] == [
        "2024-10-27T00:30:00+00:00",  # 02:30 CEST, the first of the two
        "2024-10-28T01:30:00+00:00",
    ]
    every = Timetable(cron=None, interval=300, timezone="UTC")
    assert every.after(at("2024-05-01T00:02:17+00:00")) == at("2024-05-01T00:05:00+00:00")
    assert every.last(at("2024-05-01T00:00:00+00:00"), at("2025-05-01T00:04:59+00:00")) == at(
        "2025-05-01T00:00:00+00:00"
    )


def test_bad_schedules_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="expected 5 fields"):
        ScheduleOptions(cron="0 0 2 * * *")
    with pytest.raises(ValueError, match="give exactly one of cron and interval"):
        ScheduleOptions()
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        ScheduleOptions(cron="@daily", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="is not a day of the week"):
        ScheduleOptions(cron="0 0 * * 8")
    with pytest.raises(ValueError, match="shell: true needs command as one string"):
        ScheduleOptions(cron="@daily", job={"type": "command", "command": ["a"], "shell": True})
    assert ScheduleOptions(interval="5m", job="tick").job.type == "tick"


# ----------------------------------------------------------------------------- ticks


async def test_a_tick_fires_at_the_scheduled_time_with_a_deterministic_id(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T01:59:30+02:00")
    src = source(tmp_path, clock, cron="0 2 * * *", timezone="Europe/Berlin")
    await src.open(None)
    try:
        assert await src.read() == []  # 30 s early: nothing
        pending = asyncio.ensure_future(src.read())
        await clock.wait_for_sleeper()  # the read waits for the fire time
        clock.advance(29)
        assert await pending == []
        [tick] = await fire(src, clock, "2024-05-01T02:00:00+02:00")
    finally:
        await src.close()
    assert tick.value == {"scheduled": "2024-05-01T02:00:00+02:00"}
    assert tick.position == {"fire": "2024-05-01T00:00:00Z"}
    assert tick.identity == "2024-05-01T00:00:00Z"
    assert tick.timestamp_ms == int(at("2024-05-01T00:00:00+00:00").timestamp() * 1000)
    assert dict(tick.headers) == {"schedule.time": b"2024-05-01T00:00:00Z"}
    ids = testing.event_ids("sched", [tick])
    again = SourceRecord(value=None, position=None, identity="2024-05-01T00:00:00Z")
    assert testing.event_ids("sched", [again]) == ids


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("none", ["2024-05-04T02:00:00Z"]),
        ("latest", ["2024-05-03T02:00:00Z", "2024-05-04T02:00:00Z"]),
        (
            "all",
            [
                "2024-05-01T02:00:00Z",
                "2024-05-02T02:00:00Z",
                "2024-05-03T02:00:00Z",
                "2024-05-04T02:00:00Z",
            ],
        ),
    ],
)
async def test_fires_missed_while_down_follow_catch_up(
    tmp_path: Path, policy: str, expected: list[str]
) -> None:
    """Saved position: the fire of April 30. Back up on May 3 at 10:00: three missed."""
    clock = testing.ManualClock("2024-05-03T10:00:00+00:00")
    src = source(tmp_path, clock, cron="0 2 * * *", catch_up=policy)
    await src.open({"fire": "2024-04-30T02:00:00Z"})
    got: list[str] = []
    try:
        while True:
            records = await src.read()
            got += [r.position["fire"] for r in records if r.position is not None]
            if not records:
                break
        got += [r.position["fire"] for r in await fire(src, clock, "2024-05-04T02:00:00+00:00")]
    finally:
        await src.close()
    assert got == expected


async def test_a_restart_goes_on_after_the_saved_fire(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T00:00:30+00:00")
    src = source(tmp_path, clock, interval="1m")
    await src.open({"fire": "2024-05-01T00:00:00Z"})  # nothing missed yet
    try:
        assert await src.read() == []
        [tick] = await fire(src, clock, "2024-05-01T00:01:00+00:00")
    finally:
        await src.close()
    assert tick.position == {"fire": "2024-05-01T00:01:00Z"}


async def test_ticks_pass_the_conformance_suite(tmp_path: Path) -> None:
    def make() -> ScheduleSource:  # time jumps to each next fire: fires come at once
        return source(tmp_path, testing.ManualClock("2024-05-01T00:00:00+00:00", autojump=True),
                      cron="*/5 * * * *")  # fmt: skip

    def still() -> ScheduleSource:
        return source(tmp_path, testing.ManualClock("2024-05-01T00:00:00+00:00"), interval="1h")

    await testing.check_source_resumes(make, minimum=10)
    await testing.check_source_replays(make, minimum=10)
    await testing.check_source_cancellation(still)
    await testing.check_source_idle_read(still, drain=0)


# ----------------------------------------------------------------------------- http


@dataclass
class Server:
    """A local HTTP server whose answers the test sets; it can hold requests."""

    url: str
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    gates: dict[str, threading.Event] = field(default_factory=dict)

    def answer(self, status: int, body: Any, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers.append((status, headers, data))


@pytest.fixture
def server() -> Iterator[Server]:
    state: Server

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            for prefix, gate in state.gates.items():
                if self.path.startswith(prefix):
                    gate.wait(30)
            status, headers, body = state.answers.pop(0) if state.answers else (200, {}, b"{}")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Server(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        for gate in state.gates.values():
            gate.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


async def test_an_http_job_emits_the_items_of_the_response(tmp_path: Path, server: Server) -> None:
    server.answer(200, {"data": {"orders": [{"id": 1}, {"id": 2}]}})
    server.answer(200, {"data": {"orders": []}})
    clock = testing.ManualClock("2024-05-01T00:59:00+00:00")
    job = {
        "type": "http",
        "url": server.url + "/orders/{scheduled:%Y-%m-%d}",
        "params": {"hour": "{scheduled:%H}"},
        "items": "/data/orders",
        "key": "/id",
    }
    src = source(tmp_path, clock, cron="0 * * * *", job=job)
    await src.open(None)
    try:
        records = await fire(src, clock, "2024-05-01T01:00:00+00:00")
        empty = await fire(src, clock, "2024-05-01T02:00:00+00:00")
    finally:
        await src.close()
    assert [(r.value, r.key) for r in records] == [({"id": 1}, 1), ({"id": 2}, 2)]
    assert [r.identity for r in records] == [
        ["2024-05-01T01:00:00Z", 0],
        ["2024-05-01T01:00:00Z", 1],
    ]
    assert [r.position for r in records] == [None, {"fire": "2024-05-01T01:00:00Z"}]
    assert server.requests == ["/orders/2024-05-01?hour=01", "/orders/2024-05-01?hour=02"]
    # nothing to emit: a position-only record moves the position past the fire
    assert [(r.produce, r.position) for r in empty] == [(False, {"fire": "2024-05-01T02:00:00Z"})]


async def test_http_errors_retry_or_go_to_the_dead_letter_topic(
    tmp_path: Path, server: Server
) -> None:
    server.answer(503, b"busy", Retry_After="7")
    server.answer(200, [{"ok": True}])
    server.answer(404, b"no such report")
    server.answer(200, b"plain text")
    clock = testing.ManualClock("2024-05-01T00:00:30+00:00")
    src = source(tmp_path, clock, interval="1m", job={"type": "http", "url": server.url + "/r"})
    await src.open(None)
    try:
        clock.set("2024-05-01T00:01:00+00:00")
        with pytest.raises(RetriableError, match=r"GET .*/r answered 503") as error:
            while True:
                await src.read()
        assert error.value.retry_after == 7
        [ok] = await fire(src, clock, "2024-05-01T00:01:00+00:00")  # the same fire, again
        [missing] = await fire(src, clock, "2024-05-01T00:02:00+00:00")
        [text] = await fire(src, clock, "2024-05-01T00:03:00+00:00")
    finally:
        await src.close()
    assert ok.value == [{"ok": True}] and ok.position == {"fire": "2024-05-01T00:01:00Z"}
    assert missing.error is not None and missing.error.endswith("/r answered 404 Not Found")
    assert missing.value == b"no such report"
    assert text.value == b"plain text"


@pytest.mark.parametrize("concurrency", ["forbid", "allow"])
async def test_a_long_run_and_the_next_fire(
    tmp_path: Path, server: Server, concurrency: str
) -> None:
    server.gates["/slow"] = gate = threading.Event()
    clock = testing.ManualClock("2024-05-01T00:00:30+00:00")
    job = {"type": "http", "url": server.url + "/slow/{scheduled:%H%M}"}
    src = source(tmp_path, clock, interval="1m", concurrency=concurrency, job=job)
    await src.open(None)
    try:
        clock.set("2024-05-01T00:01:00+00:00")
        assert await src.read() == []  # the run started; its call hangs
        await testing.wait_until(lambda: len(server.requests) == 1, what="the first call")
        clock.set("2024-05-01T00:02:00+00:00")
        assert await src.read() == []
        if concurrency == "allow":
            await testing.wait_until(lambda: len(server.requests) == 2, what="a second call")
        else:
            assert server.requests == ["/slow/0001"]
        gate.set()
        records: list[SourceRecord] = []
        while len(records) < 2:
            records += await testing.read_at_least(src, 1)
    finally:
        await src.close()
    if concurrency == "allow":
        assert [r.position for r in records] == [
            {"fire": "2024-05-01T00:01:00Z"},
            {"fire": "2024-05-01T00:02:00Z"},
        ]
        assert all(r.produce for r in records)
    else:  # the second fire was skipped: only the position moves past it
        assert [(r.produce, r.position) for r in records] == [
            (True, {"fire": "2024-05-01T00:01:00Z"}),
            (False, {"fire": "2024-05-01T00:02:00Z"}),
        ]


# ----------------------------------------------------------------------------- sql


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE orders (id INTEGER, amount NUMERIC, placed TIMESTAMP)")
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?)",
                [(1, "9.50", "2024-04-30 10:00:00"), (2, "20", "2024-05-01 03:00:00")],
            )
        conn.close()
        return "sqlite:///shop.db"
    url = str(request.getfixturevalue("postgres_url"))
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER, amount NUMERIC, placed TIMESTAMP)"))
        conn.execute(
            sa.text(
                "INSERT INTO orders VALUES (1, 9.50, '2024-04-30 10:00:00'), "
                "(2, 20, '2024-05-01 03:00:00')"
            )
        )
    engine.dispose()
    return url


async def test_a_sql_job_emits_each_row(tmp_path: Path, db: str) -> None:
    clock = testing.ManualClock("2024-05-01T01:00:00+00:00")
    job = {
        "type": "sql",
        "url": db,
        "query": "SELECT id, amount, placed FROM orders WHERE placed < :scheduled ORDER BY id",
        "key": "id",
    }
    src = source(tmp_path, clock, cron="0 2 * * *", job=job)
    await src.open(None)
    try:
        first = await fire(src, clock, "2024-05-01T02:00:00+00:00")
        second = await fire(src, clock, "2024-05-02T02:00:00+00:00")
    finally:
        await src.close()
    assert [(r.key, r.value["id"]) for r in first] == [({"id": 1}, 1)]
    # a query's columns come as the driver returns them (SQLite has no DECIMAL nor
    # DATETIME type of its own), mapped to JSON as the sql source does
    if db.startswith("sqlite"):
        assert first[0].value == {"id": 1, "amount": 9.5, "placed": "2024-04-30 10:00:00"}
    else:
        assert first[0].value == {"id": 1, "amount": "9.50", "placed": "2024-04-30T10:00:00+00:00"}
    assert [r.value["id"] for r in second] == [1, 2]
    assert second[-1].position == {"fire": "2024-05-02T02:00:00Z"}


async def test_a_broken_query_stops_the_source_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "shop.db").touch()
    clock = testing.ManualClock("2024-05-01T01:00:00+00:00")
    job = {"type": "sql", "url": "sqlite:///shop.db", "query": "SELECT * FROM nowhere"}
    src = source(tmp_path, clock, interval="1h", job=job)
    await src.open(None)
    try:
        clock.set("2024-05-01T02:00:00+00:00")
        with pytest.raises(Exception, match="no such table: nowhere") as error:
            await testing.read_at_least(src, 1)
        assert type(error.value).__name__ == "FatalError"
    finally:
        await src.close()


# ----------------------------------------------------------------------------- command


async def test_a_command_job_reports_its_exit_status(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T01:59:00+02:00")
    script = 'echo "run for $BACKBONE_SCHEDULED"; echo oops >&2; exit 3'
    job = {"type": "command", "command": script, "shell": True}
    src = source(tmp_path, clock, cron="0 2 * * *", timezone="Europe/Berlin", job=job)
    await src.open(None)
    try:
        [status] = await fire(src, clock, "2024-05-01T02:00:00+02:00")
    finally:
        await src.close()
    value = status.value
    assert value["exit_code"] == 3 and value["timed_out"] is False
    assert value["stdout"] == "run for 2024-05-01T02:00:00+02:00\n"
    assert value["stderr"] == "oops\n"
    assert value["command"] == ["/bin/sh", "-c", script]
    assert status.position == {"fire": "2024-05-01T00:00:00Z"}


async def test_a_command_job_emits_its_lines_and_reports_a_failure(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T00:00:00+00:00")
    code = "import sys; print('{\"n\": 1}'); print('nope'); print('{\"n\": 2}'); sys.exit(2)"
    job = {"type": "command", "command": [sys.executable, "-c", code], "output": "jsonl"}
    src = source(tmp_path, clock, interval="1h", job=job)
    await src.open(None)
    try:
        records = await fire(src, clock, "2024-05-01T01:00:00+00:00")
    finally:
        await src.close()
    assert [r.value for r in records if r.error is None] == [{"n": 1}, {"n": 2}]
    errors = [r.error for r in records if r.error is not None]
    assert errors[0] == "stdout line 2 is not JSON: Expecting value: line 1 column 1 (char 0)"
    assert errors[1].endswith("exited with code 2")
    assert records[-1].position == {"fire": "2024-05-01T01:00:00Z"}


async def test_a_command_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T00:00:00+00:00")
    job = {
        "type": "command",
        "command": "echo started; exec sleep 30",
        "shell": True,
        "timeout": "500ms",
    }
    src = source(tmp_path, clock, interval="1h", job=job)
    await src.open(None)
    try:
        [status] = await fire(src, clock, "2024-05-01T01:00:00+00:00")
    finally:
        await src.close()
    assert status.value["timed_out"] is True
    assert status.value["exit_code"] == -15  # SIGTERM
    assert status.value["stdout"] == "started\n"


async def test_bad_command_output_is_reported_as_an_error_record(tmp_path: Path) -> None:
    clock = testing.ManualClock("2024-05-01T00:00:00+00:00")
    job = {"type": "command", "command": "echo '{\"a\": 1}'; echo '{broken'", "shell": True,
           "output": "jsonl"}  # fmt: skip

    def make() -> ScheduleSource:
        return source(tmp_path, clock, interval="1h", job=job)

    async def inject() -> None:
        clock.advance(3600)

    [bad] = await testing.check_source_bad_input(make, inject)
    assert bad.value == b"{broken"
