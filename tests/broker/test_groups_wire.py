"""Group APIs on the wire, version by version (raw socket + the codec as the client).

Covers what the client libraries do not reach: every offered version's shape, error
codes of the handlers, the member-id-required round, DescribeGroups authorized
operations, OffsetFetch null topics and the v8 multi-group form, FindCoordinator keys.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backbone.broker import Broker
from backbone.broker.protocol import (
    REQUESTS,
    RESPONSES,
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    FindCoordinatorRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    RequestHeader,
    SyncGroupRequest,
    encode_request_header,
    read_response_header,
    response_header_version,
)

pytestmark = pytest.mark.timeout(60)

INT32_MIN = -2147483648


class Client:
    """One connection speaking raw Kafka requests through the codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.correlation_id = 0

    async def send(self, request: Any, version: int) -> Any:
        self.correlation_id += 1
        header = RequestHeader(request.api_key, version, self.correlation_id, "wire-test")
        payload = encode_request_header(header) + request.encode(version)
        self.writer.write(struct.pack(">i", len(payload)) + payload)
        await self.writer.drain()
        (size,) = struct.unpack(">i", await self.reader.readexactly(4))
        frame = await self.reader.readexactly(size)
        cid, pos = read_response_header(frame, response_header_version(request.api_key, version))
        assert cid == self.correlation_id
        response, end = RESPONSES[request.api_key].decode(memoryview(frame), pos, version)
        assert end == len(frame)
        return response


@pytest.fixture
def broker_topics() -> dict[str, int]:
    return {"t": 2}


@pytest.fixture
async def client(broker: Broker) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def join_request(member_id: str = "", group: str = "g", instance: str | None = None) -> Any:
    return JoinGroupRequest(
        group_id=group,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000,
        member_id=member_id,
        group_instance_id=instance,
        protocol_type="consumer",
        protocols=[
            JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=subscription("t"))
        ],
    )


async def joined_member(client: Client, version: int = 5, group: str = "g") -> Any:
    first = await client.send(join_request(group=group), version)
    if version >= 4:
        assert first.error_code == 79 and first.member_id
        first = await client.send(join_request(first.member_id, group=group), version)
    assert first.error_code == 0
    sync = await client.send(
        SyncGroupRequest(
            group_id=group,
            generation_id=first.generation_id,
            member_id=first.member_id,
            assignments=[
                SyncGroupRequest.SyncGroupRequestAssignment(
                    member_id=first.member_id, assignment=b"assignment-bytes"
                )
            ],
        ),
        min(version, 3),
    )
    assert sync.error_code == 0 and sync.assignment == b"assignment-bytes"
    return first


def test_offered_versions_are_decodable() -> None:
    from backbone.broker.handlers import group_offsets, groups

    handlers = groups.HANDLERS + group_offsets.HANDLERS
    assert len(handlers) == 11
    for handler in handlers:
        assert handler.request is REQUESTS[handler.api_key]
        assert handler.request.min_version <= handler.min_version
        assert handler.max_version <= handler.request.max_version


NO_TRANSACTIONS = (
    "Transactions are not supported by this broker, so transactional id '{}' has no "
    "coordinator; produce without transactional.id (idempotent producers are supported)."
)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 5])
async def test_find_coordinator(client: Client, broker: Broker, version: int) -> None:
    if version >= 4:
        request = FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"])
        response = await client.send(request, version)
        assert [(c.key, c.node_id, c.port, c.error_code) for c in response.coordinators] == [
            ("a", 0, broker.port, 0),
            ("b", 0, broker.port, 0),
        ]
        txn = await client.send(FindCoordinatorRequest(key_type=1, coordinator_keys=["x"]), version)
        assert (txn.coordinators[0].error_code, txn.coordinators[0].node_id) == (35, -1)
        assert txn.coordinators[0].error_message == NO_TRANSACTIONS.format("x")
        return
    response = await client.send(FindCoordinatorRequest(key="g"), version)
    assert (response.error_code, response.node_id, response.host, response.port) == (
        0,
        0,
        "127.0.0.1",
        broker.port,
    )
    if version >= 1:
        txn = await client.send(FindCoordinatorRequest(key="tx", key_type=1), version)
        assert (txn.error_code, txn.node_id) == (35, -1)  # UNSUPPORTED_VERSION: not retried
        assert txn.error_message == NO_TRANSACTIONS.format("tx")


@pytest.mark.parametrize("version", [0, 1, 2, 3])
async def test_join_sync_heartbeat_leave_before_member_id_required(
    client: Client, version: int
) -> None:
    joined = await joined_member(client, version)
    assert joined.generation_id == 1 and joined.leader == joined.member_id
    assert [m.metadata for m in joined.members] == [subscription("t")]
    hb = await client.send(
        HeartbeatRequest(group_id="g", generation_id=1, member_id=joined.member_id), min(version, 2)
    )
    assert hb.error_code == 0
    stale = await client.send(
        HeartbeatRequest(group_id="g", generation_id=5, member_id=joined.member_id), 0
    )
    assert stale.error_code == 22
    leave = await client.send(
        LeaveGroupRequest(group_id="g", member_id=joined.member_id), min(version, 2)
    )
    assert leave.error_code == 0
    again = await client.send(LeaveGroupRequest(group_id="g", member_id=joined.member_id), 0)
    assert again.error_code == 25


@pytest.mark.parametrize("version", [4, 5, 6, 7, 8, 9])
async def test_join_member_id_required_round(client: Client, broker: Broker, version: int) -> None:
    first = await client.send(join_request(), version)
    assert first.error_code == 79
    assert first.member_id.startswith("wire-test-")
    assert first.generation_id == -1
    assert broker.groups.describe_group("g").members == []
    joined = await client.send(join_request(first.member_id), version)
    assert joined.error_code == 0 and joined.member_id == first.member_id
    assert joined.protocol_name == "range"
    if version >= 7:
        assert joined.protocol_type == "consumer"
    unknown = await client.send(join_request("not-a-member"), version)
    assert (unknown.error_code, unknown.member_id) == (25, "not-a-member")


async def test_join_errors(client: Client) -> None:
    bad = join_request(group="")
    assert (await client.send(bad, 5)).error_code == 24
    short = join_request()
    short.session_timeout_ms = 5
    assert (await client.send(short, 5)).error_code == 26
    await joined_member(client)
    other = join_request()
    other.protocol_type = "connect"
    assert (await client.send(other, 5)).error_code == 23


async def test_static_member_over_the_wire(client: Client) -> None:
    first = await client.send(join_request(instance="pod-1"), 5)
    assert first.error_code == 0  # static members skip the member-id round
    sync = await client.send(
        SyncGroupRequest(
            group_id="g",
            generation_id=1,
            member_id=first.member_id,
            group_instance_id="pod-1",
            assignments=[],
        ),
        3,
    )
    assert sync.error_code == 0
    second = await client.send(join_request(instance="pod-1"), 5)
    assert second.error_code == 0 and second.member_id != first.member_id
    fenced = await client.send(
        HeartbeatRequest(
            group_id="g", generation_id=1, member_id=first.member_id, group_instance_id="pod-1"
        ),
        3,
    )
    assert fenced.error_code == 82
    leave = await client.send(
        LeaveGroupRequest(
            group_id="g",
            members=[
                LeaveGroupRequest.MemberIdentity(member_id="", group_instance_id="pod-1"),
                LeaveGroupRequest.MemberIdentity(member_id="ghost", group_instance_id=None),
            ],
        ),
        5,
    )
    assert leave.error_code == 0
    assert [(m.group_instance_id, m.error_code) for m in leave.members] == [
        ("pod-1", 0),
        (None, 25),
    ]


@pytest.mark.parametrize("version", [0, 3, 4, 5, 6])
async def test_describe_groups(client: Client, version: int) -> None:
    joined = await joined_member(client)
    response = await client.send(DescribeGroupsRequest(groups=["g", "missing"]), version)
    group, missing = response.groups
    assert (group.error_code, group.group_state, group.protocol_type, group.protocol_data) == (
        0,
        "Stable",
        "consumer",
        "range",
    )
    [member] = group.members
    assert member.member_id == joined.member_id
    assert (member.client_id, member.client_host) == ("wire-test", "/127.0.0.1")
    assert member.member_metadata == subscription("t")
    assert member.member_assignment == b"assignment-bytes"
    if version >= 3:
        assert group.authorized_operations == INT32_MIN
        with_ops = await client.send(
            DescribeGroupsRequest(groups=["g"], include_authorized_operations=True), version
        )
        assert with_ops.groups[0].authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)
    if version >= 6:
        assert (missing.error_code, missing.group_state) == (69, "Dead")
    else:
        assert (missing.error_code, missing.group_state, missing.members) == (0, "Dead", [])


@pytest.mark.parametrize("version", [0, 3, 4, 5])
async def test_list_groups(client: Client, version: int) -> None:
    await joined_member(client)
    await joined_member(client, group="h")
    await client.send(
        LeaveGroupRequest(
            group_id="h2", member_id=(await joined_member(client, group="h2")).member_id
        ),
        0,
    )
    response = await client.send(ListGroupsRequest(), version)
    assert sorted(
        (g.group_id, g.group_state if version >= 4 else "") for g in response.groups
    ) == sorted(
        [
            (gid, state if version >= 4 else "")
            for gid, state in [("g", "Stable"), ("h", "Stable"), ("h2", "Empty")]
        ]
    )
    if version >= 4:
        empty = await client.send(ListGroupsRequest(states_filter=["empty"]), version)
        assert [g.group_id for g in empty.groups] == ["h2"]
        unknown = await client.send(ListGroupsRequest(states_filter=["Nope"]), version)
        assert unknown.groups == []
    if version >= 5:
        consumer = await client.send(ListGroupsRequest(types_filter=["consumer"]), version)
        assert consumer.groups == []
        classic = await client.send(ListGroupsRequest(types_filter=["Classic"]), version)
        assert {g.group_type for g in classic.groups} == {"classic"}


@pytest.mark.parametrize("version", [2, 5, 6, 7, 8])
async def test_offset_commit_and_fetch(client: Client, version: int) -> None:
    joined = await joined_member(client)
    commit = OffsetCommitRequest(
        group_id="g",
        generation_id_or_member_epoch=joined.generation_id,
        member_id=joined.member_id,
        topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(
                name="t",
                partitions=[
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=0,
                        committed_offset=12,
                        committed_leader_epoch=0,
                        committed_metadata="m",
                    ),
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=9, committed_offset=1
                    ),
                ],
            ),
            OffsetCommitRequest.OffsetCommitRequestTopic(
                name="nope",
                partitions=[OffsetCommitRequest.OffsetCommitRequestPartition(partition_index=0)],
            ),
        ],
    )
    response = await client.send(commit, version)
    assert [
        (t.name, p.partition_index, p.error_code) for t in response.topics for p in t.partitions
    ] == [("t", 0, 0), ("t", 9, 3), ("nope", 0, 3)]
    stale = commit
    stale.generation_id_or_member_epoch = 7
    stale.topics = stale.topics[:1]
    stale_response = await client.send(stale, version)
    assert [p.error_code for p in stale_response.topics[0].partitions] == [22, 3]

    fetch_versions = [1, 2, 5, 7] if version < 8 else [8]
    for fv in fetch_versions:
        if fv >= 8:
            request = OffsetFetchRequest(
                groups=[
                    OffsetFetchRequest.OffsetFetchRequestGroup(group_id="g", topics=None),
                    OffsetFetchRequest.OffsetFetchRequestGroup(
                        group_id="other",
                        topics=[
                            OffsetFetchRequest.OffsetFetchRequestTopics(
                                name="t", partition_indexes=[0]
                            )
                        ],
                    ),
                ]
            )
            fetched = await client.send(request, fv)
            g, other = fetched.groups
            assert [
                (
                    t.name,
                    [(p.partition_index, p.committed_offset, p.metadata) for p in t.partitions],
                )
                for t in g.topics
            ] == [("t", [(0, 12, "m")])]
            assert other.topics[0].partitions[0].committed_offset == -1
            continue
        listed = await client.send(
            OffsetFetchRequest(
                group_id="g",
                topics=[
                    OffsetFetchRequest.OffsetFetchRequestTopic(name="t", partition_indexes=[0, 1])
                ],
            ),
            fv,
        )
        assert [
            (p.partition_index, p.committed_offset, p.metadata, p.error_code)
            for p in listed.topics[0].partitions
        ] == [(0, 12, "m", 0), (1, -1, "", 0)]
        if fv >= 5:  # the epoch travels in OffsetCommit v6+
            epoch = listed.topics[0].partitions[0].committed_leader_epoch
            assert epoch == (0 if version >= 6 else -1)
        if fv >= 2:
            everything = await client.send(OffsetFetchRequest(group_id="g", topics=None), fv)
            assert [
                (t.name, [p.partition_index for p in t.partitions]) for t in everything.topics
            ] == [("t", [0])]


async def test_offset_delete_and_delete_groups(client: Client, broker: Broker) -> None:
    joined = await joined_member(client)
    await client.send(
        OffsetCommitRequest(
            group_id="g",
            generation_id_or_member_epoch=1,
            member_id=joined.member_id,
            topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(
                    name="t",
                    partitions=[
                        OffsetCommitRequest.OffsetCommitRequestPartition(
                            partition_index=p, committed_offset=3
                        )
                        for p in (0, 1)
                    ],
                )
            ],
        ),
        2,
    )
    delete = OffsetDeleteRequest(
        group_id="g",
        topics=[
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                name="t",
                partitions=[OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=0)],
            )
        ],
    )
    subscribed = await client.send(delete, 0)
    assert subscribed.error_code == 0
    assert subscribed.topics[0].partitions[0].error_code == 86
    missing = await client.send(OffsetDeleteRequest(group_id="nope", topics=delete.topics), 0)
    assert missing.error_code == 69
    non_empty = await client.send(DeleteGroupsRequest(groups_names=["g", "nope"]), 2)
    assert [(r.group_id, r.error_code) for r in non_empty.results] == [("g", 68), ("nope", 69)]
    await client.send(LeaveGroupRequest(group_id="g", member_id=joined.member_id), 1)
    deleted_offset = await client.send(delete, 0)
    assert deleted_offset.topics[0].partitions[0].error_code == 0
    assert [c.partition for c in broker.groups.fetch_offsets("g", None)] == [1]
    gone = await client.send(DeleteGroupsRequest(groups_names=["g"]), 0)
    assert gone.results[0].error_code == 0
    assert broker.groups.fetch_offsets("g", None) == []
