"""Group membership unit tests: the coordinator with a ManualClock (no sleeping, real files)."""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import pytest

from backbone.broker.errors import (
    FencedInstanceId,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    InvalidSessionTimeout,
    MemberIdRequired,
    NotCoordinator,
    RebalanceInProgress,
    UnknownMemberId,
)
from backbone.broker.groups import (
    GroupCoordinator,
    GroupState,
    IllegalStateTransition,
    ManualClock,
    MemberIdentity,
)
from backbone.broker.groups.group import Group, parse_subscribed_topics
from tests.broker.groups_on_disk import coordinator_on_disk

G = "g1"
SESSION_MS = 10_000
REBALANCE_MS = 30_000
DELAY_MS = 100


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0 (version, topics, user data null)."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


@pytest.fixture
async def coord(tmp_path: Path):
    async with coordinator_on_disk(tmp_path, initial_rebalance_delay_ms=DELAY_MS) as coordinator:
        yield coordinator


def clock(c: GroupCoordinator) -> ManualClock:
    assert isinstance(c.clock, ManualClock)
    return c.clock


def join(
    c: GroupCoordinator,
    member_id: str = "",
    *,
    protocols: list[tuple[str, bytes]] | None = None,
    protocol_type: str = "consumer",
    instance: str | None = None,
    v4: bool = False,
    session_ms: int = SESSION_MS,
    client_id: str = "client",
) -> asyncio.Task:
    return asyncio.ensure_future(
        c.join_group(
            G,
            member_id,
            protocol_type=protocol_type,
            protocols=protocols if protocols is not None else [("range", subscription("t"))],
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=REBALANCE_MS,
            group_instance_id=instance,
            client_id=client_id,
            client_host="/127.0.0.1",
            require_known_member_id=v4,
        )
    )


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def done(task: asyncio.Task):
    return await asyncio.wait_for(task, 5)


async def first_join(c: GroupCoordinator, *tasks: asyncio.Task) -> list:
    """Let joins into an Empty group through the initial rebalance delay."""
    for _ in range(5):  # each delay is extended once while new members keep arriving
        await settle()
        if all(t.done() for t in tasks):
            break
        clock(c).advance(DELAY_MS / 1000)
    return [await done(t) for t in tasks]


async def stable_group(c: GroupCoordinator, n: int) -> list[str]:
    """n members joined and synced in one generation; returns their ids, leader first."""
    results = await first_join(c, *[join(c, client_id=f"c{i}") for i in range(n)])
    leader = results[0].leader_id
    gen = results[0].generation_id
    ids = [r.member_id for r in results]
    syncs = [
        asyncio.ensure_future(
            c.sync_group(
                G,
                gen,
                mid,
                assignments={m: f"assign-{m}".encode() for m in ids} if mid == leader else {},
            )
        )
        for mid in ids
    ]
    for s in syncs:
        await done(s)
    assert c.groups[G].state is GroupState.STABLE
    return [leader] + [m for m in ids if m != leader]


async def test_single_member_join_sync_heartbeat_describe(coord: GroupCoordinator) -> None:
    [result] = await first_join(coord, join(coord))
    assert result.generation_id == 1
    assert result.leader_id == result.member_id
    assert result.member_id.startswith("client-")
    assert result.protocol_type == "consumer" and result.protocol_name == "range"
    assert [m.member_id for m in result.members] == [result.member_id]
    assert result.members[0].metadata == subscription("t")
    assert coord.groups[G].state is GroupState.COMPLETING_REBALANCE

    sync = await done(
        asyncio.ensure_future(
            coord.sync_group(G, 1, result.member_id, assignments={result.member_id: b"A"})
        )
    )
    assert sync.assignment == b"A" and sync.protocol_name == "range"
    assert coord.groups[G].state is GroupState.STABLE
    coord.heartbeat(G, 1, result.member_id)

    desc = coord.describe_group(G)
    assert (desc.state, desc.protocol_type, desc.protocol_name) == ("Stable", "consumer", "range")
    [member] = desc.members
    assert (member.metadata, member.assignment) == (subscription("t"), b"A")
    assert (member.client_id, member.client_host) == ("client", "/127.0.0.1")
    listing = coord.list_groups()
    assert [(g.group_id, g.protocol_type, g.state) for g in listing] == [(G, "consumer", "Stable")]
    assert coord.list_groups(["empty"]) == []
    assert [g.group_id for g in coord.list_groups(["stable", "Empty"])] == [G]


async def test_describe_unknown_group_is_dead(coord: GroupCoordinator) -> None:
    desc = coord.describe_group("nope")
    assert (desc.state, desc.members, desc.protocol_type) == ("Dead", [], "")
    with pytest.raises(ValueError, match="unknown group state 'Bogus'"):
        coord.list_groups(["Bogus"])


async def test_member_id_required_leaves_no_placeholder(coord: GroupCoordinator) -> None:
    with pytest.raises(
        MemberIdRequired,
        match=r"^Group 'g1' requires a member id: rejoin with member id 'client-[0-9a-f-]+'\.$",
    ) as info:
        await done(join(coord, v4=True))
    new_id = info.value.member_id
    assert new_id.startswith("client-")
    assert info.value.code == 79
    group = coord.groups[G]
    assert group.members == {} and group.state is GroupState.EMPTY
    assert coord.describe_group(G).members == []

    [result] = await first_join(coord, join(coord, new_id, v4=True))
    assert result.member_id == new_id and result.generation_id == 1
    assert [m.member_id for m in result.members] == [new_id]


async def test_pending_member_that_never_returns_expires(coord: GroupCoordinator) -> None:
    [leader] = await stable_group(coord, 1)
    with pytest.raises(
        MemberIdRequired,
        match=r"^Group 'g1' requires a member id: rejoin with member id 'client-[0-9a-f-]+'\.$",
    ) as info:
        await done(join(coord, v4=True, session_ms=6000))
    pending = info.value.member_id
    # The pending id is no member: the group stays Stable and heartbeats go on.
    assert coord.groups[G].state is GroupState.STABLE
    coord.heartbeat(G, 1, leader)
    with pytest.raises(
        UnknownMemberId, match=re.escape(f"Member {pending!r} is not in group {G!r}; rejoin.")
    ):
        coord.heartbeat(G, 1, pending)
    # A rebalance started meanwhile waits for the pending id only until its session ends.
    rejoin = join(coord, leader)
    await settle()
    assert not rejoin.done()
    clock(coord).advance(6.0)
    result = await done(rejoin)
    assert result.generation_id == 2
    assert [m.member_id for m in result.members] == [leader]
    assert coord.groups[G].pending_members == {}
    with pytest.raises(
        UnknownMemberId,
        match=re.escape(
            f"Member {pending!r} is not in group {G!r}; rejoin with an empty member id."
        ),
    ):
        await done(join(coord, pending, v4=True))


async def test_second_member_triggers_rebalance_and_sync_waits_for_leader(
    coord: GroupCoordinator,
) -> None:
    [a] = await stable_group(coord, 1)
    b_join = join(coord, client_id="b")
    await settle()
    assert coord.groups[G].state is GroupState.PREPARING_REBALANCE
    with pytest.raises(
        RebalanceInProgress, match=re.escape(f"Group {G!r} is rebalancing; rejoin.")
    ):
        coord.heartbeat(G, 1, a)
    assert not b_join.done()
    a_result = await done(join(coord, a))
    b_result = await done(b_join)
    assert a_result.generation_id == b_result.generation_id == 2
    assert a_result.leader_id == b_result.leader_id == a
    assert {m.member_id for m in a_result.members} == {a, b_result.member_id}
    assert b_result.members == []
    b = b_result.member_id

    b_sync = asyncio.ensure_future(coord.sync_group(G, 2, b, assignments={}))
    await settle()
    assert not b_sync.done()
    a_sync = await done(
        asyncio.ensure_future(coord.sync_group(G, 2, a, assignments={a: b"p0", b: b"p1"}))
    )
    assert a_sync.assignment == b"p0"
    assert (await done(b_sync)).assignment == b"p1"
    assert coord.groups[G].state is GroupState.STABLE


async def test_session_timeout_removes_member_and_rebalances(coord: GroupCoordinator) -> None:
    a, b = await stable_group(coord, 2)
    for _ in range(3):  # a heartbeats every 3 s; b is silent
        clock(coord).advance(3.0)
        coord.heartbeat(G, 1, a)
    assert b in coord.groups[G].members
    clock(coord).advance(2.0)
    assert b not in coord.groups[G].members
    assert coord.groups[G].state is GroupState.PREPARING_REBALANCE
    with pytest.raises(
        RebalanceInProgress, match=re.escape(f"Group {G!r} is rebalancing; rejoin.")
    ):
        coord.heartbeat(G, 1, a)
    with pytest.raises(
        UnknownMemberId, match=re.escape(f"Member {b!r} is not in group {G!r}; rejoin.")
    ):
        coord.heartbeat(G, 1, b)
    result = await done(join(coord, a))
    assert result.generation_id == 2
    assert [m.member_id for m in result.members] == [a]


async def test_rebalance_timeout_kicks_members_that_do_not_rejoin(
    coord: GroupCoordinator,
) -> None:
    a, b = await stable_group(coord, 2)
    c_join = join(coord, client_id="c")
    a_join = join(coord, a)
    await settle()
    assert not a_join.done()
    clock(coord).advance(REBALANCE_MS / 1000)
    a_result, c_result = await done(a_join), await done(c_join)
    assert a_result.generation_id == 2
    assert {m.member_id for m in a_result.members} == {a, c_result.member_id}
    assert b not in coord.groups[G].members
    with pytest.raises(
        UnknownMemberId, match=re.escape(f"Member {b!r} is not in group {G!r}; rejoin.")
    ):
        coord.heartbeat(G, 2, b)


async def test_member_that_does_not_sync_is_removed(coord: GroupCoordinator) -> None:
    a, b = await stable_group(coord, 2)
    a_join, b_join = join(coord, a), join(coord, b)
    await done(a_join)
    await done(b_join)
    a_sync = await done(asyncio.ensure_future(coord.sync_group(G, 2, a, assignments={a: b"x"})))
    assert a_sync.assignment == b"x"
    group = coord.groups[G]
    assert group.state is GroupState.STABLE
    for _ in range(5):  # both heartbeat, but b never sends SyncGroup
        clock(coord).advance(5.0)
        coord.heartbeat(G, 2, a)
        coord.heartbeat(G, 2, b)
    clock(coord).advance(5.0)  # the rebalance timeout since the join completed
    assert b not in group.members
    assert group.state is GroupState.PREPARING_REBALANCE


async def test_generation_and_member_errors(coord: GroupCoordinator) -> None:
    a, b = await stable_group(coord, 2)
    with pytest.raises(IllegalGeneration, match=r"Generation 7 of group 'g1' is not the current"):
        coord.heartbeat(G, 7, a)
    with pytest.raises(UnknownMemberId, match="Member 'ghost' is not in group 'g1'"):
        coord.heartbeat(G, 1, "ghost")
    with pytest.raises(UnknownMemberId, match="Group 'other' does not exist"):
        coord.heartbeat("other", 1, a)
    with pytest.raises(InvalidGroupId, match="The group id must not be empty"):
        coord.heartbeat("", 1, a)
    with pytest.raises(
        UnknownMemberId,
        match=re.escape("Member 'ghost' is not in group 'g1'; rejoin with an empty member id."),
    ):
        await done(join(coord, "ghost"))
    with pytest.raises(
        IllegalGeneration,
        match=re.escape("Generation 0 of group 'g1' is not the current one (1); rejoin."),
    ):
        await done(asyncio.ensure_future(coord.sync_group(G, 0, a, assignments={})))
    # b rejoins with new metadata -> rebalance; sync in PreparingRebalance is refused
    b_join = join(coord, b, protocols=[("range", subscription("t", "u"))])
    await settle()
    with pytest.raises(RebalanceInProgress, match=re.escape("Group 'g1' is rebalancing; rejoin.")):
        await done(asyncio.ensure_future(coord.sync_group(G, 1, a, assignments={})))
    a_join = join(coord, a)
    await done(a_join)
    await done(b_join)
    assert coord.groups[G].state is GroupState.COMPLETING_REBALANCE
    coord.heartbeat(G, 2, b)  # allowed while CompletingRebalance


async def test_invalid_session_timeout_and_protocols(coord: GroupCoordinator) -> None:
    with pytest.raises(
        InvalidSessionTimeout,
        match=r"The session timeout 10 ms is outside the broker's range \[1000, 1800000\] ms.",
    ):
        await done(join(coord, session_ms=10))
    with pytest.raises(
        InconsistentGroupProtocol,
        match=re.escape(
            "Protocol type 'consumer' with protocols [] does not match group 'g1' (type None"
        ),
    ):
        await done(join(coord, protocols=[], protocol_type="consumer"))
    await stable_group(coord, 1)
    with pytest.raises(InconsistentGroupProtocol, match="Protocol type 'connect'"):
        await done(join(coord, protocol_type="connect"))
    with pytest.raises(
        InconsistentGroupProtocol,
        match=re.escape(
            "with protocols ['sticky'] does not match group 'g1'"
            " (type 'consumer', common protocols ['range'])"
        ),
    ):
        await done(join(coord, protocols=[("sticky", b"")]))


async def test_protocol_chosen_by_vote(coord: GroupCoordinator) -> None:
    tasks = [
        join(coord, protocols=[("range", b"1"), ("roundrobin", b"2")]),
        join(coord, protocols=[("roundrobin", b"3"), ("range", b"4")]),
        join(coord, protocols=[("roundrobin", b"5"), ("sticky", b"6"), ("range", b"7")]),
    ]
    results = await first_join(coord, *tasks)
    assert {r.protocol_name for r in results} == {"roundrobin"}
    leader = next(r for r in results if r.members)
    assert sorted(m.metadata for m in leader.members) == [b"2", b"3", b"5"]


async def test_leave_group_removes_at_once_and_reelects_leader(
    coord: GroupCoordinator,
) -> None:
    a, b, c = await stable_group(coord, 3)
    results = coord.leave_group(G, [MemberIdentity(a), MemberIdentity("ghost")])
    assert results[0] is None
    assert isinstance(results[1], UnknownMemberId)
    group = coord.groups[G]
    assert a not in group.members
    assert group.leader_id in (b, c)
    assert group.state is GroupState.PREPARING_REBALANCE
    b_join, c_join = join(coord, b), join(coord, c)
    rb, rc = await done(b_join), await done(c_join)
    assert rb.generation_id == 2 and rb.leader_id in (b, c) and rb.leader_id in group.members
    assert {m.member_id for m in (rb.members or rc.members)} == {b, c}
    [unknown] = coord.leave_group("nope", [MemberIdentity("x")])
    assert isinstance(unknown, UnknownMemberId)


async def test_last_member_leaving_empties_group(coord: GroupCoordinator) -> None:
    [a] = await stable_group(coord, 1)
    assert coord.leave_group(G, [MemberIdentity(a)]) == [None]
    group = coord.groups[G]
    assert group.state is GroupState.EMPTY and group.generation_id == 2
    assert coord.describe_group(G).state == "Empty"


async def test_static_member_rejoin_replaces_member_id_without_rebalance(
    coord: GroupCoordinator,
) -> None:
    [first] = await first_join(coord, join(coord, instance="i-1"))
    await done(
        asyncio.ensure_future(
            coord.sync_group(
                G,
                1,
                first.member_id,
                assignments={first.member_id: b"mine"},
                group_instance_id="i-1",
            )
        )
    )
    again = await done(join(coord, instance="i-1"))
    assert again.member_id != first.member_id
    assert again.generation_id == 1  # no rebalance: same protocols, Stable group
    assert coord.groups[G].state is GroupState.STABLE
    sync = await done(
        asyncio.ensure_future(
            coord.sync_group(G, 1, again.member_id, assignments={}, group_instance_id="i-1")
        )
    )
    assert sync.assignment == b"mine"
    with pytest.raises(FencedInstanceId, match="replaced by a newer member"):
        coord.heartbeat(G, 1, first.member_id, "i-1")
    with pytest.raises(
        FencedInstanceId,
        match=re.escape(
            f"Member {first.member_id!r} of group {G!r} was replaced by a newer member"
            " with instance id 'i-1'."
        ),
    ):
        await done(join(coord, first.member_id, instance="i-1"))
    [fenced] = coord.leave_group(G, [MemberIdentity(first.member_id, "i-1")])
    assert isinstance(fenced, FencedInstanceId)
    assert coord.leave_group(G, [MemberIdentity("", "i-1")]) == [None]
    assert coord.groups[G].members == {}


async def test_static_member_survives_rebalance_timeout_until_session_expires(
    coord: GroupCoordinator,
) -> None:
    [s] = await first_join(coord, join(coord, instance="s", session_ms=60_000))
    await done(asyncio.ensure_future(coord.sync_group(G, 1, s.member_id, assignments={})))
    d_join = join(coord, client_id="dyn")
    await settle()
    clock(coord).advance(REBALANCE_MS / 1000)  # s did not rejoin, but it is static
    d = await done(d_join)
    group = coord.groups[G]
    assert s.member_id in group.members
    assert d.generation_id == 2
    clock(coord).advance(60.0)
    assert s.member_id not in group.members


async def test_initial_rebalance_delay_gathers_members(tmp_path: Path) -> None:
    async with coordinator_on_disk(tmp_path, initial_rebalance_delay_ms=3000) as c:
        first = join(c)
        await settle()
        clock(c).advance(2.0)
        second = join(c)
        await settle()
        clock(c).advance(1.0)  # the first delay ended, but a member arrived: extend
        assert not first.done()
        clock(c).advance(3.0)
        r1, r2 = await done(first), await done(second)
        assert r1.generation_id == r2.generation_id == 1
        assert len(r1.members or r2.members) == 2


async def test_duplicate_join_while_completing_returns_current_generation(
    coord: GroupCoordinator,
) -> None:
    [a] = await first_join(coord, join(coord))
    again = await done(join(coord, a.member_id))
    assert again.generation_id == 1 and [m.member_id for m in again.members] == [a.member_id]


async def test_shutdown_answers_waiting_joins(tmp_path: Path) -> None:
    async with coordinator_on_disk(tmp_path) as c:
        [a] = await stable_group(c, 1)
        waiting = join(c, client_id="late")
        await settle()
    with pytest.raises(
        NotCoordinator,
        match=re.escape("The group coordinator is shutting down; find the coordinator again."),
    ):
        await done(waiting)
    assert a


def test_transition_table_rejects_illegal_moves() -> None:
    group = Group("g")
    with pytest.raises(IllegalStateTransition, match="cannot move from Empty to Stable"):
        group.transition(GroupState.STABLE)
    group.transition(GroupState.PREPARING_REBALANCE)
    group.transition(GroupState.COMPLETING_REBALANCE)
    group.transition(GroupState.STABLE)
    with pytest.raises(
        IllegalStateTransition, match=re.escape("group 'g' cannot move from Stable to Empty")
    ):
        group.transition(GroupState.EMPTY)
    group.transition(GroupState.DEAD)
    with pytest.raises(
        IllegalStateTransition, match=re.escape("group 'g' cannot move from Dead to Empty")
    ):
        group.transition(GroupState.EMPTY)


def test_parse_subscription() -> None:
    assert parse_subscribed_topics(subscription("a", "bb")) == ["a", "bb"]
    assert parse_subscribed_topics(b"\x00") is None
    assert parse_subscribed_topics(struct.pack(">hih", 0, 1, 50) + b"x") is None


def test_manual_clock_fires_in_order() -> None:
    c = ManualClock(start=0.0)
    fired: list[tuple[str, float]] = []
    c.call_at(2.0, lambda: fired.append(("b", c.now())))
    t = c.call_at(1.5, lambda: fired.append(("x", c.now())))
    c.call_at(1.0, lambda: c.call_at(1.2, lambda: fired.append(("nested", c.now()))))
    t.cancel()
    c.advance(3.0)
    assert fired == [("nested", 1.2), ("b", 2.0)]
    assert c.now() == 3.0
    with pytest.raises(ValueError, match=re.escape("cannot move a clock backwards (advance(-1))")):
        c.advance(-1)


async def test_leader_cancelled_mid_sync_still_hands_out_assignment(
    coord: GroupCoordinator,
) -> None:
    a, b = await stable_group(coord, 2)
    a_join, b_join = join(coord, a), join(coord, b)
    ra, rb = await done(a_join), await done(b_join)
    leader = ra.leader_id
    follower = b if leader == a else a
    f_sync = asyncio.ensure_future(coord.sync_group(G, 2, follower, assignments={}))
    l_sync = asyncio.ensure_future(
        coord.sync_group(G, 2, leader, assignments={leader: b"L", follower: b"F"})
    )
    await asyncio.sleep(0)
    l_sync.cancel()  # the leader's connection dropped while its assignment was stored
    assert (await done(f_sync)).assignment == b"F"
    assert coord.groups[G].state is GroupState.STABLE
    assert rb.generation_id == 2


async def test_describe_hides_metadata_until_stable(coord: GroupCoordinator) -> None:
    [result] = await first_join(coord, join(coord))
    desc = coord.describe_group(G)
    assert (desc.state, desc.protocol_name) == ("CompletingRebalance", "")
    [member] = desc.members
    assert (member.member_id, member.metadata, member.assignment) == (result.member_id, b"", b"")
