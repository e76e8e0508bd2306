"""The gateway group's errors that no retry mends end the gateway, with a clear message.

In-process: a real Backbone broker (``backbone.broker.Broker``) on a free port, a real
aiokafka consumer, and the runner joining its gateway group. What a retry mends (the
broker away, the coordinator moving) is retried instead: see ``test_cluster.py``
(a broker restart under two gateways).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from backbone.broker import Broker, BrokerConfig
from backbone.cluster import group_name
from backbone.config import load_config
from backbone.errors import BackboneError
from backbone.registry import Registry
from backbone.runner import Runner
from backbone.testing import wait_until

pytestmark = pytest.mark.timeout(90)


@asynccontextmanager
async def _broker(tmp_path: Path, **options: Any) -> AsyncIterator[str]:
    broker = Broker(BrokerConfig(data_dir=tmp_path / "broker", port=0, **options))
    await broker.__aenter__()
    try:
        yield str(broker.bootstrap)
    finally:
        await broker.__aexit__(None, None, None)


async def _ends(tmp_path: Path, bootstrap: str, gateway: str, session: str) -> BackboneError:
    """Run a one-source gateway; it must start, then end with a BackboneError (returned)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f'broker: {{bootstrap: ["{bootstrap}"]}}\n'
        f"gateway: {{id: {gateway}}}\n"
        f"runtime: {{session_timeout: {session}, heartbeat_interval: 200ms}}\n"
        f"sources:\n  gen-{gateway}: {{type: generator, topic: t.{gateway}, rate: 10}}\n"
    )
    registry = Registry.from_entry_points()
    runner = Runner(load_config(path, registry), registry)
    with pytest.raises(BackboneError) as caught:
        await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    assert runner.started.is_set()  # it ran, then ended: no gateway idling without sources
    assert runner.status[f"gen-{gateway}"].state.value == "UNASSIGNED"  # it never ran
    return caught.value


async def test_a_session_timeout_the_broker_refuses_ends_the_gateway(tmp_path: Path) -> None:
    async with _broker(tmp_path, group_min_session_timeout_ms=10_000) as bootstrap:
        error = await _ends(tmp_path, bootstrap, f"short-{uuid.uuid4().hex[:8]}", "4s")
    assert str(error) == (
        "the gateway group loop ended: BackboneError: the broker refuses "
        "runtime.session_timeout 4s: it must lie within the broker's "
        "group.min.session.timeout.ms and group.max.session.timeout.ms"
    )


async def test_a_group_used_by_other_clients_ends_the_gateway(tmp_path: Path) -> None:
    gateway = f"taken-{uuid.uuid4().hex[:8]}"
    async with _broker(tmp_path) as bootstrap:
        # an ordinary consumer group that happens to have the gateway group's name
        consumer = AIOKafkaConsumer(
            f"other.{gateway}", bootstrap_servers=bootstrap, group_id=group_name(gateway)
        )
        await consumer.start()
        try:
            await wait_until(consumer.assignment, within=30, what="the consumer's assignment")
            error = await _ends(tmp_path, bootstrap, gateway, "6s")
        finally:
            await consumer.stop()
    assert str(error) == (
        "the gateway group loop ended: BackboneError: the group "
        f"_backbone.gateway.{gateway} is used by other clients with another protocol: "
        "give this gateway cluster another gateway.id"
    )
