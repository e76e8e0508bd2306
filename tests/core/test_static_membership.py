"""A SIGKILLed and restarted ``backbone run`` gets its sink's partitions back at once.

Sinks consume with static membership (``group.instance.id`` = this process's slot id +
the sink name, :mod:`backbone.instance`), so the restarted process replaces its dead
member instead of waiting for that member's session to expire. The session timeout here
is 30 s; the restarted sink must print records produced after the restart within a
bounded wait far below it (no speed is asserted, only "not held up by the session").
Tansu 0.6 accepts the instance ids but does not hand a restarted static member its
partitions before the old session expires (tests/core/test_crash.py runs sinks there).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from backbone.testing import Gateway, broker_yaml, wait_until
from tests.servers import free_port, wait_for_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SESSION_S = 30
WELL_BELOW_SESSION_S = 10

RUNTIME = f"runtime: {{session_timeout: {SESSION_S}s, heartbeat_interval: 1s, grace_period: 5s}}\n"


@pytest.fixture(params=["broker process", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(``broker:`` section, bootstrap): a broker process that outlives the gateway (the
    dead member stays in the live group), or the gateway's embedded broker (the member
    comes back from ``__consumer_offsets`` with the broker)."""
    port = free_port()
    if request.param == "embedded":
        yield broker_yaml("embedded", data_dir=tmp_path / "broker", port=port), f"127.0.0.1:{port}"
        return
    log = (tmp_path / "broker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backbone.broker", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "broker")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield f'broker: {{bootstrap: ["127.0.0.1:{port}"]}}\n', f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


async def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value.encode(), key=b"k%d" % (i % 6))
    finally:
        await producer.stop()


async def test_a_restarted_gateway_resumes_its_sink_at_once(
    broker: tuple[str, str], tmp_path: Path
) -> None:
    section, bootstrap = broker
    uid = uuid.uuid4().hex[:8]
    topic, sink = f"static.{uid}", f"out-{uid}"
    config = tmp_path / "static.yaml"
    config.write_text(
        section
        + RUNTIME
        + f"topics:\n  {topic}: {{partitions: 3}}\n"
        + f"sinks:\n  {sink}: {{type: stdout, topics: [{topic}]}}\n"
    )
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gateway.log")

    def printed(prefix: str) -> set[str]:
        return {
            str(line["value"])
            for line in gateway.lines()
            if line.get("topic") == topic and str(line["value"]).startswith(prefix)
        }

    before = [f"before-{i}" for i in range(30)]
    after = [f"after-{i}" for i in range(30)]
    try:
        gateway.start()
        await wait_until(lambda: gateway.starts() == 1, within=60, what="the gateway running")
        await produce(bootstrap, topic, before)
        await wait_until(lambda: printed("before") == set(before), within=60, what="the sink")
        gateway.kill()
        gateway.start()
        await wait_until(lambda: gateway.starts() == 2, within=60, what="the restart")
        await produce(bootstrap, topic, after)
        # a sink waiting for its dead member's session would print nothing for ~30 s
        await wait_until(
            lambda: printed("after") == set(after),
            within=WELL_BELOW_SESSION_S,
            what="records produced after the restart in the sink",
        )
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    log = (tmp_path / "gateway.log").read_text()
    assert "FencedInstanceId" not in log
