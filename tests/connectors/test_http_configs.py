"""configs/webhook-to-http.yaml runs as the README shows: the curl with openssl's signature."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest

from backbone.testing import consume, running, wait_until
from tests.receiver import receiver
from tests.servers import free_port

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def readme_delivery() -> str:
    """The shell lines of the README that deliver an order (after starting the gateway)."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "openssl dgst" in b)
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("body="))
    return "\n".join(line for line in lines[start:] if not line.startswith("#"))


async def test_the_readme_delivery_reaches_the_endpoint(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("openssl") is None:
        pytest.skip("curl and openssl are needed to run the README's commands")
    http_port, broker_port = free_port(), free_port()
    text = (ROOT / "configs" / "webhook-to-http.yaml").read_text()
    assert "listen: 127.0.0.1:8080" in text and "listen: 127.0.0.1:9092" in text
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{broker_port}")
    text = text.replace("../data", str(tmp_path / "data"))
    config = tmp_path / "webhook-to-http.yaml"
    config.write_text(text)
    script = readme_delivery().replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    async with receiver() as server:
        env = {"SHOP_WEBHOOK_SECRET": "s3cret", "FULFILMENT_URL": f"{server.url}/orders"}
        async with running(config, env=env) as runner:
            await wait_until(lambda: runner.status["shop-hooks"].state.value == "RUNNING")
            answers = []
            for _ in range(2):  # delivered twice: stored once
                proc = await asyncio.create_subprocess_exec(
                    "bash", "-c", script, stdout=asyncio.subprocess.PIPE
                )
                out, _ = await proc.communicate()
                assert proc.returncode == 0
                answers.append(json.loads(out))
            await wait_until(lambda: server.requests, what="the PUT to the endpoint")
    assert answers[0] == answers[1]
    assert answers[0]["topic"] == "shop.orders" and answers[0]["offset"] == 0
    [put] = server.requests
    assert (put.method, put.path) == ("PUT", "/orders/o-1001")
    assert put.json() == {"id": "o-1001", "total": 42.5}
    assert put.headers["authorization"] == "Bearer dev-token"
    assert put.headers["content-type"] == "application/json"
    assert put.headers["idempotency-key"] == put.headers["ce-id"]
    assert put.headers["ce-source"] == "backbone://shop-hooks"


async def test_the_shipped_poll_config_follows_pages_into_the_topic(tmp_path: Path) -> None:
    broker_port = free_port()
    text = (ROOT / "configs" / "http-poll.yaml").read_text()
    assert "listen: 127.0.0.1:9092" in text
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{broker_port}")
    text = text.replace("../data", str(tmp_path / "data"))
    config = tmp_path / "http-poll.yaml"
    config.write_text(text)
    pages = {
        "1": {
            "data": [{"id": 1, "updated_at": "2024-05-01T10:00:00Z"}],
            "links": {"next": "?page=2"},
        },
        "2": {"data": [{"id": 2, "updated_at": "2024-05-01T11:00:00Z"}], "links": {}},
    }
    async with receiver() as server:
        server.on(
            "/tickets",
            lambda seen: (200, {}, json.dumps(pages[seen.query.get("page", "1")]).encode()),
        )
        env = {"TICKETS_URL": f"{server.url}/tickets", "TICKETS_TOKEN": "t0k"}
        async with running(config, env=env) as runner:
            assert runner.bootstrap is not None
            records = await consume(runner.bootstrap, "support.tickets", count=2)
    assert sorted(json.loads(r.value)["id"] for r in records) == [1, 2]
    assert sorted(r.key for r in records) == [b"1", b"2"]
    assert [r.query for r in server.requests[:2]] == [{}, {"page": "2"}]
    assert server.requests[0].headers["authorization"] == "Bearer t0k"
