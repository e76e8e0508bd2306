"""Transactions are not offered: a transactional producer fails at once with an error
that says so, instead of retrying FindCoordinator forever (aiokafka's ``start()`` used to
hang on COORDINATOR_NOT_AVAILABLE)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from backbone.broker import Broker

pytestmark = pytest.mark.timeout(60)


async def test_aiokafka_transactional_producer_fails_at_once(broker: Broker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-app")
    try:
        # well below aiokafka's 40 s request timeout: a retried error would never end
        async with asyncio.timeout(15):
            with pytest.raises(KafkaError, match=r"^KafkaError: UnsupportedVersionError\(\)$"):
                await producer.start()
    finally:
        await producer.stop()
    # an idempotent producer (what the gateway uses) is unaffected
    idempotent = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
    await idempotent.start()
    try:
        sent = await idempotent.send_and_wait("t", b"v")
        assert sent.offset == 0
    finally:
        await idempotent.stop()
