"""Saved source positions: claims fence old owners, compaction keeps them, damage is skipped.

The fold (:func:`backbone.positions.fold`) on histories as the gateway cluster
writes them: a save of an owner that was claimed over counts for nobody, a save
that slipped in before a claim still counts, and every suffix of a history (what
a compacted topic may keep) folds to the same position and epoch. Real Tansu
broker, real aiokafka for the rest: a fenced save that lands last is followed by
the owner's position again; damaged records in ``_backbone.positions`` are
skipped, not fatal, and the runner resumes a generator from the last readable
position.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from backbone.positions import POSITIONS_TOPIC, Entry, PositionStore, fold, history
from backbone.testing import FAST_RUNTIME, broker_yaml, consume, running, wait_until
from tests.servers import Tansu, run_tansu

pytestmark = [pytest.mark.timeout(90), pytest.mark.tansu]

DAMAGED: list[tuple[bytes | None, bytes | None]] = [
    (None, b'{"position": 99}'),  # no key
    (b"\xff\xfe", b'{"position": 99}'),  # key not UTF-8
    (b"NAME", b"not json"),
    (b"NAME", b'{"offset": 99}'),  # JSON without "position"
    (b"NAME", b"[1, 2]"),  # JSON, not an object
]


async def _append(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def _damaged(name: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(k.replace(b"NAME", name.encode()) if k else k, v) for k, v in DAMAGED]


async def test_load_skips_damaged_records_and_keeps_the_earlier_value(
    tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"positions.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:  # one partition, like the runner's: offsets below follow the append order
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    good = [
        (b"a", b'{"position": 1}'),
        (b"b", b'{"position": {"offset": 7}}'),
        (b"c", b'{"position": 3}'),
        (b"c", None),  # tombstone: c has no position any more
    ]
    await _append(tansu.bootstrap, topic, good + _damaged("a") + [(b"b", b'{"position": 8}')])
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="backbone.positions"):
            positions = await PositionStore(producer, tansu.bootstrap, topic).load()
    finally:
        await producer.stop()
    assert positions == {"a": 1, "b": 8}
    messages = [r.getMessage() for r in caplog.records if r.name == "backbone.positions"]
    assert len(messages) == len(DAMAGED)
    assert messages[0] == f"skipping a record without a key in {topic}[0]@4"
    assert messages[1] == f"skipping a record whose key is not UTF-8 in {topic}[0]@5"
    assert messages[2].startswith(f"skipping the unreadable position of 'a' in {topic}[0]@6 (")
    assert "KeyError" in messages[3] and "resumes from its previous position" in messages[3]


async def test_runner_resumes_from_the_last_readable_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a Tansu of its own: the damaged records it writes to _backbone.positions must not
    # reach the gateways other tests run on the shared one
    with run_tansu() as tansu:
        await _resumes_from_the_last_readable_position(tansu, tmp_path, caplog)


async def _resumes_from_the_last_readable_position(
    tansu: Tansu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, topic = f"gen-{uuid.uuid4().hex[:8]}", f"t.{uuid.uuid4().hex[:8]}"
    text = (
        broker_yaml("tansu", tansu=tansu)
        + FAST_RUNTIME
        + f"""
sources:
  {name}: {{type: generator, topic: {topic}, rate: 1000, count: COUNT}}
"""
    )
    config = tmp_path / "positions.yaml"
    config.write_text(text.replace("COUNT", "20"))
    async with running(config):
        await consume(tansu.bootstrap, topic, count=20)
    await _append(tansu.bootstrap, POSITIONS_TOPIC, _damaged(name))
    config.write_text(text.replace("COUNT", "30"))
    with caplog.at_level(logging.ERROR, logger="backbone.positions"):
        async with running(config):
            records = await consume(tansu.bootstrap, topic, count=30)
    seqs = [json.loads(r.value)["seq"] for r in records]
    assert seqs == list(range(1, 31))  # resumed after 20: no gap, no repeat
    skipped = [r for r in caplog.records if r.name == "backbone.positions"]
    assert any(f"position of '{name}'" in r.getMessage() for r in skipped)


@dataclass
class _Record:
    """A record of the position topic as the fold sees it (what a consumer returns)."""

    key: bytes
    value: bytes | None
    offset: int


def _history(*values: dict[str, Any] | None, key: str = "src") -> list[_Record]:
    return [
        _Record(key.encode(), None if v is None else json.dumps(v).encode(), offset)
        for offset, v in enumerate(values)
    ]


def _folded(records: list[_Record], key: str = "src") -> Entry | None:
    entries: dict[str, Entry] = {}
    for record in records:
        value = None if record.value is None else json.loads(record.value)
        fold(entries, key, value, record.offset)
    return entries.get(key)


def _claim(position: Any, worker: str) -> dict[str, Any]:
    return {"kind": "claim", "position": position, "worker": worker}


def _save(position: Any, epoch: int, worker: str) -> dict[str, Any]:
    return {"position": position, "epoch": epoch, "worker": worker}


# A's claim (0); B reads 20 and claims (4) while A's save of 30 slips in before it (3),
# so B resumes from 30 and writes it under its own epoch (5); A's saves sent before
# it stopped land late (6, 9) and count for nobody, and B writes its position again
# after each (7, 10)
HISTORY = _history(
    _claim(None, "a"),
    _save(10, 0, "a"),
    _save(20, 0, "a"),
    _save(30, 0, "a"),
    _claim(20, "b"),
    _save(30, 4, "b"),
    _save(40, 0, "a"),
    _save(30, 4, "b"),
    _save(50, 4, "b"),
    _save(45, 0, "a"),
    _save(50, 4, "b"),
)


def test_saves_of_an_owner_claimed_over_count_for_nobody() -> None:
    assert history(HISTORY, "src") == [10, 20, 30, 30, 30, 50, 50]
    assert _folded(HISTORY) == Entry(50, 4, "b")
    # the save that slipped in before B's claim counted: B resumes from 30, not 20
    assert _folded(HISTORY[:5]) == Entry(30, 4, "b")


def test_every_suffix_of_a_history_folds_to_the_same_state() -> None:
    # a compacted topic keeps the newest record of a key and drops older ones: a
    # reader may start anywhere in a key's history
    whole = _folded(HISTORY)
    for start in range(len(HISTORY)):
        assert _folded(HISTORY[start:]) == whole, f"history from offset {start}"


def test_a_claim_read_first_keeps_its_position() -> None:
    # compacted to B's claim alone (B saved nothing since)
    records = [_Record(b"src", json.dumps(_claim(20, "b")).encode(), 4)]
    assert _folded(records) == Entry(20, 4, "b")
    # and saves without an epoch (a single gateway) count until a claim
    single = _history({"position": 1}, {"position": 2}, _claim(2, "c"), {"position": 3})
    assert _folded(single) == Entry(2, 2, "c")
    assert history(single, "src") == [1, 2]


def test_a_tombstone_forgets_the_claim_too() -> None:
    records = _history(_claim(None, "a"), _save(5, 0, "a"), None, {"position": 1})
    assert _folded(records) == Entry(1, None, None)


async def test_a_fenced_save_landing_last_is_followed_by_the_position_in_force(
    tansu: Tansu,
) -> None:
    topic = f"positions.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, enable_idempotence=False)
    await producer.start()
    old, new = (PositionStore(producer, tansu.bootstrap, topic) for _ in range(2))
    try:
        await old.start()
        await new.start()
        [(_, stale)] = (await old.claim(["src"], worker="old")).items()
        await stale.save("src", 10)
        await new.caught_up()
        [(_, current)] = (await new.claim(["src"], worker="new")).items()
        assert current.position == 10
        await current.save("src", 15)
        await old.caught_up()
        assert not stale.valid  # the old owner read the new claim
        await stale.save("src", 12)  # in flight when it lost the source: lands last
        records = await consume(tansu.bootstrap, topic, count=6)
        assert [json.loads(r.value).get("worker") for r in records] == [
            *("old", "old", "new", "new", "old"),
            "new",  # the new owner wrote its position again
        ]
        assert json.loads(records[-1].value) == _save(15, current.id, "new")
        assert history(records, "src") == [10, 15, 15]
        assert await PositionStore(producer, tansu.bootstrap, topic).load() == {"src": 15}
    finally:
        await old.stop()
        await new.stop()
        await producer.stop()


async def test_a_fenced_write_checks_the_lease_as_it_sends(tansu: Tansu) -> None:
    """The lease running out between the fence and the send (a process frozen right
    then): nothing is written until the lease is back, and the claim and saves go to
    the partition the producer picks for the key."""
    topic = f"positions.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, enable_idempotence=False)
    await producer.start()
    store = PositionStore(producer, tansu.bootstrap, topic)
    renewed = asyncio.Event()
    renewed.set()
    checks: list[bool] = []
    lapse = False

    async def fence() -> None:
        await renewed.wait()

    def leased() -> bool:
        nonlocal lapse
        checks.append(not lapse)
        if lapse:  # gone at the check, after the fence let the write through
            lapse = False
            renewed.clear()
            return False
        return True

    try:
        await store.start()
        claims = await store.claim(["src"], worker="w", fence=fence, leased=leased)
        await claims["src"].save("src", 1)
        lapse = True
        late = asyncio.create_task(claims["src"].save("src", 2))
        await wait_until(lambda: not renewed.is_set(), within=10, what="the lease check")
        assert not late.done() and checks == [True, True, False]
        await store.caught_up()
        assert store.entries["src"].position == 1  # nothing written without the lease
        renewed.set()
        await asyncio.wait_for(late, 10)
        records = await consume(tansu.bootstrap, topic, count=3)
        assert [json.loads(r.value) for r in records] == [
            {"kind": "claim", "position": None, "worker": "w"},
            _save(1, claims["src"].id, "w"),
            _save(2, claims["src"].id, "w"),
        ]
        check = await producer.send_and_wait(topic, key=b"src", value=None)
        assert {r.partition for r in records} == {check.partition}
    finally:
        await store.stop()
        await producer.stop()
