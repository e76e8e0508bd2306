"""Hand-written aiokafka loops: the yardstick of the pipeline benchmark.

``python -m benchmarks.pipeline_loops JOB [options]`` does, in plain aiokafka
code with no Backbone runtime, the job one row of ``benchmarks.pipeline`` gives
``backbone run``, so the gateway's cost is a ratio measured in the same run:

- ``stdout``: produce ``--records`` generator-like records (one 5,000-record
  read at a time, one ``send_batch`` per partition) and consume them with
  ``getmany`` into the same JSON lines the ``stdout`` sink writes;
- ``latency``: the same, paced at ``--rate`` records/s like the generator;
- ``sql-snapshot``: read a SQLite ``orders`` table in id order (5,000 rows a
  query, in a thread) and produce each row as a Debezium-like envelope;
- ``sql-sink``: consume change envelopes and upsert them into PostgreSQL
  (psycopg async, one transaction per ``getmany`` result);
- ``processor``: consume, filter / mask / set each value, produce to ``--to``;
- ``prefill``: produce ``--records`` records of ``--kind`` into a topic and
  exit (set-up for the consuming rows, never timed).

Every job but ``prefill`` prints ``ready`` on stderr once its clients are
started (where ``backbone run`` logs ``backbone running``), does its work,
then waits for SIGTERM and exits 0: the harness counts what arrived (lines,
rows, offsets), as it does for ``backbone run``. With ``--data-dir`` the job
runs Backbone's broker in its own process and event loop, as ``backbone run``
does with ``broker.embedded``; with ``--bootstrap`` it uses that broker.

Client settings are the runner's: producer acks=all, linger 5 ms, 512 KiB
batches, idempotent unless ``--no-idempotence``, at most 10,000 records
unacknowledged; a consumer group with manual commits after each write. JSON
through orjson; CloudEvents headers as the runtime writes them (``ce_id`` a
UUIDv5 per record).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

#: Producer batch size of the runner (``backbone.runner``).
BATCH_BYTES = 512 * 1024
#: Most unacknowledged records, as the runner's source worker allows.
MAX_IN_FLIGHT = 10_000
#: Records per generator read (the benchmark's ``batch_size``).
READ_BATCH = 5000
#: Pads generator values to 100 bytes (at 6-digit sequence numbers).
PAD = "x" * 15
#: Extra fields of the processor row's input records.
ORDER_FIELDS = {"amount": 250, "country": "DE", "card": "4111-1111-1111-1111"}
_NAMESPACE = uuid.UUID("6f1b8e8e-3c1a-4f0e-9a57-2b8c5c1f3e11")
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def generator_value(seq: int, stamp: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The value the ``generator`` source makes for ``seq`` (with ``fields`` merged in)."""
    return {"seq": seq, "time": stamp, "message": f"event {seq}", **fields}


def now_stamp() -> tuple[str, int]:
    """(ISO-8601 UTC text, milliseconds) of now, as the generator stamps a read."""
    now = dt.datetime.now(dt.UTC)
    return now.isoformat().replace("+00:00", "Z"), int(now.timestamp() * 1000)


class CloudEvents:
    """The runtime's CloudEvents headers for one connector, ``ce_id`` hashed per record."""

    def __init__(self, connector: str, event_type: str) -> None:
        self._prefix = hashlib.sha1(
            _NAMESPACE.bytes + f"backbone://{connector}/".encode(), usedforsecurity=False
        )
        self._source = f"backbone://{connector}".encode()
        self._type = event_type.encode()

    def event_id(self, name: str) -> bytes:
        digest = self._prefix.copy()
        digest.update(name.encode())
        h = digest.hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}".encode()

    def headers(self, name: str, time_header: bytes) -> list[tuple[str, bytes]]:
        return [
            ("ce_specversion", b"1.0"),
            ("ce_id", self.event_id(name)),
            ("ce_source", self._source),
            ("ce_type", self._type),
            ("ce_time", time_header),
            ("content-type", b"application/json"),
        ]


def iso_ms(millis: int) -> bytes:
    moment = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


class Batcher:
    """Records -> one open batch per partition -> ``send_batch`` (murmur2 of the key)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.partitioner = DefaultPartitioner()
        self.partitions: list[int] = []
        self.open: dict[int, Any] = {}
        self.pending: list[tuple[int, asyncio.Future[Any]]] = []
        self.unacked = 0

    async def start(self) -> None:
        self.partitions = sorted(await self.producer.partitions_for(self.topic))

    async def add(
        self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], stamp: int | None
    ) -> None:
        partition = self.partitioner(key, self.partitions, self.partitions)
        batch = self.open.get(partition)
        if batch is None:
            batch = self.open[partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=stamp, headers=headers) is None:
            await self._send(partition)
            batch = self.open[partition] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=stamp, headers=headers)

    async def _send(self, partition: int) -> None:
        batch = self.open.pop(partition)
        count = batch.record_count()
        batch.close()  # as the runner does: a complete batch does not wait linger_ms
        future = await self.producer.send_batch(batch, self.topic, partition=partition)
        self.pending.append((count, future))
        self.unacked += count

    async def flush(self) -> None:
        """Send every open batch; wait while more than MAX_IN_FLIGHT records are unacked."""
        for partition in list(self.open):
            await self._send(partition)
        while self.unacked >= MAX_IN_FLIGHT:
            count, future = self.pending.pop(0)
            await future
            self.unacked -= count

    async def drain(self) -> None:
        await self.flush()
        await asyncio.gather(*(future for _, future in self.pending))
        self.pending.clear()
        self.unacked = 0


@contextlib.asynccontextmanager
async def broker_address(args: argparse.Namespace) -> AsyncIterator[str]:
    """``--bootstrap`` as given, or Backbone's broker on ``--data-dir`` in this process."""
    if args.bootstrap:
        yield args.bootstrap
        return
    from backbone.broker import Broker, BrokerConfig

    config = BrokerConfig(data_dir=args.data_dir, host="127.0.0.1", port=args.port)
    async with Broker(config) as broker:
        yield str(broker.bootstrap)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def producer_for(bootstrap: str, args: argparse.Namespace) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=BATCH_BYTES,
        enable_idempotence=args.idempotence,
    )


def consumer_for(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def consume(
    consumer: AIOKafkaConsumer, expected: int, handle: Callable[[list[Any]], Any]
) -> None:
    """``getmany`` until ``expected`` records were handled; commit after each ``handle``."""
    seen = 0
    while seen < expected:
        batches = await consumer.getmany(timeout_ms=200)
        if not batches:
            continue
        messages = [m for tp in sorted(batches) for m in batches[tp]]
        result = handle(messages)
        if asyncio.iscoroutine(result):
            await result
        await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batches.items() if ms})
        seen += len(messages)


def write_lines(out: Any) -> Callable[[list[Any]], None]:
    """A handler writing each message as the stdout sink's JSON line, flushed per call."""
    dumps, loads = orjson.dumps, orjson.loads

    def handle(messages: list[Any]) -> None:
        lines = [
            dumps(
                {
                    "topic": m.topic,
                    "partition": m.partition,
                    "offset": m.offset,
                    "timestamp": m.timestamp,
                    "key": None if m.key is None else m.key.decode(),
                    "value": loads(m.value),
                    "headers": {k: bytes(v).decode() for k, v in m.headers},
                }
            )
            for m in messages
        ]
        lines.append(b"")
        out.write(b"\n".join(lines))
        out.flush()

    return handle


async def produce_generated(
    batcher: Batcher, records: int, keys: int, fields: dict[str, Any], rate: float | None = None
) -> None:
    """Generator-like records 1..``records``, ``READ_BATCH`` per read (paced at ``rate``)."""
    events = CloudEvents("loop", "backbone.generator.event")
    dumps = orjson.dumps
    started = time.monotonic()
    seq = 1
    while seq <= records:
        n = min(READ_BATCH, records - seq + 1)
        if rate is not None:
            due = int((time.monotonic() - started) * rate) - (seq - 1)
            if due <= 0:
                await asyncio.sleep(min(max(seq / rate - (time.monotonic() - started), 0.001), 1))
                continue
            n = min(n, due)
        stamp, millis = now_stamp()
        time_header = iso_ms(millis)
        for s in range(seq, seq + n):
            await batcher.add(
                f"key-{s % keys}".encode(),
                dumps(generator_value(s, stamp, fields)),
                events.headers(str(s), time_header),
                millis,
            )
        seq += n
        await batcher.flush()
    await batcher.drain()


async def job_stdout(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with broker_address(args) as bootstrap:
        await create_topic(bootstrap, args.topic, args.partitions)
        producer = producer_for(bootstrap, args)
        consumer = consumer_for(bootstrap, args.topic, "loop.stdout")
        await producer.start()
        try:
            batcher = Batcher(producer, args.topic)
            await batcher.start()
            print("ready", file=sys.stderr, flush=True)
            await consumer.start()
            try:
                rate = args.rate if args.job == "latency" else None
                fields = {"pad": PAD}
                await asyncio.gather(
                    produce_generated(batcher, args.records, args.keys, fields, rate),
                    consume(consumer, args.records, write_lines(sys.stdout.buffer)),
                )
                await stop.wait()
            finally:
                await consumer.stop()
        finally:
            await producer.stop()


def _read_rows(path: str, after: int, limit: int) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT id, customer, amount, updated_at FROM orders WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()


async def job_sql_snapshot(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with broker_address(args) as bootstrap:
        await create_topic(bootstrap, args.topic, args.partitions)
        producer = producer_for(bootstrap, args)
        await producer.start()
        try:
            batcher = Batcher(producer, args.topic)
            await batcher.start()
            events = CloudEvents("loop-db", "backbone.sql.change")
            dumps = orjson.dumps
            print("ready", file=sys.stderr, flush=True)
            last = 0
            while True:
                rows = await asyncio.to_thread(_read_rows, args.sqlite, last, READ_BATCH)
                if not rows:
                    break
                millis = int(time.time() * 1000)
                time_header = iso_ms(millis)
                for row_id, customer, amount, updated in rows:
                    key = {"id": row_id}
                    envelope = {
                        "op": "r",
                        "before": None,
                        "after": {
                            "id": row_id,
                            "customer": customer,
                            "amount": None if amount is None else str(amount),
                            "updated_at": updated.replace(" ", "T") + "+00:00",
                        },
                        "source": {
                            "connector": "loop-db",
                            "table": "orders",
                            "ts_ms": None,
                            "position": {"id": row_id},
                        },
                        "ts_ms": millis,
                    }
                    name = f'{{"identity":[{{"id":{row_id}}},"r",{{"id":{row_id}}},null]}}'
                    await batcher.add(
                        dumps(key), dumps(envelope), events.headers(name, time_header), millis
                    )
                last = rows[-1][0]
                await batcher.flush()
            await batcher.drain()
            await stop.wait()
        finally:
            await producer.stop()


UPSERT = (
    "INSERT INTO {table} (id, customer, amount, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET customer = EXCLUDED.customer, "
    "amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at"
)


async def job_sql_sink(args: argparse.Namespace, stop: asyncio.Event) -> None:
    import psycopg

    async with broker_address(args) as bootstrap:
        consumer = consumer_for(bootstrap, args.topic, "loop.sql-sink")
        conn = await psycopg.AsyncConnection.connect(args.dsn)
        statement = UPSERT.format(table=args.table)
        loads = orjson.loads
        try:
            print("ready", file=sys.stderr, flush=True)
            await consumer.start()

            async def upsert(messages: list[Any]) -> None:
                rows = []
                for m in messages:
                    after = loads(m.value)["after"]
                    rows.append(
                        (after["id"], after["customer"], after["amount"], after["updated_at"])
                    )
                async with conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(statement, rows)

            try:
                await consume(consumer, args.records, upsert)
                await stop.wait()
            finally:
                await consumer.stop()
        finally:
            await conn.close()


async def job_processor(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with broker_address(args) as bootstrap:
        await create_topic(bootstrap, args.to, args.partitions)
        producer = producer_for(bootstrap, args)
        consumer = consumer_for(bootstrap, args.topic, "loop.processor")
        await producer.start()
        try:
            batcher = Batcher(producer, args.to)
            await batcher.start()
            dumps, loads = orjson.dumps, orjson.loads
            print("ready", file=sys.stderr, flush=True)
            await consumer.start()

            async def transform(messages: list[Any]) -> None:
                for m in messages:
                    value = loads(m.value)
                    if not (value.get("amount", 0) >= 100 and value.get("country") in ("DE", "AT")):
                        continue
                    if "card" in value:
                        value["card"] = "****"
                    meta = value.get("meta")
                    if not isinstance(meta, dict):
                        meta = value["meta"] = {}
                    meta["checked"] = True
                    await batcher.add(m.key, dumps(value), list(m.headers), m.timestamp)
                await batcher.drain()

            try:
                await consume(consumer, args.records, transform)
                await stop.wait()
            finally:
                await consumer.stop()
        finally:
            await producer.stop()


def change_envelope(i: int) -> dict[str, Any]:
    """The sql sink row's input: an insert of order ``i`` in Debezium's envelope."""
    return {
        "op": "c",
        "before": None,
        "after": {
            "id": i,
            "customer": f"customer-{i % 1000}",
            "amount": f"{i % 10000}.25",
            "updated_at": "2024-05-01T12:00:00+00:00",
        },
        "source": {"connector": "bench", "table": "orders", "ts_ms": None, "position": i},
        "ts_ms": 0,
    }


async def job_prefill(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with broker_address(args) as bootstrap:
        await create_topic(bootstrap, args.topic, args.partitions)
        producer = producer_for(bootstrap, args)
        await producer.start()
        try:
            batcher = Batcher(producer, args.topic)
            await batcher.start()
            if args.kind == "orders":
                await produce_generated(batcher, args.records, args.keys, ORDER_FIELDS)
                return
            events = CloudEvents("bench", "backbone.sql.change")
            stamp = iso_ms(0)
            for i in range(1, args.records + 1):
                headers = events.headers(str(i), stamp)
                value = orjson.dumps(change_envelope(i))
                await batcher.add(orjson.dumps({"id": i}), value, headers, None)
                if i % READ_BATCH == 0:
                    await batcher.flush()
            await batcher.drain()
        finally:
            await producer.stop()


JOBS = {
    "stdout": job_stdout,
    "latency": job_stdout,
    "sql-snapshot": job_sql_snapshot,
    "sql-sink": job_sql_sink,
    "processor": job_processor,
    "prefill": job_prefill,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_loops")
    parser.add_argument("job", choices=sorted(JOBS))
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--bootstrap", help="an existing broker")
    where.add_argument("--data-dir", help="run Backbone's broker in this process on this folder")
    parser.add_argument("--port", type=int, default=0, help="port of the in-process broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--to", help="output topic (processor)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s (latency)")
    parser.add_argument("--sqlite", help="SQLite file with the orders table (sql-snapshot)")
    parser.add_argument("--dsn", help="PostgreSQL connection string (sql-sink)")
    parser.add_argument("--table", default="orders", help="PostgreSQL table (sql-sink)")
    parser.add_argument("--kind", choices=("orders", "changes"), default="orders")
    parser.add_argument("--no-idempotence", dest="idempotence", action="store_false")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await JOBS[args.job](args, stop)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_main(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
