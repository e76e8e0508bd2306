"""The broker's server on raw sockets: framing, hostile frames, ApiVersions rules, pipelining.

Requests are built by hand with ``struct`` (not with our codec), so these tests
check the bytes on the wire independently of the generated codec.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from backbone.broker import Broker, BrokerConfig
from backbone.broker.handlers.base import Handler, RequestContext
from backbone.broker.protocol import DescribeClusterRequest, DescribeClusterResponse
from tests.broker.long_poll import fetch_parked

pytestmark = pytest.mark.timeout(60)

# The version ranges the broker must advertise (issue 3).
EXPECTED = {
    0: (0, 11),  # Produce
    1: (4, 12),  # Fetch
    2: (0, 7),  # ListOffsets
    3: (0, 12),  # Metadata
    18: (0, 4),  # ApiVersions
    19: (0, 7),  # CreateTopics
    20: (0, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 5),  # InitProducerId
    23: (0, 4),  # OffsetForLeaderEpoch
    32: (0, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    37: (0, 3),  # CreatePartitions
    44: (0, 1),  # IncrementalAlterConfigs
    60: (0, 1),  # DescribeCluster
    # consumer groups (issue 4), the ranges of broker/handlers/groups.py
    8: (0, 8),  # OffsetCommit
    9: (0, 8),  # OffsetFetch
    10: (0, 5),  # FindCoordinator
    11: (0, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 6),  # DescribeGroups
    16: (0, 5),  # ListGroups
    42: (0, 2),  # DeleteGroups
    47: (0, 0),  # OffsetDelete
}

# Kafka 3.9 serves every one of these APIs from version 0 (its message JSONs'
# validVersions; KIP-896 raised the floors only in Kafka 4.0), and old clients (Sarama
# before 1.40, Burrow 1.2) send OffsetCommit v1, ListOffsets v0, DescribeConfigs v0 ...
# The one exception: Fetch v0-3 return message formats v0/v1, which the broker does not
# write (as Produce v0-2 are answered UNSUPPORTED_VERSION per partition).
KAFKA_3_9_FLOOR_EXCEPTIONS = {1: 4}  # Fetch

# The oldest versions the Java 4.x client sends (Kafka 4 removed the older ones, KIP-896):
# the broker must offer them, or the Java client cannot use groups at all.
JAVA_4_FLOORS = {
    8: 2,  # OffsetCommit
    9: 1,  # OffsetFetch
    11: 2,  # JoinGroup
}


def header_v1(api_key: int, version: int, correlation_id: int, client_id: str = "raw") -> bytes:
    raw = client_id.encode()
    return struct.pack(">hhih", api_key, version, correlation_id, len(raw)) + raw


def header_v2(api_key: int, version: int, correlation_id: int, client_id: str = "raw") -> bytes:
    return header_v1(api_key, version, correlation_id, client_id) + b"\x00"


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(version: int, correlation_id: int) -> bytes:
    if version >= 3:
        body = b"\x04raw\x041.0\x00"  # compact strings "raw", "1.0", no tagged fields
        return frame(header_v2(18, version, correlation_id) + body)
    return frame(header_v1(18, version, correlation_id))


def metadata_request_v1(correlation_id: int, topics: list[str] | None = None) -> bytes:
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for name in topics:
            body += struct.pack(">h", len(name)) + name.encode()
    return frame(header_v1(3, 1, correlation_id) + body)


def uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def parse_api_versions(body: bytes, version: int) -> tuple[int, dict[int, tuple[int, int]]]:
    """(error code, {api key: (min, max)}); asserts every byte is accounted for."""
    (error,) = struct.unpack_from(">h", body, 0)
    pos = 2
    ranges: dict[int, tuple[int, int]] = {}
    if version >= 3:
        count, pos = uvarint(body, pos)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", body, pos)
        pos += 4
    for _ in range(count):
        key, low, high = struct.unpack_from(">hhh", body, pos)
        pos += 6
        if version >= 3:
            tags, pos = uvarint(body, pos)
            assert tags == 0
        ranges[key] = (low, high)
    if version >= 1:
        pos += 4  # throttle_time_ms
    if version >= 3:
        tags, pos = uvarint(body, pos)
        assert tags == 0, "ApiVersions v3+ must carry no tagged fields (librdkafka 2.0.2)"
    assert pos == len(body), f"{len(body) - pos} unexpected trailing bytes"
    return error, ranges


class Raw:
    """A raw client connection: send bytes, read size-prefixed responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, wait: float = 10.0) -> bytes:
        """The next response frame without its size prefix."""
        async with asyncio.timeout(wait):
            (size,) = struct.unpack(">i", await self.reader.readexactly(4))
            return await self.reader.readexactly(size)

    async def closed(self, wait: float = 10.0) -> bool:
        """True when the broker closed the connection (EOF) without sending anything."""
        async with asyncio.timeout(wait):
            try:
                data = await self.reader.read(1)
            except ConnectionError:  # reset, or a write of ours hit the closed socket
                data = b""
        if data == b"":
            await self.close()
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@pytest.fixture
def broker_config(tmp_path: Path) -> BrokerConfig:
    return BrokerConfig(data_dir=tmp_path, port=0, max_frame_bytes=64 * 1024)


async def assert_serves(port: int) -> None:
    """A fresh connection still gets ApiVersions answered."""
    conn = await Raw.connect(port)
    try:
        await conn.send(api_versions_request(2, 4242))
        body = await conn.response()
        assert struct.unpack_from(">i", body)[0] == 4242
        error, ranges = parse_api_versions(body[4:], 2)
        assert error == 0 and ranges[18] == (0, 4)
    finally:
        await conn.close()


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
async def test_api_versions_every_version(broker: Broker, version: int) -> None:
    conn = await Raw.connect(broker.port)
    await conn.send(api_versions_request(version, 7))
    body = await conn.response()
    # response header v0 always: the correlation id only, no tagged-field byte
    assert struct.unpack_from(">i", body)[0] == 7
    error, ranges = parse_api_versions(body[4:], version)
    assert error == 0
    for key, expected in EXPECTED.items():
        assert ranges[key] == expected, f"api key {key}"
    for key, (low, _) in ranges.items():
        assert low == KAFKA_3_9_FLOOR_EXCEPTIONS.get(key, 0), f"api key {key}: floor {low}"
    await conn.close()


def test_group_ranges_meet_the_java_4_floors() -> None:
    for key, floor in JAVA_4_FLOORS.items():
        low, high = EXPECTED[key]
        assert low <= floor <= high, f"api key {key}: {low}-{high} does not offer v{floor}"


async def test_api_versions_unsupported_version_answers_v0_body_with_ranges(
    broker: Broker,
) -> None:
    conn = await Raw.connect(broker.port)
    await conn.send(frame(header_v2(18, 9, 11) + b"\x00\x00\x00"))
    body = await conn.response()
    assert struct.unpack_from(">i", body)[0] == 11
    error, ranges = parse_api_versions(body[4:], 0)
    assert error == 35
    assert ranges[18] == (0, 4)
    assert ranges[0] == (0, 11)
    await conn.close()


async def test_unsupported_version_of_an_api_gets_35(broker: Broker) -> None:
    conn = await Raw.connect(broker.port)
    # Fetch v13 exists in Kafka (topic ids) but is not served: UNSUPPORTED_VERSION
    # (the version is refused before the body is read, so none is sent)
    await conn.send(frame(header_v2(1, 13, 21)))
    response = await conn.response()
    correlation_id, tags = struct.unpack_from(">ib", response)
    assert (correlation_id, tags) == (21, 0)  # response header v1 (flexible)
    throttle, error = struct.unpack_from(">ih", response, 5)
    assert (throttle, error) == (0, 35)
    await conn.close()
    await assert_serves(broker.port)


async def test_oversized_frame_closes_only_that_connection(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    other = await Raw.connect(broker.port)
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(struct.pack(">i", 10 * 1024 * 1024) + struct.pack(">hh", 0, 9))
        assert await conn.closed()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "frame of 10485760 bytes (api key 0 v9) is outside the limit of 0..65536 bytes" in m
        for m in warnings
    ), warnings
    peer = f"127.0.0.1:{conn.writer.get_extra_info('sockname')[1]}"
    assert any(peer in m for m in warnings)
    await other.send(api_versions_request(0, 3))
    assert struct.unpack_from(">i", await other.response())[0] == 3
    await other.close()


async def test_negative_frame_size_closes(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(struct.pack(">i", -5))
        assert await conn.closed()
    assert any("frame of -5 bytes" in r.getMessage() for r in caplog.records)
    await assert_serves(broker.port)


async def test_garbage_frame_closes_with_warning(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(frame(b"\xff\x01\x02"))
        assert await conn.closed()
    assert any("undecodable request header" in r.getMessage() for r in caplog.records), caplog.text
    await assert_serves(broker.port)


async def test_malformed_body_closes_with_warning_naming_api(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        # Metadata v1 claiming 5 topics, then nothing
        await conn.send(frame(header_v1(3, 1, 5) + struct.pack(">i", 5)))
        assert await conn.closed()
    messages = [r.getMessage() for r in caplog.records]
    assert any("api key 3 v1" in m and "malformed Metadata v1 request" in m for m in messages), (
        messages
    )
    await assert_serves(broker.port)


async def test_truncated_frame_is_logged_and_others_keep_working(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(struct.pack(">i", 100) + b"\x00\x03\x00\x01")
        await conn.close()
        await assert_serves(broker.port)
        for _ in range(1000):  # at least 20 s: the broker logs once it reads the EOF
            if any("middle of a frame" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    assert any(
        "closed in the middle of a frame (4 bytes of it read)" in r.getMessage()
        for r in caplog.records
    ), caplog.text


async def test_unknown_api_key_closes_with_warning(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(frame(header_v1(999, 0, 77)))
        assert await conn.closed()
    messages = [r.getMessage() for r in caplog.records]
    assert any("api key 999 v0" in m and "not served" in m for m in messages), messages
    await assert_serves(broker.port)


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_produce_v0_to_v2_is_refused_per_partition(
    broker: Broker, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    # acks=1, timeout, one topic "old" with partitions 0 and 3 (message set bytes: junk)
    body = struct.pack(">hii", 1, 1000, 1) + struct.pack(">h", 3) + b"old"
    body += struct.pack(">i", 2)
    body += struct.pack(">ii", 0, 4) + b"junk" + struct.pack(">ii", 3, 0)
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING):
        await conn.send(frame(header_v1(0, version, 31) + body))
        response = await conn.response()
    expected = struct.pack(">ii", 31, 1) + struct.pack(">h", 3) + b"old" + struct.pack(">i", 2)
    for index in (0, 3):
        expected += struct.pack(">ihq", index, 35, -1)
        if version >= 2:
            expected += struct.pack(">q", -1)
    if version >= 1:
        expected += struct.pack(">i", 0)
    assert response == expected
    assert any("message formats v0/v1 are not supported" in r.getMessage() for r in caplog.records)
    assert "old" not in broker.logs.topics
    await conn.send(api_versions_request(0, 32))  # the connection keeps working
    assert struct.unpack_from(">i", await conn.response())[0] == 32
    await conn.close()


async def test_produce_v2_with_acks_0_closes(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Raw.connect(broker.port)
    with caplog.at_level(logging.WARNING, logger="backbone.broker.server"):
        await conn.send(frame(header_v1(0, 2, 1) + struct.pack(">hii", 0, 1000, 0)))
        assert await conn.closed()
    assert any("acks=0 refused" in r.getMessage() for r in caplog.records), caplog.text


async def test_pipelined_requests_are_answered_in_order(broker: Broker) -> None:
    conn = await Raw.connect(broker.port)
    await broker.logs.create_topic("empty", 1)
    # Fetch v4 on the empty topic with max_wait 300 ms, between fast requests: its
    # answer comes late, but every response must still leave in request order.
    fetch_body = struct.pack(">iiiib", -1, 300, 1, 1 << 20, 0) + struct.pack(">i", 1)
    fetch_body += struct.pack(">h", 5) + b"empty" + struct.pack(">i", 1)
    fetch_body += struct.pack(">iqi", 0, 0, 1 << 20)
    payload = b""
    kinds = {}
    for correlation_id in range(1, 61):
        if correlation_id % 15 == 0:
            payload += frame(header_v1(1, 4, correlation_id) + fetch_body)
            kinds[correlation_id] = "fetch"
        elif correlation_id % 2:
            payload += metadata_request_v1(correlation_id, ["empty"])
            kinds[correlation_id] = "metadata"
        else:
            payload += api_versions_request(correlation_id % 5, correlation_id)
            kinds[correlation_id] = "api_versions"
    await conn.send(payload)
    seen = []
    for _ in range(60):
        body = await conn.response()
        seen.append(struct.unpack_from(">i", body)[0])
    assert seen == list(range(1, 61))
    await conn.close()


async def test_handler_bug_answers_unknown_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(
        ctx: RequestContext, request: DescribeClusterRequest
    ) -> DescribeClusterResponse:
        raise RuntimeError("boom in the handler")

    config = BrokerConfig(data_dir=tmp_path, port=0)
    handler = Handler(DescribeClusterRequest, DescribeClusterResponse, broken, 0, 1)
    async with Broker(config, handlers=[handler]) as running:
        conn = await Raw.connect(running.port)
        with caplog.at_level(logging.ERROR):
            # DescribeCluster v0 (flexible): include_cluster_authorized_operations=false
            await conn.send(frame(header_v2(60, 0, 9) + b"\x00\x00"))
            body = await conn.response()
        correlation_id, tags, throttle, error = struct.unpack_from(">ibih", body)
        assert (correlation_id, tags, throttle, error) == (9, 0, 0, -1)
        # error message: compact nullable string "boom in the handler"
        length, pos = uvarint(body, 11)
        assert body[pos : pos + length - 1] == b"boom in the handler"
        bug = [r for r in caplog.records if "bug: DescribeCluster v0" in r.getMessage()]
        assert bug and bug[0].exc_info is not None
        # the same connection and others keep working
        await conn.send(api_versions_request(1, 10))
        assert struct.unpack_from(">i", await conn.response())[0] == 10
        await assert_serves(running.port)
        await conn.close()


async def test_idle_connection_is_closed(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0, idle_timeout_s=0.3)
    async with Broker(config) as running:
        conn = await Raw.connect(running.port)
        await conn.send(api_versions_request(0, 1))
        await conn.response()
        assert await conn.closed(wait=5)


async def test_shutdown_answers_a_waiting_long_poll(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0)
    running = Broker(config)
    await running.__aenter__()
    try:
        await running.logs.create_topic("quiet", 1)
        conn = await Raw.connect(running.port)
        fetch_body = struct.pack(">iiiib", -1, 30_000, 1, 1 << 20, 0) + struct.pack(">i", 1)
        fetch_body += struct.pack(">h", 5) + b"quiet" + struct.pack(">i", 1)
        fetch_body += struct.pack(">iqi", 0, 0, 1 << 20)
        await conn.send(frame(header_v1(1, 4, 99) + fetch_body))
        answer = asyncio.ensure_future(conn.response(wait=30))
        await fetch_parked(running, "quiet", answer)  # the request is in flight
    finally:
        closing = asyncio.create_task(running.__aexit__(None, None, None))
    body = await asyncio.wait_for(answer, 5)  # answered at shutdown, not at max_wait (30 s)
    assert struct.unpack_from(">i", body)[0] == 99
    assert await conn.closed(wait=5)
    await asyncio.wait_for(closing, 10)


# ---------------------------------------------------------------- error paths of the handlers
# Requests built with the codec's message classes; the answers' error codes and messages are
# what clients show their users.

from backbone.broker import protocol as kp  # noqa: E402


async def call(port: int, request: object, version: int) -> object:
    """Send one typed request, return the decoded response."""
    api_key = type(request).api_key
    header = kp.RequestHeader(api_key, version, 1, "errors-test")
    conn = await Raw.connect(port)
    try:
        await conn.send(frame(kp.encode_request_header(header) + request.encode(version)))
        body = await conn.response()
    finally:
        await conn.close()
    _, pos = kp.read_response_header(body, kp.response_header_version(api_key, version))
    response, end = kp.RESPONSES[api_key].decode(memoryview(body), pos, version)
    assert end == len(body)
    return response


async def test_create_topics_errors(broker: Broker) -> None:
    topic = kp.CreateTopicsRequest.CreatableTopic
    request = kp.CreateTopicsRequest(
        topics=[
            topic(name="ok", num_partitions=2, replication_factor=1),
            topic(name="replicated", num_partitions=1, replication_factor=3),
            topic(name="bad/name", num_partitions=1, replication_factor=1),
            topic(name="zero", num_partitions=0, replication_factor=1),
            topic(
                name="badconf",
                num_partitions=1,
                replication_factor=1,
                configs=[
                    kp.CreateTopicsRequest.CreatableTopicConfig(name="retention.ms", value="x")
                ],
            ),
        ],
        timeout_ms=1000,
    )
    response = await call(broker.port, request, 7)
    results = {t.name: (t.error_code, t.error_message) for t in response.topics}
    assert results["ok"][0] == 0
    assert results["replicated"] == (
        38,
        "replication factor 3 is not possible on a single broker: use 1 (or -1 for the default)",
    )
    assert results["bad/name"][0] == 17
    assert results["zero"] == (37, "num_partitions must be at least 1 (got 0)")
    assert results["badconf"][0] == 40
    again = await call(broker.port, request, 7)
    assert {t.name: t.error_code for t in again.topics}["ok"] == 36


async def test_produce_and_fetch_errors(broker: Broker) -> None:
    await broker.logs.create_topic("one", 1)
    produce = kp.ProduceRequest(
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            kp.ProduceRequest.TopicProduceData(
                name="one",
                partition_data=[
                    kp.ProduceRequest.PartitionProduceData(index=5, records=b""),
                    kp.ProduceRequest.PartitionProduceData(index=0, records=b"\x00" * 70),
                ],
            )
        ],
    )
    response = await call(broker.port, produce, 9)
    codes = {p.index: p.error_code for p in response.responses[0].partition_responses}
    assert codes == {5: 3, 0: 2}  # unknown partition; corrupt record batch
    bad_acks = await call(broker.port, kp.ProduceRequest(acks=2, topic_data=produce.topic_data), 9)
    assert {p.error_code for p in bad_acks.responses[0].partition_responses} == {21}

    fetch = kp.FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            kp.FetchRequest.FetchTopic(
                topic="one",
                partitions=[
                    kp.FetchRequest.FetchPartition(
                        partition=0, fetch_offset=42, partition_max_bytes=1 << 20
                    )
                ],
            ),
            kp.FetchRequest.FetchTopic(
                topic="missing",
                partitions=[
                    kp.FetchRequest.FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                    )
                ],
            ),
        ],
    )
    response = await call(broker.port, fetch, 12)
    by_topic = {t.topic: t.partitions[0] for t in response.responses}
    assert (by_topic["one"].error_code, by_topic["one"].high_watermark) == (1, 0)
    assert by_topic["missing"].error_code == 3


async def test_init_producer_id_refuses_transactions(broker: Broker) -> None:
    response = await call(
        broker.port, kp.InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=1), 4
    )
    assert (response.error_code, response.producer_id) == (42, -1)
    first = await call(
        broker.port, kp.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1), 0
    )
    second = await call(
        broker.port, kp.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1), 4
    )
    assert first.error_code == second.error_code == 0
    assert second.producer_id > first.producer_id >= 0


async def test_metadata_without_auto_create(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, port=0, auto_create_topics=False)
    async with Broker(config) as running:
        request = kp.MetadataRequest(
            topics=[kp.MetadataRequest.MetadataRequestTopic(name="nope")],
            allow_auto_topic_creation=True,
        )
        response = await call(running.port, request, 12)
        assert [(t.name, t.error_code) for t in response.topics] == [("nope", 3)]
        assert "nope" not in running.logs.topics
        assert response.brokers[0].port == running.port


async def test_configs_errors(broker: Broker) -> None:
    resource = kp.DescribeConfigsRequest.DescribeConfigsResource
    described = await call(
        broker.port,
        kp.DescribeConfigsRequest(
            resources=[resource(resource_type=2, resource_name="ghost", configuration_keys=None)]
        ),
        4,
    )
    assert described.results[0].error_code == 3
    await broker.logs.create_topic("cfg", 1)
    alter = kp.IncrementalAlterConfigsRequest(
        resources=[
            kp.IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=2,
                resource_name="cfg",
                configs=[
                    kp.IncrementalAlterConfigsRequest.AlterableConfig(
                        name="cleanup.policy", config_operation=0, value="shred"
                    )
                ],
            )
        ]
    )
    response = await call(broker.port, alter, 1)
    assert response.responses[0].error_code == 40
    assert "cleanup.policy" in response.responses[0].error_message
    broker_alter = kp.AlterConfigsRequest(
        resources=[kp.AlterConfigsRequest.AlterConfigsResource(resource_type=4, resource_name="0")]
    )
    response = await call(broker.port, broker_alter, 2)
    assert (response.responses[0].error_code, response.responses[0].error_message) == (
        42,
        "broker configs are static: set them when starting the broker",
    )


async def test_random_frames_never_take_the_broker_down(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    rng = random.Random(20240601)
    for _ in range(200):
        size = rng.randint(0, 120)
        body = bytes(rng.getrandbits(8) for _ in range(size))
        if rng.random() < 0.7:
            # a valid header (served api key and version) followed by a random body
            key = rng.choice(sorted(EXPECTED))
            version = rng.randint(*EXPECTED[key])
            if key == 0 and version < 3:
                version = 3
            header = kp.RequestHeader(key, version, 1, "fuzz")
            body = kp.encode_request_header(header) + body
        conn = await Raw.connect(broker.port)
        await conn.send(frame(body))
        try:
            async with asyncio.timeout(5):
                await conn.reader.read(1 << 16)  # a response or EOF: either is fine
        finally:
            await conn.close()
    await assert_serves(broker.port)
    bugs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bugs, bugs


async def test_a_thousand_pipelined_requests_and_a_big_frame_in_odd_pieces(
    tmp_path: Path,
) -> None:
    """More requests in one write than the connection queues (reading pauses and resumes),
    then a 3 MiB frame sent in odd-sized pieces followed by a small frame: every response
    arrives, in request order."""
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
        await _pipeline_and_big_frame(broker.port)


async def _pipeline_and_big_frame(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        count = 1000
        writer.write(b"".join(api_versions_request(i % 4, i) for i in range(count)))
        await writer.drain()
        for i in range(count):
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 10))[0]
            body = await reader.readexactly(size)
            assert struct.unpack_from(">i", body)[0] == i
        data = frame(header_v1(18, 0, 7777) + b"\x00" * (3 << 20)) + api_versions_request(1, 8888)
        for start in range(0, len(data), 70001):
            writer.write(data[start : start + 70001])
            await writer.drain()
        got = []
        for _ in range(2):
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 10))[0]
            body = await reader.readexactly(size)
            got.append(struct.unpack_from(">i", body)[0])
        assert got == [7777, 8888]
    finally:
        writer.close()
