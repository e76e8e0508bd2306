"""Source positions in the compacted topic ``_backbone.positions``, fenced by claims.

Records are keyed by connector name (UTF-8); values are JSON:

- a *claim*: ``{"kind": "claim", "position": P, "worker": W}`` — a process takes
  the source over (``W`` = ``host:pid``, for people); ``P`` is the position in
  force as the claimer read it. The claim's *epoch* is its offset in the topic,
  which every reader knows;
- a *save*: ``{"position": P, "epoch": E, "worker": W}`` — position ``P`` written
  by the owner whose claim has epoch ``E``;
- a tombstone (null value) forgets the connector; ``{"position": P}`` without an
  epoch is a save of a process that does not claim (a single gateway before the
  cluster, an ingress source).

Every reader folds the records of a key in offset order (:func:`fold`):

- a claim always takes effect: its offset becomes the connector's epoch, the
  position does not change (a save that landed between the claimer's read and
  its claim still counts, and the claimer resumes from the position in force at
  its claim, not from the one it read);
- a save counts only when its epoch is not older than the connector's epoch: a
  save from an owner that was claimed over is ignored, whenever it lands (a save
  that was in flight when its process froze or lost the source).

So positions only move forward (every counted save comes from the current owner,
which resumed from the position in force at its claim), and an owner that was
fenced can no longer change them.

**Compaction.** The broker keeps the newest record of a key and drops older ones,
so a reader may start a key's history in the middle: at any record. Its first
record then stands for what came before it (a claim's or a save's position is
taken as the position in force, a save's epoch as the epoch), and because epochs
are offsets, which only grow, every later record folds as it does for a reader
of the whole history: the current owner's saves count, a fenced owner's don't.
When a save slipped in before a claim, the claimer writes the position in force
at its claim once more (a save under its own epoch), so a claim carrying an
older position is never the newest record of its key for long.

:class:`PositionStore` tails the topic (no group: every partition, from the
start) and keeps the folded state; :meth:`PositionStore.claim` claims sources
for this process and returns one :class:`Claim` per source, whose
:meth:`Claim.save` is the only way an owner writes a position (each save first
awaits the owner's fence: the gateway cluster's membership lease, and carries
the wall-clock time the fence let it through as its record timestamp).

**No save of a fenced owner after a takeover.** Awaiting the fence is not enough
on its own: a save handed to a producer waits in the producer's buffer (behind
other requests to the same broker), and a process frozen (SIGSTOP) right then
sends it when it wakes, after the new owner's claim. So a claimed owner's records
(saves and claims) do not go through the producer: each is one ProduceRequest
written on a connection of the store's own, and the lease is checked in the same
step as the request is written to the socket (no ``await`` between them). A
process frozen before that step finds its lease gone when it wakes (it waits at
the fence and is stopped); a request written before the freeze is in the kernel
and reaches the broker at once, while the lease guarantees that the coordinator
has not dropped the process yet, so no other process has claimed the source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

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

Leased = Callable[[], bool]
"""Whether this process may write right now (the lease the fence waits for)."""

WRITE_TIMEOUT_MS = 30_000
"""How long the broker may take to acknowledge one fenced write."""


class PositionWriter(Protocol):
    """What a source worker saves its positions through."""

    async def save(self, connector: str, position: Any) -> None: ...


@dataclass
class Entry:
    """The folded state of one connector: its position and the epoch of its claim."""

    position: Any = None
    epoch: int | None = None
    """Offset of the claim in force (``None``: never claimed, as far as read)."""
    worker: str | None = None


def fold(entries: dict[str, Entry], name: str, value: Any, offset: int) -> bool:
    """Apply the record at ``offset`` (``value`` = decoded JSON, ``None`` for a tombstone).

    Returns whether it counted: a claim or a tombstone always does, a save unless it
    was fenced (see the module docstring). Raises ``KeyError``/``TypeError`` for a
    value of the wrong shape.
    """
    if value is None:
        entries.pop(name, None)
        return True
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    position = value["position"]
    entry = entries.get(name)
    if value.get("kind") == "claim":
        if entry is None:  # the first record read (a compacted history): its position held
            entry = entries[name] = Entry(position)
        entry.epoch = offset
        entry.worker = value.get("worker")
        return True
    epoch = value.get("epoch")
    if epoch is not None and not isinstance(epoch, int):
        raise TypeError(f"expected an integer epoch, got {epoch!r}")
    if entry is None:
        entries[name] = Entry(position, epoch, value.get("worker"))
        return True
    if entry.epoch is not None and (epoch is None or epoch < entry.epoch):
        return False  # written by an owner that was claimed over: fenced
    entry.position = position
    if epoch is not None:
        entry.epoch = epoch
        entry.worker = value.get("worker")
    return True


def history(records: Iterable[Any], connector: str) -> list[Any]:
    """The positions ``connector`` had, in order: one per save that counted.

    ``records`` are records of the position topic (``key``/``value`` bytes and
    ``offset``) in offset order; claims and fenced saves are folded as every reader
    folds them.
    """
    entries: dict[str, Entry] = {}
    key = connector.encode()
    out: list[Any] = []
    for record in records:
        if record.key != key:
            continue
        value = None if record.value is None else json.loads(record.value)
        counted = fold(entries, connector, value, record.offset)
        if counted and value is not None and value.get("kind") != "claim":
            out.append(value["position"])
    return out


class Claim:
    """This process's claim on one source: the position to resume from, and saves.

    ``id`` is the claim's epoch (its offset in the position topic). Saves of one claim
    are written one at a time, in order.
    """

    def __init__(
        self,
        store: PositionStore,
        connector: str,
        epoch: int,
        position: Any,
        worker: str,
        fence: Fence | None,
        leased: Leased | None = None,
    ) -> None:
        self.store = store
        self.connector = connector
        self.id = epoch
        self.position = position
        self.saved = position
        """The newest position written under this claim (or the one it resumed from)."""
        self.worker = worker
        self.fence = fence
        self.leased = leased
        self._lock = asyncio.Lock()

    async def save(self, connector: str, position: Any) -> None:
        """Store ``position`` under this claim; returns once the broker acknowledged it."""
        assert connector == self.connector
        async with self._lock:
            await self._write(position)

    async def _write(self, position: Any) -> None:
        value = {"position": position, "epoch": self.id, "worker": self.worker}
        self.saved = position
        if self.fence is not None and self.leased is not None:
            await self.store.write_fenced(self.connector, value, self.fence, self.leased)
            return
        if self.fence is not None:
            await self.fence()
        # the record's timestamp: when the fence let this write through
        stamp = int(time.time() * 1000)
        await self.store.write(self.connector, value, timestamp_ms=stamp)

    async def reassert(self) -> None:
        """Write the newest position again while this claim is in force.

        Called when a fenced save of the connector landed after this claim: with the
        fenced save as the newest record of its key, a reader of the compacted topic
        would start from it.
        """
        async with self._lock:
            if self.valid:
                await self._write(self.saved)

    @property
    def valid(self) -> bool:
        """Whether this claim is still the connector's claim (as far as read so far)."""
        entry = self.store.entries.get(self.connector)
        return entry is not None and entry.epoch == self.id


class PositionStore:
    """Reads, claims and writes source positions (see the module docstring).

    ``on_claim(connector, epoch)`` is called for every claim read (this process's own
    and others'), so an owner learns at once that it was fenced.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        bootstrap: str,
        topic: str = POSITIONS_TOPIC,
        *,
        on_claim: Callable[[str, int], None] | None = None,
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
        self._claims: dict[str, Claim] = {}  # this process's newest claim per connector
        self._reasserts: set[asyncio.Task[None]] = set()
        self._writer: AIOKafkaClient | None = None  # fenced writes' own connections
        self._partitioner = DefaultPartitioner()  # the producer's: same key, same partition

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
        for task in list(self._reasserts):
            task.cancel()
        await asyncio.gather(*self._reasserts, return_exceptions=True)
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
            self._tail = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

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
            try:
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
            except KafkaError as exc:  # the broker away for a while: keep following
                logger.warning("reading %s: %s: %s; retrying", self.topic, type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
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
            counted = fold(self.entries, name, value, message.offset)
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
        if value is not None and value.get("kind") == "claim":
            if self.on_claim is not None:
                self.on_claim(name, message.offset)
        elif not counted and value is not None:
            self._fenced_save(name, value)

    def _fenced_save(self, name: str, value: dict[str, Any]) -> None:
        """A fenced save landed: the owner here writes its position again (see reassert)."""
        claim = self._claims.get(name)
        if claim is None or not claim.valid or self.producer is None:
            return
        logger.info(
            "a save of %s by %s landed after it was claimed over (ignored); writing the "
            "position in force again",
            name,
            value.get("worker") or "a process",
        )
        task = asyncio.create_task(claim.reassert(), name=f"backbone:reassert:{name}")
        self._reasserts.add(task)
        task.add_done_callback(self._reasserted)

    def _reasserted(self, task: asyncio.Task[None]) -> None:
        self._reasserts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not write a position again: %s", task.exception())

    # ------------------------------------------------------------------ writing

    async def write(
        self, connector: str, value: dict[str, Any], *, timestamp_ms: int | None = None
    ) -> tuple[int, int]:
        """Append one record; returns (partition, offset) once the broker acknowledged it."""
        assert self.producer is not None, "a read-only store cannot write"
        data = json.dumps(value, separators=(",", ":")).encode()
        future = await self.producer.send(
            self.topic, key=connector.encode(), value=data, timestamp_ms=timestamp_ms
        )
        metadata = await future
        return metadata.partition, metadata.offset

    async def write_fenced(
        self, connector: str, value: dict[str, Any], fence: Fence, leased: Leased
    ) -> tuple[int, int]:
        """Append one record of a claimed owner while ``leased()``; (partition, offset).

        Awaits ``fence()``, then checks ``leased()`` and writes the ProduceRequest to
        the socket in one step (see the module docstring). The record's timestamp is
        the time of that check. Retried (fence and check again) on a broker away or
        a leader moving; other errors raise :class:`KafkaError`.
        """
        data = json.dumps(value, separators=(",", ":")).encode()
        key = connector.encode()
        failures = 0
        while True:
            await fence()
            try:
                written = await self._write_leased(key, data, leased)
            except (KafkaError, OSError, TimeoutError) as exc:
                retriable = not isinstance(exc, KafkaError) or exc.retriable
                failures += 1
                if not retriable or failures > 50:
                    raise
                logger.info(
                    "writing the position of %s: %s: %s; retrying",
                    connector,
                    type(exc).__name__,
                    exc,
                )
                if getattr(exc, "invalid_metadata", False) and self._writer is not None:
                    self._writer.force_metadata_update()
                await asyncio.sleep(min(0.1 * failures, 1.0))
                continue
            if written is not None:
                return written

    async def _write_leased(
        self, key: bytes, data: bytes, leased: Leased
    ) -> tuple[int, int] | None:
        """One attempt; ``None`` when the lease was gone at the check (nothing sent)."""
        client = await self._fenced_client()
        partitions = client.cluster.partitions_for_topic(self.topic)
        if not partitions:
            await client.force_metadata_update()
            raise kafka_errors.UnknownTopicOrPartitionError(self.topic)
        available = client.cluster.available_partitions_for_topic(self.topic)
        partition = self._partitioner(key, sorted(partitions), sorted(available or ()))
        leader = client.cluster.leader_for_partition(TopicPartition(self.topic, partition))
        if leader is None or leader == -1:
            await client.force_metadata_update()
            raise kafka_errors.LeaderNotAvailableError(f"{self.topic}[{partition}]")
        conn = await client._get_conn(leader)  # the store's own connection to the leader
        if conn is None:
            raise kafka_errors.NodeNotReadyError(f"node {leader}")
        # no await from the lease check to the socket write: see the module docstring
        if not leased():
            return None
        stamp = int(time.time() * 1000)
        # magic 2, no compression, not transactional, no producer id/epoch/sequence
        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
        builder.append(0, stamp, key, data, [])
        request = ProduceRequest(
            transactional_id=None,
            required_acks=-1,
            timeout=WRITE_TIMEOUT_MS,
            topics=[(self.topic, [(partition, bytes(builder.build()))])],
        )
        response = await conn.send(request)
        for _topic, answers in response.topics:
            for answer in answers:
                error = kafka_errors.for_code(answer[1])
                if error is not kafka_errors.NoError:
                    raise error(f"writing to {self.topic}[{partition}]")
                return partition, answer[2]
        raise kafka_errors.UnknownError(f"no answer for {self.topic}[{partition}]")

    async def _fenced_client(self) -> AIOKafkaClient:
        if self._writer is None:
            client = self.clients.client(
                "backbone.positions.writer", request_timeout_ms=WRITE_TIMEOUT_MS + 10_000
            )
            await client.bootstrap()
            self._writer = client
            await client.add_topic(self.topic)
        if not self._writer.cluster.partitions_for_topic(self.topic):
            await self._writer.force_metadata_update()
        return self._writer

    async def save(self, connector: str, position: Any) -> None:
        """Store ``position`` without a claim (for a connector no other process runs)."""
        await self.write(connector, {"position": position})

    async def claim(
        self,
        connectors: Iterable[str],
        *,
        worker: str,
        fence: Fence | None = None,
        leased: Leased | None = None,
        still: Callable[[], bool] = lambda: True,
    ) -> dict[str, Claim]:
        """Claim ``connectors`` for this process; one :class:`Claim` each.

        Writes a claim carrying the position in force as read, and waits until the fold
        read it. A connector whose claim was overtaken by another process's newer claim
        is left out (it is that process's now). Claims nothing more once ``still()``
        turns false (checked after the fence, right before writing: the assignment
        changed meanwhile). With ``fence`` and ``leased``, claims and saves are fenced
        writes (:meth:`write_fenced`).
        """
        names = list(connectors)
        if not names:
            return {}
        if fence is not None:
            await fence()
        await self.caught_up()
        if not still():
            return {}
        sent: list[tuple[str, int, Any]] = []
        reached: dict[int, int] = {}
        for name in names:
            entry = self.entries.get(name)
            read = entry.position if entry is not None else None
            value = {"kind": "claim", "position": read, "worker": worker}
            if fence is not None and leased is not None:
                partition, offset = await self.write_fenced(name, value, fence, leased)
            else:
                partition, offset = await self.write(name, value)
            reached[partition] = max(reached.get(partition, 0), offset + 1)
            sent.append((name, offset, read))
        await self._reached(reached)
        claims: dict[str, Claim] = {}
        for name, offset, read in sent:
            entry = self.entries.get(name)
            if entry is None or entry.epoch != offset:
                logger.info("%s was claimed by another process right after this one", name)
                continue
            claim = Claim(self, name, offset, entry.position, worker, fence, leased)
            self._claims[name] = claim
            if entry.position != read:  # a save slipped in: the claim's record is behind
                await claim.save(name, entry.position)
            claims[name] = claim
        return claims
