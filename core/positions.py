"""Source positions in the compacted topic ``_backbone.positions``, fenced by claims.

Records are keyed by connector name (UTF-8); values are JSON:

- a *save*: ``{"position": P, "claim": C, "worker": W}`` — position ``P`` written
  by the owner holding claim ``C`` (``W`` = ``host:pid``, for people);
- a *claim*: ``{"kind": "claim", "claim": C, "position": P, "worker": W}`` — a
  process takes the source over; ``P`` is the position in force when it claimed;
- a tombstone (null value) forgets the connector; ``{"position": P}`` without a
  claim is a save from a version before claims.

Every reader folds the records of a key in offset order (:func:`fold`):

- a claim is *valid* when it carries the position in force right before it; a
  valid claim makes ``C`` the connector's claim (the position does not change);
  an invalid claim (a save slipped in between the claimer's read and its claim)
  changes nothing, and its writer claims again;
- a save counts only when its claim is the connector's claim (or, for a save
  without a claim, while the connector has none): a save from an owner that lost
  the source is ignored, whenever it lands.

So positions only move forward (every counted save comes from the current owner,
which resumed from the position in force), and an owner that was fenced can no
longer change them. One valid claim per owner change keeps this true after
compaction, since the newest record of a key is either a valid claim, a save of
the current claim, or a late save of a fenced owner; a late save can only be one
that was in flight when its owner lost the source, and its records were
acknowledged before it was sent, so resuming from it loses nothing.

:class:`PositionStore` tails the topic (no group: every partition, from the
start) and keeps the folded state; :meth:`PositionStore.claim` claims sources
for this process and returns one :class:`Claim` per source, whose
:meth:`Claim.save` is the only way an owner writes a position (each save first
awaits the owner's fence: the gateway cluster's membership lease).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from backbone.clients import KafkaClients
from backbone.errors import BackboneError

__all__ = [
    "POSITIONS_TOPIC",
    "Claim",
    "Entry",
    "PositionStore",
    "PositionWriter",
    "fold",
    "history",
]

logger = logging.getLogger(__name__)

POSITIONS_TOPIC = "_backbone.positions"

Fence = Callable[[], Awaitable[None]]
"""Awaited before every write of an owner: returns while this process may write."""


class PositionWriter(Protocol):
    """What a source worker saves its positions through."""

    async def save(self, connector: str, position: Any) -> None: ...


@dataclass
class Entry:
    """The folded state of one connector: its position and the claim in force."""

    position: Any = None
    claim: str | None = None
    worker: str | None = None


def fold(entries: dict[str, Entry], name: str, value: Any) -> str | None:
    """Apply one record (``value`` = decoded JSON, or ``None`` for a tombstone).

    Returns the claim id when the record is a valid claim, else ``None``. Raises
    ``KeyError``/``TypeError`` for a value of the wrong shape.
    """
    if value is None:
        entries.pop(name, None)
        return None
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    entry = entries.get(name)
    if value.get("kind") == "claim":
        claim = str(value["claim"])
        current = entry.position if entry is not None else None
        if value["position"] != current:
            return None  # a save slipped in before it: invalid, its writer claims again
        if entry is None:
            entry = entries[name] = Entry()
        entry.claim = claim
        entry.worker = value.get("worker")
        return claim
    position = value["position"]
    written = value.get("claim")
    holder = entry.claim if entry is not None else None
    if written != holder:
        return None  # written under a claim that is no longer in force: fenced
    if entry is None:
        entry = entries[name] = Entry()
    entry.position = position
    return None


def history(records: Iterable[Any], connector: str) -> list[Any]:
    """The positions ``connector`` had, in order: one per save that counted.

    ``records`` are records of the position topic (``key``/``value`` bytes) in offset
    order; claims and fenced saves are folded as every reader folds them.
    """
    entries: dict[str, Entry] = {}
    key = connector.encode()
    out: list[Any] = []
    for record in records:
        if record.key != key:
            continue
        value = None if record.value is None else json.loads(record.value)
        before = entries.get(connector)
        holder = before.claim if before is not None else None
        fold(entries, connector, value)
        if value is not None and value.get("kind") != "claim" and value.get("claim") == holder:
            out.append(value["position"])
    return out


class Claim:
    """This process's claim on one source: the position to resume from, and saves."""

    def __init__(
        self,
        store: PositionStore,
        connector: str,
        claim: str,
        position: Any,
        worker: str,
        fence: Fence | None,
    ) -> None:
        self.store = store
        self.connector = connector
        self.id = claim
        self.position = position
        self.worker = worker
        self.fence = fence

    async def save(self, connector: str, position: Any) -> None:
        """Store ``position`` under this claim; returns once the broker acknowledged it."""
        assert connector == self.connector
        if self.fence is not None:
            await self.fence()
        await self.store.write(
            connector, {"position": position, "claim": self.id, "worker": self.worker}
        )

    @property
    def valid(self) -> bool:
        """Whether this claim is still the connector's claim (as far as read so far)."""
        entry = self.store.entries.get(self.connector)
        return entry is not None and entry.claim == self.id


class PositionStore:
    """Reads, claims and writes source positions (see the module docstring).

    ``on_claim(connector, claim)`` is called for every valid claim read (this
    process's own and others'), so an owner learns at once that it was fenced.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        bootstrap: str,
        topic: str = POSITIONS_TOPIC,
        *,
        on_claim: Callable[[str, str], None] | None = None,
        clients: KafkaClients | None = None,
    ) -> None:
        self.producer = producer
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_claim = on_claim
        self.clients = clients or KafkaClients(bootstrap)
        self.entries: dict[str, Entry] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None
        self._read_to: dict[int, int] = {}  # partition -> next offset to fold
        self._progress = asyncio.Condition()

    # ------------------------------------------------------------------ reading

    async def load(self) -> dict[str, Any]:
        """Every connector's position in force, read from the topic's start to its end."""
        await self.start()
        try:
            return self.positions()
        finally:
            await self.stop()

    def positions(self) -> dict[str, Any]:
        """The positions in force as read so far (connectors without one are absent)."""
        return {n: e.position for n, e in self.entries.items() if e.position is not None}

    async def start(self) -> None:
        """Read the topic to its end, then keep following it in the background."""
        consumer = self.clients.consumer(
            client_id="backbone.positions",
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        consumer.subscribe([self.topic])  # no group: every partition is assigned here
        await consumer.start()
        self._consumer = consumer
        try:
            for _ in range(100):  # a topic created a moment ago may take a while to appear
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            if not tps:
                raise BackboneError(f"the position topic {self.topic} does not exist")
            self._read_to = {tp.partition: -1 for tp in tps}
            self._tail = asyncio.create_task(self._follow(tps), name="backbone:positions")
            await self.caught_up()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop following the topic (idempotent)."""
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
            self._tail = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def caught_up(self) -> None:
        """Wait until every record written before this call was folded."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        ends = await consumer.end_offsets(list(consumer.assignment()))
        await self._reached({tp.partition: end for tp, end in ends.items()})

    async def _reached(self, wanted: dict[int, int]) -> None:
        """Wait until the fold passed ``wanted[partition]`` (an end offset) everywhere."""

        def done() -> bool:
            if self._tail is not None and self._tail.done():
                return True
            return all(self._read_to.get(p, -1) >= end for p, end in wanted.items())

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(done), 60)
        if self._tail is not None and self._tail.done():
            self._tail.result()
            raise BackboneError(f"stopped reading {self.topic}")

    async def _follow(self, tps: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batches = await consumer.getmany(*tps, timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    self._apply(message)
            moved = False
            for tp in tps:
                offset = await consumer.position(tp)
                if offset != self._read_to.get(tp.partition):
                    self._read_to[tp.partition] = offset
                    moved = True
            if moved or batches:
                async with self._progress:
                    self._progress.notify_all()

    def _apply(self, message: Any) -> None:
        """Fold one record; a record that is not readable is logged and skipped.

        Like Kafka Connect's offset reader: the connector keeps the position before
        it (or none), so it re-reads from there, which duplicates at worst.
        """
        where = f"{self.topic}[{message.partition}]@{message.offset}"
        if message.key is None:
            logger.error("skipping a record without a key in %s", where)
            return
        try:
            name = message.key.decode()
        except UnicodeDecodeError:
            logger.error("skipping a record whose key is not UTF-8 in %s", where)
            return
        try:
            value = None if message.value is None else json.loads(message.value)
            claim = fold(self.entries, name, value)
        except (ValueError, TypeError, KeyError) as exc:
            logger.error(
                "skipping the unreadable position of %r in %s (%s: %s); the connector "
                "resumes from its previous position",
                name,
                where,
                type(exc).__name__,
                exc,
            )
            return
        if claim is not None and self.on_claim is not None:
            self.on_claim(name, claim)

    # ------------------------------------------------------------------ writing

    async def write(self, connector: str, value: dict[str, Any]) -> tuple[int, int]:
        """Append one record; returns (partition, offset) once the broker acknowledged it."""
        assert self.producer is not None, "a read-only store cannot write"
        data = json.dumps(value, separators=(",", ":")).encode()
        future = await self.producer.send(self.topic, key=connector.encode(), value=data)
        metadata = await future
        return metadata.partition, metadata.offset

    async def save(self, connector: str, position: Any) -> None:
        """Store ``position`` without a claim (for a connector no other process runs)."""
        await self.write(connector, {"position": position})

    async def claim(
        self,
        connectors: Iterable[str],
        *,
        worker: str,
        fence: Fence | None = None,
        still: Callable[[], bool] = lambda: True,
    ) -> dict[str, Claim]:
        """Claim ``connectors`` for this process; one :class:`Claim` each.

        Writes a claim carrying the position in force as read, waits until the fold
        read it, and claims again while a save slipped in between (bounded). Claims
        nothing more once ``still()`` turns false (checked after the fence, right
        before writing: the assignment changed meanwhile).
        """
        pending = list(connectors)
        claims: dict[str, Claim] = {}
        for _ in range(20):
            if not pending:
                return claims
            if fence is not None:
                await fence()
            await self.caught_up()
            if not still():
                return claims
            sent: list[tuple[str, str]] = []
            reached: dict[int, int] = {}
            for name in pending:
                entry = self.entries.get(name)
                position = entry.position if entry is not None else None
                claim_id = uuid.uuid4().hex
                value = {"kind": "claim", "claim": claim_id, "position": position}
                partition, offset = await self.write(name, {**value, "worker": worker})
                reached[partition] = max(reached.get(partition, 0), offset + 1)
                sent.append((name, claim_id))
            await self._reached(reached)
            pending = []
            for name, claim_id in sent:
                entry = self.entries.get(name)
                if entry is not None and entry.claim == claim_id:
                    claims[name] = Claim(self, name, claim_id, entry.position, worker, fence)
                else:
                    pending.append(name)
        raise BackboneError(
            f"could not claim {', '.join(pending)}: positions kept changing (is another "
            "gateway cluster running sources of the same names on this Kafka cluster?)"
        )
