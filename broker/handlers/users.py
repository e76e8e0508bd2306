"""DescribeUserScramCredentials and AlterUserScramCredentials (v0): SCRAM users by Kafka API.

What ``kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type
users``, Kafka's admin clients and ``backbone users add|list|delete`` (with the
gateway running) use. An upsertion carries the salt, the iteration count and the
salted password, never the password; the broker keeps StoredKey and ServerKey only
(``security/users.py``) and saves them (fsync) before answering. Describing needs
DESCRIBE on the cluster, altering ALTER on the cluster, when ACLs are enforced.
Errors per user, as Kafka: RESOURCE_NOT_FOUND (no such credential),
DUPLICATE_RESOURCE (a user twice in a request), UNSUPPORTED_SASL_MECHANISM,
UNACCEPTABLE_CREDENTIAL (iterations outside 4096-16384, an empty name or salt).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from ..errors import BrokerError
from ..protocol import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from ..security import AclOperation, ResourceType, ScramCredential, Security
from ..security.acls import CLUSTER_NAME
from ..security.errors import (
    ClusterAuthorizationFailed,
    DuplicateResource,
    ResourceNotFound,
    UnacceptableCredential,
    UnsupportedSaslMechanism,
)
from .base import Handler, RequestContext, error_message

__all__ = ["HANDLERS", "MECHANISM_CODES"]

MECHANISM_CODES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
"""Kafka's ScramMechanism codes."""
_CODES = {name: code for code, name in MECHANISM_CODES.items()}


def _security(ctx: RequestContext) -> Security:
    security = ctx.state.security
    if security is None:
        raise RuntimeError("this broker runs without a security service")
    return security


async def handle_describe_user_scram_credentials(
    ctx: RequestContext, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    """DescribeUserScramCredentials v0: mechanisms and iterations per user (null = all)."""
    Result = DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult
    Info = Result.CredentialInfo
    if not ctx.authorized(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        refusal = ClusterAuthorizationFailed(f"{ctx.principal} may not describe users")
        return DescribeUserScramCredentialsResponse(
            error_code=refusal.code, error_message=str(refusal), results=[]
        )
    store = _security(ctx).users
    if not request.users:
        names = list(store.users())
        counts: Counter[str] = Counter()
    else:
        names = [u.name for u in request.users]
        counts = Counter(names)
    results = []
    for name in dict.fromkeys(names):
        credentials = store.credentials(name)
        if counts[name] > 1:
            results.append(Result(name, DuplicateResource.code, "user named twice", []))
        elif not credentials:
            results.append(
                Result(
                    name,
                    ResourceNotFound.code,
                    f"attempt to describe a user credential that does not exist: {name}",
                    [],
                )
            )
        else:
            infos = [Info(_CODES[c.mechanism], c.iterations) for c in reversed(credentials)]
            results.append(Result(name, 0, None, infos))
    return DescribeUserScramCredentialsResponse(error_code=0, error_message=None, results=results)


async def handle_alter_user_scram_credentials(
    ctx: RequestContext, request: AlterUserScramCredentialsRequest
) -> AlterUserScramCredentialsResponse:
    """AlterUserScramCredentials v0: deletions and upsertions, checked per user."""
    Result = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
    users = list(
        dict.fromkeys([d.name for d in request.deletions] + [u.name for u in request.upsertions])
    )
    if not ctx.authorized(AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        refusal = ClusterAuthorizationFailed(f"{ctx.principal} may not alter users")
        return AlterUserScramCredentialsResponse(
            results=[Result(name, refusal.code, str(refusal)) for name in users]
        )
    store = _security(ctx).users
    errors: dict[str, BrokerError] = {}
    pairs = Counter(
        [(d.name, d.mechanism) for d in request.deletions]
        + [(u.name, u.mechanism) for u in request.upsertions]
    )
    for (name, mechanism), count in pairs.items():
        if count > 1:
            errors.setdefault(name, DuplicateResource(f"{name} is altered twice for one mechanism"))
        elif mechanism not in MECHANISM_CODES:
            errors.setdefault(
                name, UnsupportedSaslMechanism(f"unknown SCRAM mechanism code {mechanism}")
            )
        elif not name:
            errors.setdefault(name, UnacceptableCredential("the user name is empty"))
    deletions: list[tuple[str, str]] = []
    for d in request.deletions:
        if d.name in errors:
            continue
        name = MECHANISM_CODES[d.mechanism]
        if store.credential(d.name, name) is None:
            errors[d.name] = ResourceNotFound(
                f"attempt to delete a user credential that does not exist: {d.name} {name}"
            )
            continue
        deletions.append((d.name, name))
    upsertions: list[tuple[str, ScramCredential]] = []
    for u in request.upsertions:
        if u.name in errors:
            continue
        try:
            credential = ScramCredential.from_salted_password(
                MECHANISM_CODES[u.mechanism], u.salt, u.iterations, u.salted_password
            )
        except BrokerError as exc:
            errors[u.name] = exc
            continue
        upsertions.append((u.name, credential))
    deletions = [d for d in deletions if d[0] not in errors]
    upsertions = [u for u in upsertions if u[0] not in errors]
    if deletions or upsertions:
        await asyncio.to_thread(store.apply, upsertions, deletions)
    return AlterUserScramCredentialsResponse(
        results=[
            Result(name, errors[name].code, error_message(errors[name]))
            if name in errors
            else Result(name, 0, None)
            for name in users
        ]
    )


HANDLERS = (
    Handler(
        DescribeUserScramCredentialsRequest,
        DescribeUserScramCredentialsResponse,
        handle_describe_user_scram_credentials,
        0,
        0,
    ),
    Handler(
        AlterUserScramCredentialsRequest,
        AlterUserScramCredentialsResponse,
        handle_alter_user_scram_credentials,
        0,
        0,
    ),
)
