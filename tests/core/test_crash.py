"""Crash test: ``backbone run`` is SIGKILLed mid-stream and restarted.

Every generated event must reach the sink at least once, and the saved source
positions must never skip (they only move forward, ending at the last event).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest

from backbone.positions import POSITIONS_TOPIC, history
from backbone.testing import FAST_RUNTIME, Gateway, broker_yaml, consume, wait_until
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

COUNT = 2000


@pytest.fixture(params=["tansu", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """The ``broker:`` section and (for the embedded broker) its fixed address."""
    if request.param == "tansu":
        tansu = request.getfixturevalue("tansu")
        return broker_yaml("tansu", tansu=tansu), tansu.bootstrap
    port = free_port()
    return broker_yaml("embedded", data_dir=tmp_path / "broker", port=port), f"127.0.0.1:{port}"


async def test_sigkill_mid_stream_loses_nothing(broker: tuple[str, str], tmp_path: Path) -> None:
    section, bootstrap = broker
    topic, name = f"crash.{uuid.uuid4().hex[:8]}", f"gen-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "crash.yaml"
    config.write_text(
        section
        + FAST_RUNTIME
        + f"""
topics:
  {topic}: {{partitions: 3}}
sources:
  {name}: {{type: generator, topic: {topic}, rate: 400, count: {COUNT}, keys: 10}}
sinks:
  print-{name}: {{type: stdout, topics: [{topic}]}}
"""
    )
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gateway.log")

    def seqs() -> set[int]:
        return {line["value"]["seq"] for line in gateway.lines() if line.get("topic") == topic}

    try:
        gateway.start()
        await wait_until(lambda: len(seqs()) >= 300, within=60, what="300 events in the sink")
        gateway.kill()
        killed_at = len(seqs())
        assert killed_at < COUNT, "the stream finished before the kill"
        gateway.start()
        await wait_until(lambda: gateway.starts() == 2, within=60, what="the restart")
        await wait_until(lambda: len(seqs()) == COUNT, within=60, what="every event in the sink")
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    assert seqs() == set(range(1, COUNT + 1))
    log = (tmp_path / "gateway.log").read_text()
    starts = [
        m.group(1) for m in re.finditer(rf"source {re.escape(name)} started at position (\S+)", log)
    ]
    assert len(starts) == 2 and starts[0] == "None"
    resumed = int(starts[1])
    assert 0 < resumed < COUNT
    if bootstrap is not None and "embedded" not in section:
        await _check_topics(bootstrap, topic, name, resumed)
    else:
        async with _embedded(config) as address:
            await _check_topics(address, topic, name, resumed)


async def _check_topics(bootstrap: str, topic: str, name: str, resumed: int) -> None:
    records = await consume(bootstrap, topic, count=COUNT)
    assert {json.loads(r.value)["seq"] for r in records} == set(range(1, COUNT + 1))
    saved = await consume(bootstrap, POSITIONS_TOPIC, count=1)
    mine = history(saved, name)  # the saves that counted (claims and fenced saves folded)
    assert mine == sorted(mine) and mine[-1] == COUNT
    assert resumed in mine  # the restart resumed from a position that had been saved


class _embedded:
    """Reopen the embedded broker's data folder to inspect what the gateway left."""

    def __init__(self, config: Path) -> None:
        self.config = config

    async def __aenter__(self) -> str:
        from backbone.broker import Broker, BrokerConfig

        data = self.config.parent / "broker"
        self.broker = Broker(BrokerConfig(data_dir=data, port=0))
        await self.broker.__aenter__()
        await asyncio.sleep(0)
        return str(self.broker.bootstrap)

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.__aexit__(*exc)
