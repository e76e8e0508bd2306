"""Who may do what: Kafka's ACL authorizer over the :class:`~.acls.AclStore`.

A request is allowed when the principal is a super user, or when no DENY ACL and at
least one ALLOW ACL match it. An ACL matches a request when its resource pattern
covers the resource (LITERAL same name, LITERAL ``*``, or PREFIXED by its name), its
principal is the request's or ``User:*``, its host is the client's address or ``*``,
and its operation is the requested one or ALL. As in Kafka, an ALLOW of READ,
WRITE, DELETE or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows
DESCRIBE_CONFIGS; a DENY applies to its own operation (and ALL) only. Without a
matching ALLOW the answer is no (Kafka's ``allow.everyone.if.no.acl.found=false``).

Decisions are cached per (principal, host, operation, resource) until the ACLs change.
"""

from __future__ import annotations

from collections.abc import Iterable

from .acls import AclBinding, AclOperation, AclPermission, AclStore, PatternType, ResourceType

__all__ = [
    "ANONYMOUS",
    "CLUSTER_OPERATIONS",
    "GROUP_OPERATIONS",
    "TOPIC_OPERATIONS",
    "Authorizer",
    "principal_name",
]

ANONYMOUS = "User:ANONYMOUS"
"""The principal of a connection that did not authenticate (PLAINTEXT, SSL without a
client certificate)."""

_IMPLIED: dict[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset(
        {
            AclOperation.DESCRIBE,
            AclOperation.READ,
            AclOperation.WRITE,
            AclOperation.DELETE,
            AclOperation.ALTER,
        }
    ),
    AclOperation.DESCRIBE_CONFIGS: frozenset(
        {AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    ),
}
_CACHE_LIMIT = 10_000

_Op = AclOperation
TOPIC_OPERATIONS = (
    _Op.READ,
    _Op.WRITE,
    _Op.CREATE,
    _Op.DELETE,
    _Op.ALTER,
    _Op.DESCRIBE,
    _Op.DESCRIBE_CONFIGS,
    _Op.ALTER_CONFIGS,
)
"""What Metadata's ``topic_authorized_operations`` reports on (as Kafka)."""
GROUP_OPERATIONS = (_Op.READ, _Op.DELETE, _Op.DESCRIBE)
CLUSTER_OPERATIONS = (
    _Op.CREATE,
    _Op.ALTER,
    _Op.DESCRIBE,
    _Op.CLUSTER_ACTION,
    _Op.DESCRIBE_CONFIGS,
    _Op.ALTER_CONFIGS,
    _Op.IDEMPOTENT_WRITE,
)


def principal_name(user: str) -> str:
    """``alice`` -> ``User:alice`` (a name with a type prefix is kept as it is)."""
    return user if ":" in user else f"User:{user}"


def _covers(acl: AclBinding, resource_type: ResourceType, name: str) -> bool:
    if acl.resource_type != resource_type:
        return False
    if acl.pattern_type == PatternType.LITERAL:
        return acl.name in (name, "*")
    return acl.pattern_type == PatternType.PREFIXED and name.startswith(acl.name)


def _applies(acl: AclBinding, principal: str, host: str) -> bool:
    return acl.principal in (principal, "User:*") and acl.host in (host, "*")


class Authorizer:
    """ACL decisions for one broker (see the module docstring).

    ``super_users`` are user names or principals (``admin`` = ``User:admin``).
    """

    def __init__(self, store: AclStore, super_users: Iterable[str] = ()) -> None:
        self.store = store
        self.super_users = frozenset(principal_name(u) for u in super_users)
        self._cache: dict[tuple[str, str, int, int, str], bool] = {}
        self._cached_for: tuple[AclBinding, ...] = store.acls

    def authorize(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        """Whether ``principal`` connected from ``host`` may do ``operation`` on the resource."""
        if principal in self.super_users:
            return True
        acls = self.store.acls
        if acls is not self._cached_for or len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
            self._cached_for = acls
        key = (principal, host, operation, resource_type, name)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(acls, principal, host, operation, resource_type, name)
            self._cache[key] = decision
        return decision

    @staticmethod
    def _decide(
        acls: tuple[AclBinding, ...],
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        allowing = _IMPLIED.get(operation, frozenset({operation}))
        allowed = False
        for acl in acls:
            if not _covers(acl, resource_type, name) or not _applies(acl, principal, host):
                continue
            if acl.permission == AclPermission.DENY:
                if acl.operation in (operation, AclOperation.ALL):
                    return False
            elif acl.operation in allowing or acl.operation == AclOperation.ALL:
                allowed = True
        return allowed

    def authorize_any(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        """Whether ``principal`` may do ``operation`` on at least one resource of the type
        (Kafka's ``authorizeByResourceType``: WRITE on any topic allows an idempotent
        producer). An ALLOW counts unless a DENY of the operation covers its pattern."""
        if principal in self.super_users:
            return True
        acls = [a for a in self.store.acls if a.resource_type == resource_type]
        allowing = _IMPLIED.get(operation, frozenset({operation}))
        denies = [
            a
            for a in acls
            if a.permission == AclPermission.DENY
            and a.operation in (operation, AclOperation.ALL)
            and _applies(a, principal, host)
        ]
        for acl in acls:
            if acl.permission != AclPermission.ALLOW or not _applies(acl, principal, host):
                continue
            if acl.operation not in allowing and acl.operation != AclOperation.ALL:
                continue
            if not any(_shadows(deny, acl) for deny in denies):
                return True
        return False

    def operations(
        self,
        principal: str,
        host: str,
        resource_type: ResourceType,
        name: str,
        candidates: Iterable[AclOperation],
    ) -> int:
        """The ``authorized_operations`` bit field (bit = operation code) of a resource."""
        bits = 0
        for operation in candidates:
            if self.authorize(principal, host, operation, resource_type, name):
                bits |= 1 << operation
        return bits


def _shadows(deny: AclBinding, allow: AclBinding) -> bool:
    """Whether ``deny`` covers every resource ``allow`` covers."""
    if deny.pattern_type == PatternType.LITERAL and deny.name == "*":
        return True
    if deny.pattern_type == PatternType.PREFIXED:
        return allow.name.startswith(deny.name) and allow.name != "*"
    return allow.pattern_type == PatternType.LITERAL and deny.name == allow.name
