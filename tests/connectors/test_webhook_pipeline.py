"""The webhook source inside the runtime: 2xx only once the broker stored the record.

A real broker process (``python -m backbone.broker``) that the test stops and
restarts, the gateway in-process on ``broker.bootstrap``, a real HTTP client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from backbone.sdk import hmac_signature
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running, wait_until
from tests.servers import broker_process, free_port

pytestmark = pytest.mark.timeout(120)


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def config(tmp_path: Path, broker: str, http_port: int, **extra: str) -> Path:
    options = "".join(f", {key}: {value}" for key, value in extra.items())
    path = tmp_path / "hooks.yaml"
    path.write_text(
        broker
        + FAST_RUNTIME
        + f'http: {{listen: "127.0.0.1:{http_port}", max_body: 2KiB}}\n'
        + "topics: {orders: {partitions: 1}}\n"
        + "sources:\n"
        + "  shop: {type: webhook, topic: orders, path: /hooks/shop, key: /id, ack_timeout: 2s,"
        + ' auth: {type: hmac, secret: "${HOOK_SECRET}", header: X-Signature}'
        + f"{options}}}\n"
    )
    return path


def signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Signature": hmac_signature(b"s3cret", body)}


async def test_answers_only_after_the_broker_stored_and_503_while_it_is_down(
    tmp_path: Path,
) -> None:
    port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    data, log = tmp_path / "data", tmp_path / "broker.log"
    path = config(tmp_path, f'broker: {{bootstrap: ["{bootstrap}"]}}\n', http_port)
    answered: dict[int, dict[str, int]] = {}
    env = {"HOOK_SECRET": "s3cret"}
    broker = broker_process(data, port, log)
    broker.__enter__()
    try:
        async with (
            running(path, env=env) as runner,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client,
        ):
            await wait_until(lambda: runner.status["shop"].state.value == "RUNNING")

            async def post(n: int) -> httpx.Response:
                body = json.dumps({"id": n, "total": n * 10}).encode()
                return await client.post("/hooks/shop", content=body, headers=signed(body))

            for n in range(3):
                response = await post(n)
                assert response.status_code == 200, response.text
                answered[n] = response.json()
            assert [answered[n]["offset"] for n in range(3)] == [0, 1, 2]

            # every refusal stores nothing: the topic stays at offset 3
            bad = json.dumps({"id": 9}).encode()
            refusals = [
                await client.post("/hooks/shop", content=bad, headers={"X-Signature": "00"}),
                await client.post("/hooks/shop", content=b"{", headers=signed(b"{")),
                await client.post("/hooks/shop", content=b"{}", headers=signed(b"{}")),
                await client.post(
                    "/hooks/shop", content=b"[" + b"1," * 2000 + b"1]", headers=signed(b"[]")
                ),
                await client.post(
                    "/hooks/shop", content=bad, headers={**signed(bad), "Content-Type": "text/csv"}
                ),
            ]
            assert [r.status_code for r in refusals] == [401, 400, 400, 413, 415]
            assert all(set(r.json()) == {"error"} for r in refusals)
            assert "s3cret" not in " ".join(r.text for r in refusals)
            assert await end_offset(bootstrap, "orders") == 3

            broker.__exit__(None, None, None)  # SIGKILL: the broker is gone
            response = await asyncio.wait_for(post(100), 30)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"].startswith("not stored: ")

            broker = broker_process(data, port, log)
            broker.__enter__()

            async def stored() -> bool:
                response = await post(101)
                if response.status_code == 200:
                    answered[101] = response.json()
                    return True
                assert response.status_code == 503, response.text
                return False

            await wait_until(stored, within=60, what="a 2xx once the broker is back")
        records = await consume(bootstrap, "orders", count=await end_offset(bootstrap, "orders"))
        by_offset = {r.offset: json.loads(r.value) for r in records}
        for n, where in answered.items():  # every 2xx is in the topic where it said
            assert where["topic"] == "orders" and where["partition"] == 0
            assert by_offset[where["offset"]]["id"] == n
        assert records[0].key == b"0"
        headers = dict(records[0].headers)
        assert headers["ce_source"] == b"backbone://shop"
        assert headers["content-type"] == b"application/json"
    finally:
        broker.__exit__(None, None, None)


async def test_duplicates_are_answered_from_the_window_across_a_restart(tmp_path: Path) -> None:
    http_port = free_port()
    broker = broker_yaml("embedded", data_dir=tmp_path / "data", port=free_port())
    path = config(tmp_path, broker, http_port, idempotency_header="Idempotency-Key")
    env = {"HOOK_SECRET": "s3cret"}
    body = json.dumps({"id": 7}).encode()
    headers = {**signed(body), "Idempotency-Key": "order-7-created"}
    answers = []
    for _ in range(2):  # the gateway runs twice on the same state folder
        async with (
            running(path, env=env) as runner,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client,
        ):
            await wait_until(lambda: runner.status["shop"].state.value == "RUNNING")
            for _ in range(2):
                response = await client.post("/hooks/shop", content=body, headers=headers)
                assert response.status_code == 200
                answers.append((response.json(), response.headers.get("idempotent-replayed")))
            other = await client.post(
                "/hooks/shop", content=body, headers={**headers, "Idempotency-Key": "x"}
            )
            assert other.status_code == 200
            assert runner.bootstrap is not None
            bootstrap = runner.bootstrap
            count = await end_offset(bootstrap, "orders")
    first = {"topic": "orders", "partition": 0, "offset": 0}
    assert answers == [(first, None), (first, "true"), (first, "true"), (first, "true")]
    assert count == 2  # order-7-created once, and "x" once (the second run deduped it too)
