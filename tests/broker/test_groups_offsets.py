"""Committed offsets: validation, OffsetFetch/OffsetDelete/DeleteGroups, durability in the
``__consumer_offsets`` topic (real files), and the migration of an old offsets.log."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import struct
from pathlib import Path

import pytest

from backbone.broker.errors import (
    GroupIdNotFound,
    GroupSubscribedToTopic,
    IllegalGeneration,
    InvalidGroupId,
    NonEmptyGroup,
    OffsetMetadataTooLarge,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups import (
    CommittedOffset,
    GroupCoordinator,
    GroupState,
    ManualClock,
    MemberIdentity,
    OffsetCommit,
)
from backbone.broker.groups.legacy import encode_frame
from backbone.broker.log import LogManager
from tests.broker.groups_on_disk import coordinator_on_disk, coordinator_on_disk_of

G = "g1"


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def coordinator(tmp_path: Path, **options):
    return coordinator_on_disk(tmp_path, initial_rebalance_delay_ms=0, **options)


async def one_member_group(c: GroupCoordinator, *topics: str) -> str:
    """A Stable group with one member subscribed to ``topics``; returns its member id."""
    joined = await asyncio.wait_for(
        c.join_group(
            G,
            "",
            protocol_type="consumer",
            protocols=[("range", subscription(*topics))],
            session_timeout_ms=10_000,
            rebalance_timeout_ms=10_000,
            require_known_member_id=False,
        ),
        5,
    )
    await asyncio.wait_for(
        c.sync_group(G, joined.generation_id, joined.member_id, assignments={}), 5
    )
    return joined.member_id


async def test_simple_commit_and_fetch(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        results = await c.commit_offsets(
            G, -1, "", [OffsetCommit("t", 0, 42, 3, "meta"), OffsetCommit("t", 1, 7, -1, None)]
        )
        assert results == [None, None]
        assert c.groups[G].state is GroupState.EMPTY
        assert c.fetch_offsets(G, [("t", 0), ("t", 1), ("t", 2), ("u", 0)]) == [
            CommittedOffset("t", 0, 42, 3, "meta"),
            CommittedOffset("t", 1, 7, -1, ""),
            CommittedOffset("t", 2, -1),
            CommittedOffset("u", 0, -1),
        ]
        assert [(o.topic, o.partition, o.offset) for o in c.fetch_offsets(G, None)] == [
            ("t", 0, 42),
            ("t", 1, 7),
        ]
        assert c.fetch_offsets("nobody", None) == []
        assert c.fetch_offsets("nobody", [("t", 0)]) == [CommittedOffset("t", 0, -1)]
        listing = c.list_groups()
        assert [(g.group_id, g.protocol_type, g.state) for g in listing] == [(G, "", "Empty")]


async def test_commit_validation(tmp_path: Path) -> None:
    async with coordinator(tmp_path, offset_metadata_max_bytes=10) as c:
        with pytest.raises(IllegalGeneration, match="Group 'g1' does not exist"):
            await c.commit_offsets(G, 3, "m", [OffsetCommit("t", 0, 1)])
        member = await one_member_group(c, "t")
        with pytest.raises(UnknownMemberId, match="only its members may commit"):
            await c.commit_offsets(G, -1, "", [OffsetCommit("t", 0, 1)])
        with pytest.raises(
            IllegalGeneration,
            match=re.escape("Generation 9 of group 'g1' is not the current one (1); rejoin."),
        ):
            await c.commit_offsets(G, 9, member, [OffsetCommit("t", 0, 1)])
        with pytest.raises(
            UnknownMemberId, match=re.escape("Member 'ghost' is not in group 'g1'; rejoin.")
        ):
            await c.commit_offsets(G, 1, "ghost", [OffsetCommit("t", 0, 1)])
        results = await c.commit_offsets(
            G, 1, member, [OffsetCommit("t", 0, 5), OffsetCommit("t", 1, 6, metadata="x" * 11)]
        )
        assert results[0] is None
        assert isinstance(results[1], OffsetMetadataTooLarge)
        assert str(results[1]) == "The metadata of t-1 is 11 bytes; the maximum is 10."
        assert c.fetch_offsets(G, [("t", 0), ("t", 1)])[1].offset == -1
        # a second member joins: while CompletingRebalance the old generation may not commit
        join2 = asyncio.ensure_future(
            c.join_group(
                G,
                "",
                protocol_type="consumer",
                protocols=[("range", subscription("t"))],
                session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000,
                require_known_member_id=False,
            )
        )
        await asyncio.sleep(0)
        # PreparingRebalance: commits of the current generation are still accepted
        assert await c.commit_offsets(G, 1, member, [OffsetCommit("t", 0, 8)]) == [None]
        rejoin = asyncio.ensure_future(
            c.join_group(
                G,
                member,
                protocol_type="consumer",
                protocols=[("range", subscription("t"))],
                session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000,
            )
        )
        await asyncio.wait_for(asyncio.gather(join2, rejoin), 5)
        assert c.groups[G].state is GroupState.COMPLETING_REBALANCE
        with pytest.raises(
            RebalanceInProgress, match=re.escape("Group 'g1' is rebalancing; rejoin.")
        ):
            await c.commit_offsets(G, 2, member, [OffsetCommit("t", 0, 9)])
        assert c.fetch_offsets(G, [("t", 0)])[0].offset == 8


async def test_offset_delete(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        with pytest.raises(GroupIdNotFound, match=r"Group 'g1' does not exist\."):
            await c.delete_offsets(G, [("t", 0)])
        with pytest.raises(InvalidGroupId, match=re.escape("The group id must not be empty.")):
            await c.delete_offsets("", [("t", 0)])
        member = await one_member_group(c, "t")
        await c.commit_offsets(G, 1, member, [OffsetCommit("t", 0, 1), OffsetCommit("old", 0, 2)])
        results = await c.delete_offsets(G, [("t", 0), ("old", 0)])
        assert isinstance(results[0], GroupSubscribedToTopic)
        assert results[1] is None
        assert [(o.topic, o.offset) for o in c.fetch_offsets(G, None)] == [("t", 1)]
        assert c.leave_group(G, [MemberIdentity(member)]) == [None]
        assert await c.delete_offsets(G, [("t", 0)]) == [None]
        assert c.fetch_offsets(G, None) == []


async def test_offset_delete_in_active_non_consumer_group(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        await asyncio.wait_for(
            c.join_group(
                G,
                "",
                protocol_type="connect",
                protocols=[("default", b"")],
                session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000,
                require_known_member_id=False,
            ),
            5,
        )
        with pytest.raises(NonEmptyGroup, match="not a consumer group"):
            await c.delete_offsets(G, [("t", 0)])


async def test_delete_groups(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        member = await one_member_group(c, "t")
        await c.commit_offsets("simple", -1, "", [OffsetCommit("t", 0, 1)])
        results = await c.delete_groups([G, "simple", "nope"])
        assert isinstance(results[0], NonEmptyGroup)
        assert str(results[0]) == (
            "Group 'g1' still has 1 members (Stable); stop its consumers first."
        )
        assert results[1] is None
        assert isinstance(results[2], GroupIdNotFound)
        assert not c.group_exists("simple")
        assert c.fetch_offsets("simple", None) == []
        c.leave_group(G, [MemberIdentity(member)])
        assert await c.delete_groups([G]) == [None]
        assert c.describe_group(G).state == "Dead"
    async with coordinator(tmp_path) as c:
        assert c.list_groups() == []


async def test_offsets_survive_restart(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        member = await one_member_group(c, "t")
        await c.commit_offsets(G, 1, member, [OffsetCommit("t", 0, 10, 2, "a")])
        await c.commit_offsets(G, 1, member, [OffsetCommit("t", 0, 11, 2, "b")])
        await c.commit_offsets("other", -1, "", [OffsetCommit("u", 3, 99)])
        await c.commit_offsets("other", -1, "", [OffsetCommit("gone", 0, 5)])
        await c.delete_offsets("other", [("u", 3)])
        await c.drop_topic("gone")
    assert (tmp_path / "__consumer_offsets-0" / "00000000000000000000.log").stat().st_size > 0
    async with coordinator(tmp_path) as c:
        assert c.fetch_offsets(G, None) == [CommittedOffset("t", 0, 11, 2, "b")]
        assert c.fetch_offsets("other", None) == []
        group = c.groups[G]
        # the group metadata came back: same generation, member and assignment
        assert group.state is GroupState.STABLE and group.generation_id == 1
        assert list(group.members) == [member]
        c.heartbeat(G, 1, member)
        desc = c.describe_group(G)
        assert desc.members[0].metadata == subscription("t")
        # a restored member that never heartbeats is removed after its session timeout
        assert isinstance(c.clock, ManualClock)
        c.clock.advance(10.0)
        assert group.members == {} and group.state is GroupState.EMPTY


async def test_concurrent_commits_are_all_durable(tmp_path: Path) -> None:
    async with coordinator(tmp_path) as c:
        await asyncio.gather(
            *(c.commit_offsets(G, -1, "", [OffsetCommit("t", p, p * 10)]) for p in range(50))
        )
    async with coordinator(tmp_path) as c:
        assert [o.offset for o in c.fetch_offsets(G, None)] == [p * 10 for p in range(50)]


async def test_the_offsets_topic_is_compacted(tmp_path: Path) -> None:
    async with (
        LogManager(tmp_path, cleaner_interval_s=3600) as logs,
        coordinator_on_disk_of(logs, tmp_path) as c,
    ):
        for i in range(300):
            await c.commit_offsets(G, -1, "", [OffsetCommit("t", i % 3, i)])
        log = logs.partition("__consumer_offsets", 0)
        assert log.high_watermark == 300
        log.roll()
        assert await logs.clean() == 1
        kept = [b for s in log.segments for b in s.headers_from(0)]
        assert sum(h.records_count for h in kept) == 3
    async with coordinator(tmp_path) as c:
        assert [o.offset for o in c.fetch_offsets(G, None)] == [297, 298, 299]


def old_offsets_log(directory: Path, *records: dict, tail: bytes = b"") -> Path:
    """An offsets.log as Backbone before 0.2 wrote it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "offsets.log"
    path.write_bytes(b"".join(encode_frame(r) for r in records) + tail)
    return path


MEMBER = {
    "member_id": "m-1",
    "group_instance_id": "sink-a",
    "client_id": "c",
    "client_host": "/127.0.0.1",
    "session_timeout_ms": 10_000,
    "rebalance_timeout_ms": 20_000,
    "metadata": base64.b64encode(subscription("t")).decode(),
    "assignment": "YXNzaWdu",
}


async def test_an_old_offsets_log_is_migrated_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torn = encode_frame({"type": "offsets", "group": G, "offsets": [["t", 0, 999, -1, ""]]})
    path = old_offsets_log(
        tmp_path / "__consumer_offsets",
        {"type": "offsets", "group": G, "offsets": [["t", 0, 10, 2, "a"], ["t", 1, 5, -1, ""]]},
        {"type": "offsets", "group": G, "offsets": [["t", 0, 11, 2, "b"]]},
        {
            "type": "group", "group": G, "generation": 4, "protocol_type": "consumer",
            "protocol_name": "range", "leader": "m-1", "members": [MEMBER],
        },
        {"type": "offsets", "group": "gone", "offsets": [["t", 0, 1, -1, ""]]},
        {"type": "group_delete", "group": "gone"},
        {"type": "offsets", "group": "other",
         "offsets": [["u", 0, 7, -1, ""], ["x", 0, 8, -1, ""]]},
        {"type": "offset_delete", "group": "other", "partitions": [["u", 0]]},
        {"type": "topic_delete", "topic": "x"},
        tail=torn[:-3],  # a frame cut short by a crash: never acknowledged
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="backbone.broker.groups")
    for _ in range(2):  # the second start reads the topic only
        async with coordinator(tmp_path) as c:
            assert c.fetch_offsets(G, None) == [
                CommittedOffset("t", 0, 11, 2, "b"),
                CommittedOffset("t", 1, 5, -1, ""),
            ]
            assert c.fetch_offsets("other", None) == [] and not c.group_exists("gone")
            group = c.groups[G]
            assert (group.generation_id, group.protocol_name, group.leader_id) == (
                4,
                "range",
                "m-1",
            )
            assert group.static_members == {"sink-a": "m-1"}
            assert group.members["m-1"].assignment == b"assign"
            assert c.describe_group(G).members[0].metadata == subscription("t")
    assert not path.exists() and path.with_name("offsets.log.migrated").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("corrupt or torn tail" in m for m in messages) == 1
    assert sum(m.startswith("Migrated 1 groups and 2 committed offsets") for m in messages) == 1


async def test_a_crash_before_the_old_file_is_renamed_migrates_it_again(tmp_path: Path) -> None:
    """The topic may already hold part of the old state; applying the file again on top
    gives the same state."""
    record = {"type": "offsets", "group": G, "offsets": [["t", 0, 42, -1, ""]]}
    path = old_offsets_log(tmp_path / "__consumer_offsets", record)
    async with coordinator(tmp_path) as c:
        assert c.fetch_offsets(G, [("t", 0)])[0].offset == 42
        await c.commit_offsets(G, -1, "", [OffsetCommit("t", 1, 43)])
    path.with_name("offsets.log.migrated").rename(path)  # as if the rename was lost
    async with coordinator(tmp_path) as c:
        assert [o.offset for o in c.fetch_offsets(G, None)] == [42, 43]
