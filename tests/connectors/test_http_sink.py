"""The http sink against a real local HTTP receiver (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backbone import testing
from backbone.connectors.http import HttpSink, HttpSinkOptions
from backbone.sdk import (
    DataError,
    RetriableError,
    SinkRecord,
    standard_webhook_key,
    verify_standard_webhook,
)
from backbone.testing import sink_record
from tests.receiver import Receiver, Seen, receiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server() -> AsyncIterator[Receiver]:
    async with receiver() as running:
        yield running


def make_sink(tmp_path: Path, **options: Any) -> HttpSink:
    return HttpSink(HttpSinkOptions.model_validate(options), testing.context(tmp_path, "out"))


async def test_conformance(server: Receiver, tmp_path: Path) -> None:
    records = [sink_record({"n": n}, n) for n in range(5)]
    bad = SinkRecord("t", 0, 9, None, b"not json")

    async def read_back() -> list[Any]:
        return [item for body in server.bodies("/in") for item in body]

    async def breaks() -> None:
        server.on("/in", lambda seen: (503, {"Retry-After": "7"}, b"maintenance"))

    await testing.check_sink(
        lambda: make_sink(tmp_path, url=f"{server.url}/in", batch={"size": 2}),
        records=records,
        read_back=read_back,
        expected=[{"n": n} for n in range(5)],
        good_then_bad=[sink_record({"n": 5}, 5), bad],
        breaks=breaks,
    )
    assert [len(body) for body in server.bodies("/in")[:3]] == [2, 2, 1]


async def test_one_request_per_record_with_its_url_and_headers(
    server: Receiver, tmp_path: Path
) -> None:
    sink = make_sink(
        tmp_path,
        url=f"{server.url}/orders/{{value.id}}?src={{topic}}",
        method="PUT",
        headers={"Authorization": "Bearer t0k3n"},
    )
    record = SinkRecord(
        "shop.orders",
        2,
        41,
        b'"k1"',
        b'{"id": "a/7", "total": 3}',
        headers=[
            ("ce_id", b"5f0e1c2a-0000-5000-8000-000000000001"),
            ("ce_source", b"backbone://orders-db"),
            ("ce_type", b"backbone.sql"),
            ("ce_specversion", b"1.0"),
            ("content-type", b"application/json"),
        ],
    )
    tombstone = SinkRecord("shop.orders", 2, 42, b'"k1"', None)
    await sink.open()
    try:
        with pytest.raises(DataError, match=r"record shop.orders/2@42 has no value.id for the url"):
            await sink.write([record, tombstone])
        assert server.requests == []  # nothing of the batch was sent
        await sink.write([record])
    finally:
        await sink.close()
    [seen] = server.requests
    assert (seen.method, seen.path, seen.query) == ("PUT", "/orders/a/7", {"src": "shop.orders"})
    assert seen.body == b'{"id": "a/7", "total": 3}'
    assert seen.headers["authorization"] == "Bearer t0k3n"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["idempotency-key"] == "5f0e1c2a-0000-5000-8000-000000000001"
    assert seen.headers["ce-id"] == "5f0e1c2a-0000-5000-8000-000000000001"
    assert seen.headers["ce-source"] == "backbone://orders-db"
    assert seen.headers["ce-type"] == "backbone.sql"
    assert "t0k3n" not in repr(sink.options)


async def test_retriable_statuses_carry_retry_after(server: Receiver, tmp_path: Path) -> None:
    answers = iter(
        [
            (429, {"Retry-After": "3"}, b"slow down"),
            (503, {"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"}, b""),
            (500, {}, b"oops"),
            (408, {}, b""),
        ]
    )
    server.on("/in", lambda seen: next(answers))
    sink = make_sink(tmp_path, url=f"{server.url}/in")
    await sink.open()
    try:
        errors = []
        for _ in range(4):
            with pytest.raises(RetriableError) as caught:
                await sink.write([sink_record({"n": 1}, 1)])
            errors.append(caught.value)
    finally:
        await sink.close()
    assert str(errors[0]) == f"POST {server.url}/in answered 429: slow down"
    assert errors[0].retry_after == 3.0
    assert errors[1].retry_after is not None
    assert abs(errors[1].retry_after - (2139722880 - time.time())) < 60
    assert [e.retry_after for e in errors[2:]] == [None, None]


async def test_a_connection_error_or_timeout_is_retriable(server: Receiver, tmp_path: Path) -> None:
    server.delay = 2.0
    sink = make_sink(tmp_path, url=f"{server.url}/in", timeout="200ms")
    await sink.open()
    try:
        with pytest.raises(RetriableError, match=r"POST .*/in timed out \(ReadTimeout\)"):
            await sink.write([sink_record({"n": 1}, 1)])
    finally:
        await sink.close()
    sink = make_sink(tmp_path, url="http://127.0.0.1:1/in")
    await sink.open()
    try:
        with pytest.raises(
            RetriableError, match=r"POST http://127.0.0.1:1/in failed: ConnectError"
        ):
            await sink.write([sink_record({"n": 1}, 1)])
    finally:
        await sink.close()


async def test_other_4xx_are_data_errors_with_status_and_body(
    server: Receiver, tmp_path: Path
) -> None:
    long = b"x" * 3000
    server.on("/in", lambda seen: (422, {}, b'{"error": "bad total"}' + long))
    sink = make_sink(tmp_path, url=f"{server.url}/in", retry_on=[429])
    await sink.open()
    try:
        with pytest.raises(DataError) as caught:
            await sink.write([sink_record({"n": 1}, 1)])
        server.on("/in", lambda seen: (500, {}, b"down"))
        with pytest.raises(DataError, match="answered 500: down"):  # 5xx not in retry_on
            await sink.write([sink_record({"n": 2}, 2)])
    finally:
        await sink.close()
    headers = dict(caught.value.headers)
    assert headers["backbone.error.http.status"] == b"422"
    assert headers["backbone.error.http.body"] == (b'{"error": "bad total"}' + long)[:1024]


async def test_concurrency_keeps_per_key_order(server: Receiver, tmp_path: Path) -> None:
    rng = random.Random(7)
    in_flight = peak = 0

    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b"{}"

    async def slow_asgi(scope: Any, receive: Any, send: Any) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(rng.random() * 0.01)
        in_flight -= 1
        await original(scope, receive, send)

    original = server._asgi
    server.app.remove("receiver")
    server.app.add_mount("/", slow_asgi, owner="receiver")
    server.on("/in", answer)
    records = [sink_record({"k": n % 5, "n": n}, n, key=f"key-{n % 5}") for n in range(100)]
    sink = make_sink(tmp_path, url=f"{server.url}/in", concurrency=4)
    await sink.open()
    try:
        await sink.write(records)
    finally:
        await sink.close()
    bodies = server.bodies("/in")
    assert sorted(b["n"] for b in bodies) == list(range(100))
    for key in range(5):
        arrived = [b["n"] for b in bodies if b["k"] == key]
        assert arrived == sorted(arrived), f"key-{key} out of order: {arrived}"
    assert peak > 1


async def test_a_failed_request_does_not_resend_the_delivered_ones(
    server: Receiver, tmp_path: Path
) -> None:
    server.on("/in", lambda seen: (400, {}, b"no") if seen.json()["n"] == 3 else (200, {}, b""))
    records = [sink_record({"n": n}, n, key=f"k{n}") for n in range(8)]
    sink = make_sink(tmp_path, url=f"{server.url}/in", concurrency=4)
    await sink.open()
    try:
        with pytest.raises(DataError, match="answered 400: no"):
            await sink.write(records)
        for record in records:  # what the runner does after a DataError
            try:
                await sink.write([record])
            except DataError:
                assert record.offset == 3
    finally:
        await sink.close()
    delivered = [b["n"] for b in server.bodies("/in")]
    assert sorted(n for n in delivered if n != 3) == [0, 1, 2, 4, 5, 6, 7]  # each once
    assert delivered.count(3) == 2


async def test_requests_are_signed_as_standard_webhooks(server: Receiver, tmp_path: Path) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sink = make_sink(tmp_path, url=f"{server.url}/in", sign={"secret": secret}, batch={"size": 10})
    await sink.open()
    try:
        await sink.write([sink_record({"n": n}, n) for n in range(3)])
        await sink.write([sink_record({"n": n}, n) for n in range(3)])
    finally:
        await sink.close()
    first, second = server.requests
    verify_standard_webhook(
        standard_webhook_key(secret),
        first.body,
        msg_id=first.headers["webhook-id"],
        timestamp=first.headers["webhook-timestamp"],
        signatures=first.headers["webhook-signature"],
        now=time.time(),
    )
    assert json.loads(first.body) == [{"n": 0}, {"n": 1}, {"n": 2}]
    # the same batch again: the same idempotency key
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["webhook-id"] == first.headers["idempotency-key"]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="expected an http:// or https:// URL"):
        HttpSinkOptions(url="ftp://x")
    with pytest.raises(ValueError, match=r"unknown field \{id\}"):
        HttpSinkOptions(url="http://x/{id}")
    with pytest.raises(ValueError, match="a Standard Webhooks secret is 'whsec_'"):
        HttpSinkOptions.model_validate({"url": "http://x", "sign": {"secret": "whsec_!!"}})


# -- through the runtime ------------------------------------------------------


async def test_through_the_runtime_4xx_go_to_the_dead_letter_topic(
    server: Receiver, tmp_path: Path
) -> None:
    server.on(
        "/in",
        lambda seen: (
            (409, {}, b"duplicate order") if seen.json()["n"] in (1, 3) else (200, {}, b"")
        ),
    )

    async def read_back() -> list[Any]:
        return sorted(b["n"] for b in server.bodies("/in") if b["n"] not in (1, 3))

    dead = await testing.check_sink_dead_letters(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "data"),
        tmp_path=tmp_path,
        sink=f'{{type: http, url: "{server.url}/in", concurrency: 2}}',
        values=[{"n": n} for n in range(5)],
        bad=[1, 3],
        read_back=read_back,
        expected=[0, 2, 4],
    )
    for record in dead:
        headers = dict(record.headers)
        assert headers["backbone.error.http.status"] == b"409"
        assert headers["backbone.error.http.body"] == b"duplicate order"
        assert headers["backbone.error.message"].endswith(b"answered 409: duplicate order")


async def test_through_the_runtime_retry_after_is_honoured_and_batches_fill(
    server: Receiver, tmp_path: Path
) -> None:
    calls: list[float] = []

    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        calls.append(seen.at)
        return (429, {"Retry-After": "1"}, b"") if len(calls) == 1 else (200, {}, b"")

    server.on("/in", answer)
    config = tmp_path / "sink.yaml"
    values = [{"n": n} for n in range(30)]
    config.write_text(
        testing.broker_yaml("embedded", data_dir=tmp_path / "data")
        + testing.FAST_RUNTIME
        + f'sources:\n  src: {{type: "{testing.VALUES_SOURCE}", topic: t, '
        + f"values: {json.dumps(values)}}}\n"
        + f'sinks:\n  out: {{type: http, topics: [t], url: "{server.url}/in",'
        + " batch: {size: 30, max_wait: 3s}, retry: {initial_backoff: 10ms}}\n"
    )
    async with testing.running(config):
        await testing.wait_until(
            lambda: sum(len(b) for b in server.bodies("/in")[1:]) >= 30, what="30 records"
        )
    assert calls[1] - calls[0] >= 1.0  # waited for Retry-After, not the 10 ms backoff
    assert [len(body) for body in server.bodies("/in")] == [30, 30]  # one full batch, twice
    assert server.bodies("/in")[1] == values


async def test_through_the_runtime_an_endpoint_that_stays_down_stops_the_sink_losing_nothing(
    server: Receiver, tmp_path: Path
) -> None:
    """500 after the last attempt: FAILED, nothing dead-lettered (not even the records the
    endpoint took before it broke), nothing committed; after a restart every record arrives."""
    taken: set[int] = set()
    refused: list[int] = []
    down = True

    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        n = seen.json()["n"]
        if down and n >= 2:
            refused.append(n)
            return (500, {}, b"database unavailable")
        taken.add(n)
        return (200, {}, b"")

    server.on("/in", answer)

    async def breaks() -> None:
        assert down

    async def repairs() -> None:
        nonlocal down
        down = False

    async def read_back() -> list[int]:
        return sorted(taken)

    error = await testing.check_sink_stops_when_retries_run_out(
        broker=testing.broker_yaml("embedded", data_dir=tmp_path / "data"),
        tmp_path=tmp_path,
        sink=f'{{type: http, url: "{server.url}/in"}}',
        values=[{"n": n} for n in range(5)],
        breaks=breaks,
        repairs=repairs,
        read_back=read_back,
        expected=[0, 1, 2, 3, 4],
    )
    assert error == (
        f"FatalError: POST {server.url}/in answered 500: database unavailable (still failing "
        "after 3 attempts); stopped without committing: the records are delivered again after "
        "a restart"
    )
    assert refused == [2, 2, 2]  # the lane stops at its first failure: 3 attempts of record 2
