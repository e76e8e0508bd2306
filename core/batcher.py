"""Hand encoded records to one aiokafka producer, a record batch per topic-partition.

:class:`ProducerBatcher` is the produce path of the gateway: the source worker
calls :meth:`ProducerBatcher.produce` with every record of one ``read()``, and a
push path (an HTTP handler producing one record and waiting for its
acknowledgement) can call it with one record and await the future it gets back.

Records are appended to one open ``BatchBuilder`` per topic-partition
(``producer.create_batch``/``send_batch``), so a record costs no coroutine and
no future of its own; the partition is chosen as ``producer.send`` would (murmur2
of the key, a random partition for keyless records), from the partitions the
producer's public ``partitions_for`` reports. Records of one partition keep their
order (a partition's batches are submitted in order); a batch that is full is
submitted and a new one opened; a record larger than ``big_record`` bytes goes
through ``producer.send`` alone.

A batch is closed (``BatchBuilder.close``) before it is submitted: aiokafka holds an
open batch for ``linger_ms`` in case ``producer.send`` adds to it, which only delays a
batch that is already complete (5 ms a read at the runner's ``linger_ms: 5``, and the
next read of the partition waits behind it). ``linger_ms`` still applies to the
records sent alone.

While batches this batcher submitted are not acknowledged yet, new records are
*staged*: appended to one open batch per topic-partition, submitted together the
moment the last acknowledgement arrives (or, all of them, at once when one is full, so
a busy source keeps one request queued behind the one in flight).
aiokafka sends one request at a time per broker, one batch per partition per request,
and ``send_batch`` waits while the partition has a batch queued: without staging, a
record produced while an acknowledgement is slow (a slow fsync on the broker) waits
for that request and for the next one; staged, it goes with the next request. Records
of a partition keep their order either way: staged batches are submitted only once
none of this batcher's earlier batches is queued or in flight.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from backbone.events import Encoded

__all__ = ["BIG_RECORD", "ProducerBatcher", "murmur2"]

BIG_RECORD = 8192
"""Records whose key + value exceed this many bytes go through ``producer.send`` alone."""

HASH_CACHE = 65536
"""Keys whose murmur2 hash is remembered (murmur2 is pure Python, a microsecond or two a
key; keys repeat: customers, devices, files). Emptied when full."""

_M = 0x5BD1E995
_WORDS = [struct.Struct(f"<{n}I").unpack_from for n in range(64)]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (Java's ``Utils.murmur2``), the same value as aiokafka's
    ``murmur2``, about twice as fast: the 4-byte words are unpacked at once, not byte by byte."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    unpack = _WORDS[words] if words < 64 else struct.Struct(f"<{words}I").unpack_from
    for k in unpack(data):
        k = (k * _M) & 0xFFFFFFFF
        h = (h * _M ^ (k ^ k >> 24) * _M) & 0xFFFFFFFF  # one mask for both products
    tail = length & 3
    if tail:
        end = length - tail
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


class _Open:
    """A batch being filled for one topic-partition and the indexes of its records."""

    __slots__ = ("builder", "indexes")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.indexes: list[int] = []


class _Staged:
    """A batch staged for one topic-partition while earlier batches are unacknowledged:
    its builder and the future its records get (resolved as the submitted batch's)."""

    __slots__ = ("builder", "future")

    def __init__(self, builder: Any, future: asyncio.Future[Any]) -> None:
        self.builder = builder
        self.future = future


def _pass_on(target: asyncio.Future[Any], source: asyncio.Future[Any]) -> None:
    """Resolve ``target`` as ``source`` ended (a done callback of ``source``, through
    ``functools.partial(_pass_on, target)``)."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class ProducerBatcher:
    """Builds and submits record batches for ``producer`` (see the module docstring)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        big_record: int = BIG_RECORD,
        hash_cache: int = HASH_CACHE,
    ) -> None:
        self.producer = producer
        self.big_record = big_record
        self.hash_cache = hash_cache
        self._partitioner = DefaultPartitioner()
        self._hashes: dict[bytes, int] = {}
        self._unacked: set[asyncio.Future[Any]] = set()  # submitted, not acknowledged
        self._staged: dict[tuple[str, int], _Staged] = {}
        self._flushing: asyncio.Task[None] | None = None

    def _partition(self, key: bytes | None, known: list[int]) -> int:
        """The partition ``producer.send`` would pick: murmur2 of the key, random without."""
        if key is None:
            chosen: int = self._partitioner(None, known, known)
            return chosen
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.hash_cache:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return known[hashed % len(known)]

    async def produce(self, records: Sequence[Encoded]) -> list[asyncio.Future[Any]]:
        """Send ``records``; one future per record, in the order given.

        Records sharing a batch share its future; each future resolves when the broker
        acknowledged its record (with the producer's ``acks``) or fails with the
        producer's error.
        """
        if self._unacked or self._flushing is not None or self._staged:
            return await self._stage(records)
        producer = self.producer
        futures: list[Any] = [None] * len(records)
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], _Open] = {}
        for index, record in enumerate(records):
            topic, key, value = record.topic, record.key, record.value
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = self._partition(key, known)
            tp = (topic, partition)
            if (len(key) if key else 0) + (len(value) if value else 0) > self.big_record:
                await self._submit(batches, tp, futures)
                futures[index] = self._track(await self._send_alone(record, partition))
                continue
            current = batches.get(tp)
            if current is None:
                current = batches[tp] = _Open(producer.create_batch())
            stamp, headers = record.timestamp_ms, record.headers
            appended = current.builder.append(
                timestamp=stamp, key=key, value=value, headers=headers
            )
            if appended is None:
                await self._submit(batches, tp, futures)
                current = batches[tp] = _Open(producer.create_batch())
                appended = current.builder.append(
                    timestamp=stamp, key=key, value=value, headers=headers
                )
                if appended is None:  # does not fit an empty batch either
                    del batches[tp]
                    futures[index] = self._track(await self._send_alone(record, partition))
                    continue
            current.indexes.append(index)
        for tp in list(batches):
            await self._submit(batches, tp, futures)
        return futures

    async def _stage(self, records: Sequence[Encoded]) -> list[asyncio.Future[Any]]:
        """Append ``records`` to the staged batches (earlier batches are unacknowledged);
        a staged batch that is full is submitted at once, a big record after its
        partition's staged batch."""
        producer = self.producer
        loop = asyncio.get_running_loop()
        staged = self._staged
        futures: list[Any] = [None] * len(records)
        partitions: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            topic, key, value = record.topic, record.key, record.value
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = self._partition(key, known)
            tp = (topic, partition)
            if (len(key) if key else 0) + (len(value) if value else 0) > self.big_record:
                await self._submit_staged(tp)
                futures[index] = self._track(await self._send_alone(record, partition))
                continue
            current = staged.get(tp)
            if current is None:
                current = staged[tp] = _Staged(producer.create_batch(), loop.create_future())
            stamp, headers = record.timestamp_ms, record.headers
            appended = current.builder.append(
                timestamp=stamp, key=key, value=value, headers=headers
            )
            if appended is None:  # full: submit it, and the others so they join its request
                for staged_tp in list(staged):
                    await self._submit_staged(staged_tp)
                current = staged[tp] = _Staged(producer.create_batch(), loop.create_future())
                appended = current.builder.append(
                    timestamp=stamp, key=key, value=value, headers=headers
                )
                if appended is None:  # does not fit an empty batch either
                    del staged[tp]
                    futures[index] = self._track(await self._send_alone(record, partition))
                    continue
            futures[index] = current.future
        if not self._unacked and self._flushing is None:
            self._flush_soon()  # everything before was acknowledged meanwhile
        return futures

    async def _submit_staged(self, tp: tuple[str, int]) -> None:
        """Submit the staged batch of ``tp`` (if any) now; its future follows the producer's."""
        current = self._staged.pop(tp, None)
        if current is None:
            return
        try:
            current.builder.close()
            future = await self.producer.send_batch(current.builder, tp[0], partition=tp[1])
        except BaseException as exc:
            if not current.future.done():
                current.future.set_exception(exc)
            raise
        self._track(future).add_done_callback(functools.partial(_pass_on, current.future))

    def _track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Count ``future`` as unacknowledged until it is done; the last one done flushes
        the staged batches."""
        self._unacked.add(future)
        future.add_done_callback(self._acknowledged)
        return future

    def _acknowledged(self, future: asyncio.Future[Any]) -> None:
        self._unacked.discard(future)
        if not self._unacked and self._staged and self._flushing is None:
            self._flush_soon()

    def _flush_soon(self) -> None:
        self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Submit every staged batch (nothing of this batcher is unacknowledged)."""
        try:
            while self._staged and not self._unacked:
                for tp in list(self._staged):
                    try:
                        await self._submit_staged(tp)
                    except Exception:  # the staged records' futures carry the error
                        continue
        finally:
            self._flushing = None
            if self._staged and not self._unacked:
                self._flush_soon()

    async def _send_alone(self, record: Encoded, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send(
            record.topic,
            value=record.value,
            key=record.key,
            partition=partition,
            headers=record.headers,
            timestamp_ms=record.timestamp_ms,
        )
        return future

    async def _submit(
        self, batches: dict[tuple[str, int], _Open], tp: tuple[str, int], futures: list[Any]
    ) -> None:
        """Hand the open batch of ``tp`` (if any) to the producer; its records get its future."""
        current = batches.pop(tp, None)
        if current is None or not current.indexes:
            return
        current.builder.close()  # complete: sent when the connection is free, no linger
        future = self._track(
            await self.producer.send_batch(current.builder, tp[0], partition=tp[1])
        )
        for index in current.indexes:
            futures[index] = future
