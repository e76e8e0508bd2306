"""CreateAcls, DescribeAcls and DeleteAcls (v1-3): Kafka's tools manage the broker's ACLs.

Changing ACLs needs ALTER on the cluster, listing them DESCRIBE on the cluster
(CLUSTER_AUTHORIZATION_FAILED otherwise). Changes are saved (fsynced) before they
are answered (``security/acls.py``). A broker that enforces no ACLs (no
authenticating listener, ``authorization`` off) answers SECURITY_DISABLED, as Kafka
does without an authorizer, so nobody believes ACLs protect it.
"""

from __future__ import annotations

import asyncio
from itertools import groupby

from ..errors import BrokerError
from ..protocol import (
    CreateAclsRequest,
    CreateAclsResponse,
    DeleteAclsRequest,
    DeleteAclsResponse,
    DescribeAclsRequest,
    DescribeAclsResponse,
)
from ..security import AclBinding, AclFilter, AclOperation, ResourceType, Security
from ..security.acls import CLUSTER_NAME
from ..security.errors import ClusterAuthorizationFailed, SecurityDisabled
from .base import Handler, RequestContext, error_message

__all__ = ["HANDLERS"]


def _refusal(ctx: RequestContext, operation: AclOperation) -> BrokerError | None:
    """SECURITY_DISABLED or CLUSTER_AUTHORIZATION_FAILED, or None when allowed."""
    security = ctx.state.security
    if security is None or security.authorizer is None:
        return SecurityDisabled(
            "ACLs are not enforced by this broker: it has no authenticating listener "
            "(SASL, or TLS with client_auth) and authorization is not on"
        )
    if not ctx.authorized(operation, ResourceType.CLUSTER, CLUSTER_NAME):
        return ClusterAuthorizationFailed(
            f"{ctx.principal} may not {operation.name} the cluster's ACLs"
        )
    return None


def _security(ctx: RequestContext) -> Security:
    security = ctx.state.security
    assert security is not None  # checked by _refusal
    return security


async def handle_create_acls(ctx: RequestContext, request: CreateAclsRequest) -> CreateAclsResponse:
    """CreateAcls v1-3: each creation valid on its own is stored; the others get an error."""
    Result = CreateAclsResponse.AclCreationResult
    refusal = _refusal(ctx, AclOperation.ALTER)
    if refusal is not None:
        return CreateAclsResponse(
            results=[Result(refusal.code, str(refusal)) for _ in request.creations]
        )
    results: list[CreateAclsResponse.AclCreationResult] = []
    valid: list[AclBinding] = []
    for creation in request.creations:
        try:
            binding = AclBinding.checked(
                creation.resource_type,
                creation.resource_name,
                creation.resource_pattern_type,
                creation.principal,
                creation.host,
                creation.operation,
                creation.permission_type,
            )
        except BrokerError as exc:
            results.append(Result(exc.code, error_message(exc)))
            continue
        valid.append(binding)
        results.append(Result(0, None))
    if valid:
        await asyncio.to_thread(_security(ctx).acls.add, valid)
    return CreateAclsResponse(results=results)


def _filter(entry: DescribeAclsRequest | DeleteAclsRequest.DeleteAclsFilter) -> AclFilter:
    return AclFilter.checked(
        entry.resource_type_filter,
        entry.resource_name_filter,
        entry.pattern_type_filter,
        entry.principal_filter,
        entry.host_filter,
        entry.operation,
        entry.permission_type,
    )


async def handle_describe_acls(
    ctx: RequestContext, request: DescribeAclsRequest
) -> DescribeAclsResponse:
    """DescribeAcls v1-3: the ACLs a filter matches, grouped by resource pattern."""
    refusal = _refusal(ctx, AclOperation.DESCRIBE)
    if refusal is None:
        try:
            acl_filter = _filter(request)
        except BrokerError as exc:
            refusal = exc
    if refusal is not None:
        return DescribeAclsResponse(
            error_code=refusal.code, error_message=error_message(refusal), resources=[]
        )
    Resource = DescribeAclsResponse.DescribeAclsResource
    Description = Resource.AclDescription

    def pattern(acl: AclBinding) -> tuple[int, str, int]:
        return (acl.resource_type, acl.name, acl.pattern_type)

    matching = sorted(_security(ctx).acls.matching(acl_filter), key=pattern)
    resources = [
        Resource(
            resource_type=key[0],
            resource_name=key[1],
            pattern_type=key[2],
            acls=[Description(a.principal, a.host, a.operation, a.permission) for a in acls],
        )
        for key, acls in groupby(matching, key=pattern)
    ]
    return DescribeAclsResponse(error_code=0, error_message=None, resources=resources)


async def handle_delete_acls(ctx: RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse:
    """DeleteAcls v1-3: every ACL each filter matches is deleted and listed."""
    FilterResult = DeleteAclsResponse.DeleteAclsFilterResult
    Matching = FilterResult.DeleteAclsMatchingAcl
    refusal = _refusal(ctx, AclOperation.ALTER)
    if refusal is not None:
        return DeleteAclsResponse(
            filter_results=[FilterResult(refusal.code, str(refusal), []) for _ in request.filters]
        )
    parsed: list[AclFilter | BrokerError] = []
    for entry in request.filters:
        try:
            parsed.append(_filter(entry))
        except BrokerError as exc:
            parsed.append(exc)
    filters = [f for f in parsed if isinstance(f, AclFilter)]
    removed = iter(await asyncio.to_thread(_security(ctx).acls.remove, filters))
    results: list[DeleteAclsResponse.DeleteAclsFilterResult] = []
    for outcome in parsed:
        if isinstance(outcome, BrokerError):
            results.append(FilterResult(outcome.code, error_message(outcome), []))
            continue
        results.append(
            FilterResult(
                0,
                None,
                [
                    Matching(
                        error_code=0,
                        error_message=None,
                        resource_type=a.resource_type,
                        resource_name=a.name,
                        pattern_type=a.pattern_type,
                        principal=a.principal,
                        host=a.host,
                        operation=a.operation,
                        permission_type=a.permission,
                    )
                    for a in next(removed)
                ],
            )
        )
    return DeleteAclsResponse(filter_results=results)


HANDLERS = (
    Handler(CreateAclsRequest, CreateAclsResponse, handle_create_acls, 0, 3),
    Handler(DescribeAclsRequest, DescribeAclsResponse, handle_describe_acls, 0, 3),
    Handler(DeleteAclsRequest, DeleteAclsResponse, handle_delete_acls, 0, 3),
)
