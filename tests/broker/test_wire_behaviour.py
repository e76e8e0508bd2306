"""Wire-level behaviour of the broker that the client tests cannot pin exactly (issue 3).

Raw requests on real sockets, built and read with the codec's message classes
(``call`` from test_server); record batches built by kafka-python
(``make_batch``). Covers: Produce acks=0 sends no response, Fetch response
max_bytes and min_bytes, log_start_offset after DeleteRecords, ListOffsets
MAX_TIMESTAMP, OffsetForLeaderEpoch, the advertised listener and auto-creation.
"""

from __future__ import annotations

import asyncio
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from backbone.broker import Broker, BrokerConfig
from backbone.broker import protocol as kp
from tests.broker.long_poll import fetch_parked
from tests.broker.test_log_support import decode, make_batch
from tests.broker.test_server import Raw, api_versions_request, call, frame
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)

BASE_TS = 1_700_000_000_000


def produce_request(topic: str, partition: int, batch: bytes, acks: int = -1) -> Any:
    return kp.ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            kp.ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[
                    kp.ProduceRequest.PartitionProduceData(index=partition, records=batch)
                ],
            )
        ],
    )


async def produce(port: int, topic: str, partition: int, batch: bytes) -> int:
    """Produce v9 acks=-1 one batch; returns its base offset (asserting no error)."""
    response = await call(port, produce_request(topic, partition, batch), 9)
    [answer] = response.responses[0].partition_responses
    assert answer.error_code == 0, answer
    return answer.base_offset


def fetch_request(
    partitions: list[tuple[str, int, int]],
    *,
    max_bytes: int = 1 << 20,
    min_bytes: int = 1,
    max_wait_ms: int = 0,
    partition_max_bytes: int = 1 << 20,
) -> Any:
    """A Fetch request for (topic, partition, offset) entries, in that order."""
    topics: dict[str, list[Any]] = {}
    for topic, partition, offset in partitions:
        topics.setdefault(topic, []).append(
            kp.FetchRequest.FetchPartition(
                partition=partition, fetch_offset=offset, partition_max_bytes=partition_max_bytes
            )
        )
    return kp.FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        topics=[kp.FetchRequest.FetchTopic(topic=t, partitions=p) for t, p in topics.items()],
    )


def by_partition(response: Any) -> dict[tuple[str, int], Any]:
    return {(t.topic, p.partition_index): p for t in response.responses for p in t.partitions}


def values(records: Any) -> list[bytes | None]:
    return [r.value for _, recs in decode(bytes(records or b"")) for r in recs]


async def typed(conn: Raw, request: Any, version: int, correlation_id: int) -> None:
    """Send a typed request on an open connection (no response read)."""
    header = kp.RequestHeader(type(request).api_key, version, correlation_id, "wire-test")
    await conn.send(frame(kp.encode_request_header(header) + request.encode(version)))


def read_typed(body: bytes, api_key: int, version: int) -> tuple[int, Any]:
    """(correlation id, decoded response) of one response frame."""
    correlation_id = struct.unpack_from(">i", body)[0]
    _, pos = kp.read_response_header(body, kp.response_header_version(api_key, version))
    response, end = kp.RESPONSES[api_key].decode(memoryview(body), pos, version)
    assert end == len(body)
    return correlation_id, response


# ---------------------------------------------------------------- 3.1 acks=0


async def test_produce_v9_acks_0_sends_no_response(broker: Broker) -> None:
    await broker.logs.create_topic("fire", 1)
    conn = await Raw.connect(broker.port)
    try:
        batch = make_batch([b"one", b"two", b"three"])
        await typed(conn, produce_request("fire", 0, batch, acks=0), 9, 501)
        await conn.send(api_versions_request(3, 502))
        first = await conn.response()
        # responses leave in request order, so the first one being ApiVersions' (502)
        # means nothing was sent for the produce (501)
        assert struct.unpack_from(">i", first)[0] == 502
    finally:
        await conn.close()
    log = broker.logs.partition("fire", 0)
    assert log.high_watermark == 3
    response = await call(broker.port, fetch_request([("fire", 0, 0)]), 12)
    assert values(by_partition(response)[("fire", 0)].records) == [b"one", b"two", b"three"]


# ---------------------------------------------------------------- 3.2 fetch limits


async def test_fetch_response_max_bytes_across_two_partitions(broker: Broker) -> None:
    """KIP-74: the first non-empty partition gets one whole batch even above the response
    max_bytes; later partitions get nothing once the budget is spent."""
    await broker.logs.create_topic("two", 2)
    big = make_batch([b"a" * 1000])
    small = make_batch([b"b" * 100])
    await produce(broker.port, "two", 0, big)
    await produce(broker.port, "two", 0, small)
    await produce(broker.port, "two", 1, small)
    await produce(broker.port, "two", 1, small)

    # budget 500 < the first batch of partition 0: exactly that batch, partition 1 empty
    response = await call(
        broker.port, fetch_request([("two", 0, 0), ("two", 1, 0)], max_bytes=500), 12
    )
    parts = by_partition(response)
    assert len(parts[("two", 0)].records) == len(big)
    assert values(parts[("two", 0)].records) == [b"a" * 1000]
    assert len(parts[("two", 1)].records or b"") == 0
    assert parts[("two", 1)].error_code == 0 and parts[("two", 1)].high_watermark == 2

    # partition 1 first: its two small batches fit, then partition 0's big batch does not
    # fit the rest of the budget and is not sent (KIP-74 holds for the first one only)
    budget = 2 * len(small) + 100
    response = await call(
        broker.port, fetch_request([("two", 1, 0), ("two", 0, 0)], max_bytes=budget), 12
    )
    parts = by_partition(response)
    assert len(parts[("two", 1)].records) == 2 * len(small)
    assert len(parts[("two", 0)].records or b"") == 0
    assert parts[("two", 0)].high_watermark == 2

    # partition 0 from offset 1 (one small batch), then a budget left for one and a bit
    # of partition 1's batches: exactly one whole batch of partition 1 (never a part)
    budget = 2 * len(small) + 10
    response = await call(
        broker.port,
        fetch_request([("two", 0, 1), ("two", 1, 0)], max_bytes=budget),
        12,
    )
    parts = by_partition(response)
    assert len(parts[("two", 0)].records) == len(small)
    assert len(parts[("two", 1)].records) == len(small)
    assert values(parts[("two", 1)].records) == [b"b" * 100]

    # partition_max_bytes caps each partition: one whole batch each (the first over it)
    response = await call(
        broker.port,
        fetch_request([("two", 0, 0), ("two", 1, 0)], partition_max_bytes=len(small) + 10),
        12,
    )
    parts = by_partition(response)
    assert len(parts[("two", 0)].records) == len(big)
    assert len(parts[("two", 1)].records) == len(small)


async def test_fetch_min_bytes_waits_for_enough_data(broker: Broker) -> None:
    await broker.logs.create_topic("slow", 1)
    small = make_batch([b"s" * 10])
    large = make_batch([b"L" * 600])
    assert len(small) < 500 and len(small) + len(large) >= 500
    conn = await Raw.connect(broker.port)
    try:
        request = fetch_request([("slow", 0, 0)], min_bytes=500, max_wait_ms=10_000)
        await typed(conn, request, 12, 77)
        answer = asyncio.ensure_future(conn.response(wait=30.0))
        await fetch_parked(broker, "slow", answer)
        await produce(broker.port, "slow", 0, small)  # below min_bytes: the fetch waits on
        await produce(broker.port, "slow", 0, large)
        # answered right after the append, well before max_wait (10 s), with both batches:
        # an answer after the small batch alone would hold only that one
        body = await asyncio.wait_for(answer, 5.0)
    finally:
        await conn.close()
    correlation_id, response = read_typed(body, 1, 12)
    assert correlation_id == 77
    part = by_partition(response)[("slow", 0)]
    assert len(part.records) == len(small) + len(large)
    assert values(part.records) == [b"s" * 10, b"L" * 600]
    assert part.high_watermark == 2


# ---------------------------------------------------------------- 3.4 log start offset


async def test_delete_records_moves_log_start_offset_on_the_wire(broker: Broker) -> None:
    await broker.logs.create_topic("trim", 1, {"segment.bytes": "300"})
    for i in range(6):
        await produce(broker.port, "trim", 0, make_batch([b"%d" % i * 100]))
    request = kp.DeleteRecordsRequest(
        topics=[
            kp.DeleteRecordsRequest.DeleteRecordsTopic(
                name="trim",
                partitions=[
                    kp.DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=4)
                ],
            )
        ],
        timeout_ms=5000,
    )
    deleted = await call(broker.port, request, 2)
    result = deleted.topics[0].partitions[0]
    assert (result.error_code, result.low_watermark) == (0, 4)

    fetched = await call(broker.port, fetch_request([("trim", 0, 4)]), 12)
    part = by_partition(fetched)[("trim", 0)]
    assert (part.error_code, part.log_start_offset, part.high_watermark) == (0, 4, 6)
    # one segment per read (as Kafka): the batch at offset 4 alone
    assert values(part.records) == [b"4" * 100]
    before = await call(broker.port, fetch_request([("trim", 0, 3)]), 12)
    part = by_partition(before)[("trim", 0)]
    assert (part.error_code, part.log_start_offset) == (1, 4)  # OFFSET_OUT_OF_RANGE

    earliest = await call(broker.port, list_offsets("trim", -2), 7)
    answer = earliest.topics[0].partitions[0]
    assert (answer.error_code, answer.offset) == (0, 4)
    # the Fetch v4 response (the oldest served) carries it too
    old = await call(broker.port, fetch_request([("trim", 0, 5)]), 5)
    assert by_partition(old)[("trim", 0)].log_start_offset == 4


# ---------------------------------------------------------------- 3.5 offsets APIs


def list_offsets(topic: str, timestamp: int, partition: int = 0) -> Any:
    return kp.ListOffsetsRequest(
        replica_id=-1,
        topics=[
            kp.ListOffsetsRequest.ListOffsetsTopic(
                name=topic,
                partitions=[
                    kp.ListOffsetsRequest.ListOffsetsPartition(
                        partition_index=partition, timestamp=timestamp
                    )
                ],
            )
        ],
    )


async def test_list_offsets_max_timestamp_and_offset_for_leader_epoch(broker: Broker) -> None:
    await broker.logs.create_topic("ts", 1)
    empty = (await call(broker.port, list_offsets("ts", -3), 7)).topics[0].partitions[0]
    assert (empty.error_code, empty.offset, empty.timestamp) == (0, -1, -1)
    # timestamps out of order: the largest (BASE_TS + 900) is at offset 2, inside a batch
    await produce(
        broker.port,
        "ts",
        0,
        make_batch([b"a", b"b", b"c"], timestamps=[BASE_TS + 100, BASE_TS + 500, BASE_TS + 900]),
    )
    await produce(broker.port, "ts", 0, make_batch([b"d"], timestamps=[BASE_TS + 300]))
    await produce(
        broker.port, "ts", 0, make_batch([b"e", b"f"], timestamps=[BASE_TS + 800, BASE_TS + 200])
    )
    answer = (await call(broker.port, list_offsets("ts", -3), 7)).topics[0].partitions[0]
    assert (answer.error_code, answer.offset, answer.timestamp) == (0, 2, BASE_TS + 900)
    latest = (await call(broker.port, list_offsets("ts", -1), 7)).topics[0].partitions[0]
    assert latest.offset == 6

    def epoch_request(epoch: int) -> Any:
        return kp.OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[
                kp.OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                    topic="ts",
                    partitions=[
                        kp.OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                            partition=0, current_leader_epoch=0, leader_epoch=epoch
                        )
                    ],
                )
            ],
        )

    for version in (2, 3, 4):
        found = (await call(broker.port, epoch_request(0), version)).topics[0].partitions[0]
        assert (found.error_code, found.leader_epoch, found.end_offset) == (0, 0, 6)
    unknown = (await call(broker.port, epoch_request(3), 4)).topics[0].partitions[0]
    assert (unknown.error_code, unknown.leader_epoch, unknown.end_offset) == (0, -1, -1)


# ---------------------------------------------------------------- 3.6 advertised listener


async def test_advertised_listener_is_what_clients_are_told(tmp_path: Path) -> None:
    config = BrokerConfig(
        data_dir=tmp_path, port=0, advertised_host="kafka.example.internal", advertised_port=19092
    )
    async with Broker(config) as running:
        assert running.bootstrap == "kafka.example.internal:19092"
        await running.logs.create_topic("adv", 1)
        metadata = await call(
            running.port,
            kp.MetadataRequest(topics=[kp.MetadataRequest.MetadataRequestTopic(name="adv")]),
            12,
        )
        assert [(b.node_id, b.host, b.port) for b in metadata.brokers] == [
            (0, "kafka.example.internal", 19092)
        ]
        legacy = await call(running.port, kp.FindCoordinatorRequest(key="g"), 0)
        assert (legacy.error_code, legacy.node_id, legacy.host, legacy.port) == (
            0,
            0,
            "kafka.example.internal",
            19092,
        )
        batched = await call(
            running.port, kp.FindCoordinatorRequest(key_type=0, coordinator_keys=["g1", "g2"]), 4
        )
        assert [(c.key, c.error_code, c.host, c.port) for c in batched.coordinators] == [
            ("g1", 0, "kafka.example.internal", 19092),
            ("g2", 0, "kafka.example.internal", 19092),
        ]
        cluster = await call(running.port, kp.DescribeClusterRequest(), 1)
        assert [(b.broker_id, b.host, b.port) for b in cluster.brokers] == [
            (0, "kafka.example.internal", 19092)
        ]
        assert cluster.cluster_id == running.config.cluster_id


async def test_advertised_listener_option_of_the_broker_process(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backbone.broker",
        "--listen",
        f"127.0.0.1:{port}",
        "--advertised-listener",
        "broker.example:29092",
        "--data-dir",
        str(tmp_path / "data"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            while True:
                assert proc.returncode is None, "the broker process exited"
                try:
                    conn = await Raw.connect(port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                await conn.close()
                break
        metadata = await call(port, kp.MetadataRequest(topics=[]), 12)
        assert [(b.node_id, b.host, b.port) for b in metadata.brokers] == [
            (0, "broker.example", 29092)
        ]
        cluster = await call(port, kp.DescribeClusterRequest(), 0)
        assert [(b.host, b.port) for b in cluster.brokers] == [("broker.example", 29092)]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert "serving broker.example:29092" in err.decode()


# ---------------------------------------------------------------- 3.7 auto-create


async def test_auto_create_uses_default_partitions(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0, default_partitions=3)
    async with Broker(config) as running:
        request = kp.MetadataRequest(
            topics=[kp.MetadataRequest.MetadataRequestTopic(name="fresh")],
            allow_auto_topic_creation=True,
        )
        response = await call(running.port, request, 12)
        [topic] = response.topics
        assert (topic.name, topic.error_code) == ("fresh", 0)
        assert [p.partition_index for p in topic.partitions] == [0, 1, 2]
        assert len(running.logs.topic("fresh").partitions) == 3
        # Metadata v4+ with allow_auto_topic_creation=false does not create
        no = kp.MetadataRequest(
            topics=[kp.MetadataRequest.MetadataRequestTopic(name="not-asked")],
            allow_auto_topic_creation=False,
        )
        answer = await call(running.port, no, 12)
        assert [(t.name, t.error_code) for t in answer.topics] == [("not-asked", 3)]
        assert "not-asked" not in running.logs.topics
        # Produce auto-creates too, with the same default
        assert await produce(running.port, "by-produce", 2, make_batch([b"p2"])) == 0
        assert len(running.logs.topic("by-produce").partitions) == 3


async def test_produce_to_unknown_topic_without_auto_create(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0, auto_create_topics=False)
    async with Broker(config) as running:
        response = await call(running.port, produce_request("ghost", 0, make_batch([b"x"])), 9)
        [answer] = response.responses[0].partition_responses
        assert (answer.index, answer.error_code, answer.base_offset) == (0, 3, -1)
        assert "ghost" not in running.logs.topics
        assert not (tmp_path / "ghost-0").exists()
