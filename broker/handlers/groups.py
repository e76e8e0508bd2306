"""Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
ListGroups, DescribeGroups and DeleteGroups (committed offsets: ``group_offsets.py``).

Thin translations between the decoded requests and
:class:`~backbone.broker.groups.GroupCoordinator`; domain errors become error codes
through ``exc.code``. Versions offered (what is implemented, nothing more):

============== ======= ====================================================
API            versions notes
============== ======= ====================================================
FindCoordinator 0-5    key type 0 (group) -> this node; 1 (transaction) ->
                       UNSUPPORTED_VERSION with a message (not a retriable
                       error: a transactional producer fails at once instead
                       of retrying forever); v4+ batched keys
JoinGroup       0-9    v4+ member-id-required round; v5+ group.instance.id
SyncGroup       0-5    v5+ protocol type/name checked
Heartbeat       0-4
LeaveGroup      0-5    v3+ batch of members
ListGroups      0-5    v4+ states filter; v5+ types filter (all groups "classic")
DescribeGroups  0-6    authorized operations INT32_MIN unless requested;
                       v6: GROUP_ID_NOT_FOUND for an unknown group
DeleteGroups    0-2
============== ======= ====================================================
"""

from __future__ import annotations

import logging

from ..errors import (
    BrokerError,
    GroupIdNotFound,
    InvalidRequest,
    UnsupportedVersion,
)
from ..groups import MemberIdentity
from ..groups.state import GroupState
from ..protocol import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from .base import Handler, RequestContext, error_code

__all__ = ["HANDLERS"]

logger = logging.getLogger(__name__)

INT32_MIN = -2147483648
KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
# AclOperation codes READ (3), DELETE (6), DESCRIBE (8): everything a group allows.
GROUP_AUTHORIZED_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)


# -- FindCoordinator --------------------------------------------------------------


def _coordinator(ctx: RequestContext, key_type: int, key: str) -> tuple[int, str | None]:
    """(error code, message) for finding the coordinator of ``key`` of ``key_type`` here.

    Transactions are not offered: a transactional id gets UNSUPPORTED_VERSION (as Redpanda
    answers with transactions disabled), which clients treat as fatal, rather than
    COORDINATOR_NOT_AVAILABLE, which they retry forever (aiokafka's ``start()`` hung).
    """
    if key_type == KEY_TYPE_GROUP:
        return 0, None
    if key_type == KEY_TYPE_TRANSACTION:
        return UnsupportedVersion.code, (
            f"Transactions are not supported by this broker, so transactional id {key!r} "
            "has no coordinator; produce without transactional.id (idempotent producers "
            "are supported)."
        )
    return InvalidRequest.code, f"Unknown coordinator key type {key_type}."


async def handle_find_coordinator(
    ctx: RequestContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    """FindCoordinator v0-5: this node coordinates every group."""
    node_id = ctx.config.node_id
    host, port = ctx.state.advertised_host, ctx.state.advertised_port
    if ctx.api_version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            code, message = _coordinator(ctx, request.key_type, key)
            coordinators.append(
                FindCoordinatorResponse.Coordinator(
                    key=key,
                    node_id=node_id if code == 0 else -1,
                    host=host if code == 0 else "",
                    port=port if code == 0 else -1,
                    error_code=code,
                    error_message=message,
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    code, message = _coordinator(ctx, request.key_type if ctx.api_version >= 1 else 0, request.key)
    if code:
        return FindCoordinatorResponse(
            error_code=code, error_message=message, node_id=-1, host="", port=-1
        )
    return FindCoordinatorResponse(
        error_code=0, error_message=None, node_id=node_id, host=host, port=port
    )


# -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ------------------------------------


async def handle_join_group(ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse:
    """JoinGroup v0-9: waits for the rebalance; the leader gets every member's metadata."""
    version = ctx.api_version
    rebalance_timeout_ms = request.rebalance_timeout_ms if version >= 1 else -1
    if rebalance_timeout_ms < 0:
        rebalance_timeout_ms = request.session_timeout_ms
    try:
        result = await ctx.groups.join_group(
            request.group_id,
            request.member_id,
            protocol_type=request.protocol_type,
            protocols=[(p.name, p.metadata) for p in request.protocols],
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            group_instance_id=request.group_instance_id if version >= 5 else None,
            client_id=ctx.client_id,
            client_host=ctx.client_host,
            require_known_member_id=version >= 4,
            supports_skip_assignment=version >= 9,
            reason=request.reason if version >= 8 else None,
        )
    except BrokerError as exc:
        return JoinGroupResponse(
            error_code=exc.code,
            generation_id=-1,
            protocol_type=None,
            protocol_name=None if version >= 7 else "",
            leader="",
            member_id=getattr(exc, "member_id", request.member_id),
            members=[],
        )
    return JoinGroupResponse(
        error_code=0,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name if version >= 7 else (result.protocol_name or ""),
        leader=result.leader_id,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[
            JoinGroupResponse.JoinGroupResponseMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id, metadata=m.metadata
            )
            for m in result.members
        ],
    )


async def handle_sync_group(ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse:
    """SyncGroup v0-5: the leader's assignment is stored, then everyone gets its own."""
    version = ctx.api_version
    try:
        result = await ctx.groups.sync_group(
            request.group_id,
            request.generation_id,
            request.member_id,
            assignments={a.member_id: a.assignment for a in request.assignments},
            group_instance_id=request.group_instance_id if version >= 3 else None,
            protocol_type=request.protocol_type if version >= 5 else None,
            protocol_name=request.protocol_name if version >= 5 else None,
        )
    except BrokerError as exc:
        return SyncGroupResponse(error_code=exc.code, assignment=b"")
    return SyncGroupResponse(
        error_code=0,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


async def handle_heartbeat(ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
    """Heartbeat v0-4: REBALANCE_IN_PROGRESS tells the member to rejoin."""
    try:
        ctx.groups.heartbeat(
            request.group_id,
            request.generation_id,
            request.member_id,
            request.group_instance_id if ctx.api_version >= 3 else None,
        )
    except BrokerError as exc:
        return HeartbeatResponse(error_code=exc.code)
    return HeartbeatResponse(error_code=0)


async def handle_leave_group(ctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse:
    """LeaveGroup v0-5: members leave at once; the group rebalances."""
    if ctx.api_version >= 3:
        identities = [
            MemberIdentity(m.member_id, m.group_instance_id, m.reason) for m in request.members
        ]
    else:
        identities = [MemberIdentity(request.member_id)]
    try:
        results = ctx.groups.leave_group(request.group_id, identities)
    except BrokerError as exc:
        return LeaveGroupResponse(error_code=exc.code, members=[])
    if ctx.api_version < 3:
        return LeaveGroupResponse(error_code=error_code(results[0]) if results[0] else 0)
    return LeaveGroupResponse(
        error_code=0,
        members=[
            LeaveGroupResponse.MemberResponse(
                member_id=identity.member_id,
                group_instance_id=identity.group_instance_id,
                error_code=error_code(result) if result is not None else 0,
            )
            for identity, result in zip(identities, results, strict=True)
        ],
    )


# -- ListGroups, DescribeGroups, DeleteGroups ------------------------------------------


async def handle_list_groups(ctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    """ListGroups v0-5: optionally filtered by state (v4+) and type (v5+; all "classic")."""
    states = request.states_filter if ctx.api_version >= 4 else []
    types = request.types_filter if ctx.api_version >= 5 else []
    if types and "classic" not in {t.lower() for t in types}:
        return ListGroupsResponse(error_code=0, groups=[])
    known = []
    for name in states:
        try:
            known.append(GroupState.parse(name).value)
        except ValueError:
            continue  # an unknown state matches no group, as in Kafka
    if states and not known:
        return ListGroupsResponse(error_code=0, groups=[])
    listing = ctx.groups.list_groups(known or None)
    return ListGroupsResponse(
        error_code=0,
        groups=[
            ListGroupsResponse.ListedGroup(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type="classic",
            )
            for g in listing
        ],
    )


async def handle_describe_groups(
    ctx: RequestContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    """DescribeGroups v0-6: real member metadata/assignment bytes and Kafka's state names."""
    include_ops = ctx.api_version >= 3 and request.include_authorized_operations
    described = []
    for group_id in request.groups:
        desc = ctx.groups.describe_group(group_id)
        if ctx.api_version >= 6 and not ctx.groups.group_exists(group_id):
            described.append(
                DescribeGroupsResponse.DescribedGroup(
                    error_code=GroupIdNotFound.code,
                    error_message=f"Group {group_id!r} not found.",
                    group_id=group_id,
                    group_state=GroupState.DEAD.value,
                    authorized_operations=INT32_MIN,
                )
            )
            continue
        described.append(
            DescribeGroupsResponse.DescribedGroup(
                error_code=0,
                group_id=group_id,
                group_state=desc.state,
                protocol_type=desc.protocol_type,
                protocol_data=desc.protocol_name,
                members=[
                    DescribeGroupsResponse.DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in desc.members
                ],
                authorized_operations=GROUP_AUTHORIZED_OPERATIONS if include_ops else INT32_MIN,
            )
        )
    return DescribeGroupsResponse(groups=described)


async def handle_delete_groups(
    ctx: RequestContext, request: DeleteGroupsRequest
) -> DeleteGroupsResponse:
    """DeleteGroups v0-2: Empty groups and their offsets go (NON_EMPTY_GROUP otherwise)."""
    results = await ctx.groups.delete_groups(list(request.groups_names))
    return DeleteGroupsResponse(
        results=[
            DeleteGroupsResponse.DeletableGroupResult(
                group_id=group_id, error_code=error_code(result) if result is not None else 0
            )
            for group_id, result in zip(request.groups_names, results, strict=True)
        ]
    )


HANDLERS = (
    Handler(FindCoordinatorRequest, FindCoordinatorResponse, handle_find_coordinator, 0, 5),
    Handler(JoinGroupRequest, JoinGroupResponse, handle_join_group, 0, 9),
    Handler(SyncGroupRequest, SyncGroupResponse, handle_sync_group, 0, 5),
    Handler(HeartbeatRequest, HeartbeatResponse, handle_heartbeat, 0, 4),
    Handler(LeaveGroupRequest, LeaveGroupResponse, handle_leave_group, 0, 5),
    Handler(ListGroupsRequest, ListGroupsResponse, handle_list_groups, 0, 5),
    Handler(DescribeGroupsRequest, DescribeGroupsResponse, handle_describe_groups, 0, 6),
    Handler(DeleteGroupsRequest, DeleteGroupsResponse, handle_delete_groups, 0, 2),
)
