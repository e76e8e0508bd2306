"""Read whole topics after a run: every record up to the end offsets, from a broker or
from a stopped gateway's data folder (the embedded broker started on it for the read)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from backbone.broker import Broker, BrokerConfig

Records = list[ConsumerRecord[bytes, bytes]]


async def read_topics(
    bootstrap: str, topics: list[str], within: float = 60.0
) -> dict[str, Records]:
    """Every record of each of ``topics`` (a missing topic reads as empty)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        known = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in topics if t in known])
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, Records] = {t: [] for t in topics}
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        async with asyncio.timeout(within):
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                    out[tp.topic] += batch
        return out
    finally:
        await consumer.stop()


async def read_data_dir(data_dir: Path, topics: list[str]) -> dict[str, Records]:
    """:func:`read_topics` with the embedded broker started on ``data_dir``."""
    async with Broker(BrokerConfig(data_dir=data_dir, port=0)) as broker:
        return await read_topics(broker.bootstrap, topics)


def values(records: Records) -> list[Any]:
    """The records' values decoded as JSON."""
    return [json.loads(r.value) if r.value is not None else None for r in records]


def headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}
